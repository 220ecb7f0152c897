# The exact commands CI runs. README command 1: `make demo`; README command 2: `make test`.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
ENV := source scripts/env.sh &&
CARGO_TEST_FLAGS ?=

.PHONY: setup demo test fmt lint rust-test doc header header-check c-test py-develop py-test bench

setup:
	scripts/setup.sh

## README command 1: the main job
demo: setup
	$(ENV) cargo run --release -p battery-fl-core --features tch --example federated

## README command 2: every test
test: setup fmt lint rust-test doc header-check c-test py-test
	@echo "make test: all green"

fmt:
	cargo fmt --all --check

lint:
	$(ENV) cargo clippy --workspace --all-targets --features battery-fl-core/tch -- -D warnings

# the core without libtorch (everything but the model), then the libtorch-backed tests
rust-test:
	$(ENV) cargo test --workspace --exclude battery-fl-py $(CARGO_TEST_FLAGS)
	$(ENV) cargo test -p battery-fl-core --features tch --test it $(CARGO_TEST_FLAGS) -- model:: federation::

doc:
	$(ENV) RUSTDOCFLAGS="-D warnings" cargo doc --no-deps -p battery-fl-core -p battery-fl-ffi --features battery-fl-core/tch

header: setup
	$(ENV) cbindgen --quiet --config battery-fl-ffi/cbindgen.toml --crate battery-fl-ffi --output include/battery_fl.h

header-check: header
	git diff --exit-code -- include/ || { echo "include/battery_fl.h is stale: run 'make header' and commit it"; exit 1; }

c-test:
	$(ENV) cargo build -p battery-fl-ffi
	$(ENV) $(MAKE) -C tests/c run LIBDIR=$(CURDIR)/target/debug

py-develop:
	$(ENV) maturin develop --quiet

py-test: py-develop
	$(ENV) BFL_FEATURIZE_BIN=$(CURDIR)/target/debug/examples/featurize \
		BFL_DP_EPSILON_BIN=$(CURDIR)/target/debug/examples/dp_epsilon \
		python -m pytest tests/python -q -W error

bench:
	$(ENV) cargo bench -p battery-fl-core
