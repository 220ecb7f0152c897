#!/usr/bin/env bash
# Build the release wheel and check it installs and works in a separate, fresh virtual
# environment that has torch==2.13.0. The fresh venv reuses .venv's torch (and numpy)
# through a .pth file, so torch is not downloaded twice; its own site-packages come first, so
# `battery_fl` is imported from the installed wheel, not from this checkout.
#   scripts/check_wheel.sh            (make py-wheel-check)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

out=target/wheels
rm -f "$out"/battery_fl-*.whl
maturin build --release --quiet --out "$out"
wheel=$(ls "$out"/battery_fl-*-abi3-*.whl)
echo "wheel-check: built $wheel ($(du -h "$wheel" | cut -f1))"

# the wheel carries the package and the native module, never libtorch; it pins torch
if unzip -l "$wheel" | grep -Eq 'libtorch|libc10'; then
  echo "wheel-check: the wheel bundles libtorch" >&2; exit 1
fi
unzip -p "$wheel" '*.dist-info/METADATA' | grep -qx 'Requires-Dist: torch==2.13.0' \
  || { echo "wheel-check: torch==2.13.0 is not a declared dependency" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python -m venv "$tmp/venv"
venv_site=$("$tmp/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
dev_site=$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$dev_site" > "$venv_site/zz_dev_torch.pth"
# --force-reinstall: pip sees .venv's editable battery-fl through the .pth and leaves it alone
"$tmp/venv/bin/python" -m pip install --quiet --no-deps --force-reinstall "$wheel" 2>&1 \
  | grep -v "outside environment" || true

# no LD_LIBRARY_PATH: libtorch must resolve through the installed torch package alone
env -u LD_LIBRARY_PATH -u LIBTORCH_USE_PYTORCH -u VIRTUAL_ENV PYTHONNOUSERSITE=1 \
  "$tmp/venv/bin/python" - "$tmp/venv" <<'PY'
import sys
from pathlib import Path

import battery_fl
from battery_fl import dp, secagg, synthetic

assert "torch" not in sys.modules, "import battery_fl imported the torch package"
import numpy as np
import torch

venv = Path(sys.argv[1]).resolve()
native = Path(battery_fl._core.__file__).resolve()
assert venv in native.parents, f"battery_fl imported from {native}, not from the wheel"
assert torch.__version__.split("+")[0] == "2.13.0", torch.__version__
maps = Path("/proc/self/maps").read_text()
libtorch = {line.split()[-1] for line in maps.splitlines() if "libtorch_cpu" in line}
assert libtorch and all(Path(torch.__file__).parent.resolve() in Path(p).resolve().parents for p in libtorch), libtorch

cells = [c for f in synthetic.generate_fleets(fleets=1, cells_per_fleet=8, cycles=12, seed=1) for c in f.cells]
model = battery_fl.BatLiNet(featurizer=battery_fl.Featurizer(cycles=12, interp_dim=16),
                            conv_channels=4, epochs=2, batch_size=4, progress=False)
model.fit(cells[:6])
lives = model.predict(cells[6:], references=cells[:6], k=3)
assert lives.shape == (2,) and np.isfinite(lives).all()
total = secagg.simulate_round([np.ones(3, dtype=np.float32)] * 4, threshold=3, seed=1)
assert np.allclose(total, 4.0, atol=1e-4)
assert round(dp.clip(np.array([3.0, 4.0]), 1.0).sum(), 4) == 1.4
print(f"wheel-check: battery_fl {battery_fl.__version__} from {native.parent} works with torch "
      f"{torch.__version__} ({next(iter(libtorch))}); predictions {np.round(lives).tolist()}")
PY
