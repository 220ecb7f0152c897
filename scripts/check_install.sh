#!/usr/bin/env bash
# `pip install` from source, as a new user would run it: a fresh clone of this commit, fresh
# virtual environments that have torch==2.13.0, nothing exported. Checks both routes pip
# takes: the source tree (`pip install .`) and the source distribution (`pip install
# battery_fl-*.tar.gz`, made by `maturin sdist`), then imports the package without torch on
# the library path and fits a small model.
#   scripts/check_install.sh            (make py-install-check; ~10 min, not in `make test`)
# The fresh venvs reuse .venv's torch (4.7 GB) through a .pth file instead of installing it
# again; to the build and to pip it is simply an installed torch.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
dev_python=$root/.venv/bin/python
[ -x "$dev_python" ] || { echo "install-check: run scripts/setup.sh first" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
git clone --quiet "$root" "$tmp/src"
git -C "$tmp/src" checkout --quiet "$(git rev-parse HEAD)"
# uncommitted changes travel too, so the check covers the working tree
git diff HEAD --binary --no-color --no-ext-diff --src-prefix=a/ --dst-prefix=b/ \
  | git -C "$tmp/src" apply --allow-empty
git ls-files --others --exclude-standard -z | xargs -0 -r cp --parents -t "$tmp/src"

# one cargo target folder for both builds (the second reuses the first's dependencies)
export CARGO_TARGET_DIR=$tmp/target
dev_site=$("$dev_python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')

fresh_venv() {  # the dev venv's Python, so that its torch and numpy fit
  "$dev_python" -m venv "$1"
  local site
  site=$("$1/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  echo "$dev_site" > "$site/zz_dev_torch.pth"
  "$1/bin/python" -m pip install --quiet --upgrade pip
}

# nothing of the project's environment: no LIBTORCH*, no VIRTUAL_ENV, no LD_LIBRARY_PATH
clean=(env -u LD_LIBRARY_PATH -u LIBTORCH -u LIBTORCH_USE_PYTORCH -u VIRTUAL_ENV
  -u PYTHON_SYS_EXECUTABLE PYTHONNOUSERSITE=1)

check() {  # venv: import from the installed package, fit and predict
  "${clean[@]}" "$1/bin/python" - "$1" <<'PY'
import sys
import time
from pathlib import Path

started = time.perf_counter()
import battery_fl

took = time.perf_counter() - started
import numpy as np

venv = Path(sys.argv[1]).resolve()
native = Path(battery_fl._core.__file__).resolve()
assert venv in native.parents, f"battery_fl imported from {native}, not from {venv}"
assert "torch" not in sys.modules, "import battery_fl imported the torch package"
cells = [c for f in battery_fl.synthetic.generate_fleets(fleets=1, cells_per_fleet=8, cycles=12, seed=1)
         for c in f.cells]
model = battery_fl.BatLiNet(featurizer=battery_fl.Featurizer(cycles=12, interp_dim=16),
                            conv_channels=4, epochs=2, batch_size=4, progress=False)
model.fit(cells[:6])
lives = model.predict(cells[6:], references=cells[:6], k=3)
assert lives.shape == (2,) and np.isfinite(lives).all()
print(f"install-check: battery_fl {battery_fl.__version__} from {native.parent}: import "
      f"{took:.2f} s, predictions {np.round(lives).tolist()}")
PY
}

start=$SECONDS
fresh_venv "$tmp/tree"
(cd "$tmp/src" && "${clean[@]}" CARGO_TARGET_DIR="$CARGO_TARGET_DIR" "$tmp/tree/bin/python" -m pip install --quiet .)
check "$tmp/tree"
echo "install-check: pip install . took $((SECONDS - start)) s"

start=$SECONDS
fresh_venv "$tmp/sdist"
# (its log is shown only on failure; maturin warns there that the build backend is not
# maturin: it is, underneath)
(cd "$tmp/src" && "${clean[@]}" "$root/.venv/bin/maturin" sdist --out "$tmp/dist" \
  >"$tmp/sdist.log" 2>&1) || { cat "$tmp/sdist.log" >&2; exit 1; }
sdist=$(ls "$tmp"/dist/battery_fl-*.tar.gz)
listing=$(tar -tzf "$sdist")
grep -q 'pep517/battery_fl_build.py$' <<<"$listing" \
  || { echo "install-check: the sdist lacks the build backend" >&2; exit 1; }
"${clean[@]}" CARGO_TARGET_DIR="$CARGO_TARGET_DIR" "$tmp/sdist/bin/python" -m pip install --quiet "$sdist"
check "$tmp/sdist"
echo "install-check: pip install $(basename "$sdist") took $((SECONDS - start)) s"
