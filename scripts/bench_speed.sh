#!/usr/bin/env bash
# BatLiNet speed, ours (tch, default settings: nothing called beforehand) against the same
# architecture in plain PyTorch, in one run on the same machine and arguments, alternating
# RUNS times; prints a markdown table of the best and median of each number.
#   RUNS=3 scripts/bench_speed.sh [--threads 2] [--steps 3] [--infer-cells 8] [--infer-k 1,32,64] ...
# Arguments go to both `target/release/examples/bench_model` and `scripts/bench_torch_step.py`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
RUNS=${RUNS:-3}
args=("$@")
cargo build --quiet --release -p battery-fl-core --features tch --example bench_model
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for run in $(seq "$RUNS"); do
  echo "bench-speed: run $run of $RUNS" >&2
  target/release/examples/bench_model "${args[@]}" >"$out/ours.$run"
  python scripts/bench_torch_step.py "${args[@]}" >"$out/torch.$run"
done
python - "$out" "$RUNS" <<'PY'
import re
import statistics
import sys
from pathlib import Path

out, runs = Path(sys.argv[1]), int(sys.argv[2])


def numbers(prog: str) -> dict[str, list[float]]:
    rows: dict[str, list[float]] = {}
    for run in range(1, runs + 1):
        for line in (out / f"{prog}.{run}").read_text().splitlines():
            if m := re.match(r"train step \(([^)]*)\): ([\d.]+) s", line):
                rows.setdefault(f"train step ({m[1]}), s", []).append(float(m[2]))
            elif m := re.match(r"inference K = (\d+): ([\d.]+) cells/s", line):
                rows.setdefault(f"inference K = {m[1]}, cells/s", []).append(float(m[2]))
    return rows


ours, torch = numbers("ours"), numbers("torch")
print(f"{(out / 'ours.1').read_text().splitlines()[0]}; {runs} alternating runs")
print("| | ours (tch): best / median | PyTorch: best / median | ours vs PyTorch (medians) |")
print("| --- | --- | --- | --- |")
for key, mine in ours.items():
    theirs = torch.get(key, [])
    if not theirs:
        continue
    lower_is_better = key.endswith(", s")
    best = min if lower_is_better else max
    m, t = statistics.median(mine), statistics.median(theirs)
    ratio = m / t
    say = f"{ratio:.2f}x the time" if lower_is_better else f"{ratio:.2f}x the speed"
    print(f"| {key} | {best(mine):.3g} / {m:.3g} | {best(theirs):.3g} / {t:.3g} | {say} |")
PY
