# The exact commands CI runs. README command 1: `make demo`; README command 2: `make test`.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
ENV := source scripts/env.sh &&
CARGO_TEST_FLAGS ?=

.PHONY: setup demo test fmt lint rust-test doc header header-check c-test py-develop py-test py-wheel-check bench

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
	$(ENV) cargo clippy --workspace --all-targets --features battery-fl-core/tch,battery-fl-ffi/tch -- -D warnings
	$(ENV) cargo clippy -p battery-fl-ffi --all-targets -- -D warnings

# the core without libtorch (everything but the model), then the libtorch-backed tests: the
# integration tests and the unit tests of the tch-only modules (model::train, model::bytes)
rust-test:
	$(ENV) cargo test --workspace --exclude battery-fl-py $(CARGO_TEST_FLAGS)
	$(ENV) cargo test -p battery-fl-core --features tch --lib --test it $(CARGO_TEST_FLAGS) -- model:: federation::

doc:
	$(ENV) RUSTDOCFLAGS="-D warnings" cargo doc --no-deps -p battery-fl-core -p battery-fl-ffi --features battery-fl-core/tch,battery-fl-ffi/tch

header: setup
	$(ENV) cbindgen --quiet --config battery-fl-ffi/cbindgen.toml --crate battery-fl-ffi --output include/battery_fl.h

header-check: header
	git diff --exit-code -- include/ || { echo "include/battery_fl.h is stale: run 'make header' and commit it"; exit 1; }

# The C ABI: the library without libtorch (a copy for the fast valgrind runs), then with it
# (`tch`), the tiny model the model test and the example load (trained on real MATR cells,
# ~15 s, only when its trainer changed), the C tests plainly, under ASan+UBSan and under
# valgrind, and examples/c/predict.c linked against the shared and the static library.
C_BUILD := $(CURDIR)/.build/c
BFL_DATA := $(abspath $(or $(BFL_DATA_DIR),../shared/data/real))
c-test:
	$(ENV) cargo build -p battery-fl-ffi
	mkdir -p $(C_BUILD)/lib-notch && cp -f target/debug/libbattery_fl.so $(C_BUILD)/lib-notch/
	$(ENV) cargo build -p battery-fl-ffi --features tch --lib --example tiny_model
	$(ENV) $(MAKE) --no-print-directory $(C_BUILD)/model/model.json
	$(ENV) $(MAKE) -C tests/c run asan valgrind LIBDIR=$(CURDIR)/target/debug \
		NOTCH_LIBDIR=$(C_BUILD)/lib-notch MODEL=$(C_BUILD)/model DATA=$(BFL_DATA)
	$(ENV) $(MAKE) -C examples/c run LIBDIR=$(CURDIR)/target/debug MODEL=$(C_BUILD)/model DATA=$(BFL_DATA)

$(C_BUILD)/model/model.json: target/debug/examples/tiny_model
	$(ENV) target/debug/examples/tiny_model $(BFL_DATA)/matr_severson_qv $(C_BUILD)/model

# Fuzz every decoder of outside bytes for FUZZ_SECONDS each (not part of `test`; results in
# BENCHMARKS.md). cargo-fuzz wants nightly flags: RUSTC_BOOTSTRAP=1 lets the pinned stable
# toolchain take them.
FUZZ_SECONDS ?= 60
.PHONY: fuzz
fuzz:
	$(ENV) command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz --version 0.13.2 --root .build/tools
	$(ENV) cd fuzz && for t in secagg_messages model_files cell_json; do \
		mkdir -p corpus/$$t && RUSTC_BOOTSTRAP=1 cargo fuzz run -O -a $$t corpus/$$t seeds/$$t -- \
			-max_total_time=$(FUZZ_SECONDS) -max_len=8192 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 || exit 1; \
	done

py-develop:
	$(ENV) PIP_QUIET=1 maturin develop --quiet

# the stub check, the Python tests (warnings are errors; they include the Flower tests,
# tests/python/test_flower_*.py: in process, then a real loopback deployment of flwr 1.41.0,
# ~1.5-4 min) and both Python examples in small mode
py-test: py-develop
	$(ENV) python -m mypy.stubtest battery_fl._core
	$(ENV) BFL_FEATURIZE_BIN=$(CURDIR)/target/debug/examples/featurize \
		BFL_DP_EPSILON_BIN=$(CURDIR)/target/debug/examples/dp_epsilon \
		python -m pytest tests/python -q -W error
	$(ENV) python -W error examples/python/quickstart.py --small
	$(ENV) python -W error examples/python/federated.py --small

# build the release wheel and install it into a fresh venv with torch 2.13 (not part of `test`)
py-wheel-check: setup
	scripts/check_wheel.sh

bench:
	$(ENV) cargo bench -p battery-fl-core
