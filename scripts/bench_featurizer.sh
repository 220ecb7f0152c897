#!/usr/bin/env bash
# Featurizer speed: Rust example (--threads 1) vs the numpy/scipy reference, same inputs.
#
#   scripts/bench_featurizer.sh [REPEAT]      (default REPEAT=10)
#
# Inputs: the 4 CALCE cells, each repeated REPEAT times (100 cycles x 1000 points, 6
# channels). Both programs load the files first and time featurization alone (their own
# "featurized K cells in S s" lines). Each program runs RUNS times (default 5), alternating;
# best and median are reported, since the shared machine's background load is noisy.
# Env: BFL_DATA_DIR (default the repository's data/ folder), PYTHON (default .venv/bin/python),
#      BFL_FEATURIZE_BIN (default target/release/examples/featurize, built if missing).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REPEAT="${1:-10}"
DATA="${BFL_DATA_DIR:-$ROOT/data}"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
if [[ ! -d "$DATA/calce_cs2" ]]; then
    echo "no calce_cs2/ in $DATA (default: the repository's data/ folder; BFL_DATA_DIR overrides it)" >&2
    exit 1
fi
BIN="${BFL_FEATURIZE_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/featurize}"

if [[ ! -x "$BIN" ]]; then
    (cd "$ROOT" && cargo build --release -p battery-fl-core --example featurize)
fi

FILES=()
for _ in $(seq "$REPEAT"); do
    FILES+=("$DATA"/calce_cs2/CALCE_CS2_3[5-8].json.gz)
done
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT

RUNS="${RUNS:-5}"
time_of() { awk '{print $(NF-1)}' <<<"$1"; }
stats() { sort -g | awk '{v[NR]=$1} END {printf "%s %s\n", v[1], v[int((NR+1)/2)]}'; }

echo "inputs: ${#FILES[@]} cells (4 CALCE x $REPEAT), 6 x 100 x 1000 features each; $RUNS runs of each program"
echo "machine: $(nproc) cores, load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "rust:   $BIN --threads 1 --cycles 100 --dim 1000 --out <tmp> <files>"
echo "python: $PYTHON scripts/reference_featurizer.py --cycles 100 --dim 1000 <files>"
RUST_T=()
PY_T=()
for _ in $(seq "$RUNS"); do
    # alternate the two programs so both see the same background load
    line="$("$BIN" --threads 1 --cycles 100 --dim 1000 --out "$OUT/rust" "${FILES[@]}" | tail -n 1)"
    echo "  rust:   $line"
    RUST_T+=("$(time_of "$line")")
    line="$("$PYTHON" "$ROOT/scripts/reference_featurizer.py" --cycles 100 --dim 1000 "${FILES[@]}" | tail -n 1)"
    echo "  python: $line"
    PY_T+=("$(time_of "$line")")
done
read -r RUST_MIN RUST_MED < <(printf '%s\n' "${RUST_T[@]}" | stats)
read -r PY_MIN PY_MED < <(printf '%s\n' "${PY_T[@]}" | stats)
awk -v rm="$RUST_MIN" -v rd="$RUST_MED" -v pm="$PY_MIN" -v pd="$PY_MED" -v n="${#FILES[@]}" 'BEGIN {
    printf "rust   (1 thread): best %.4f s (%.2f ms/cell), median %.4f s\n", rm, 1000 * rm / n, rd
    printf "python (scipy):    best %.4f s (%.2f ms/cell), median %.4f s\n", pm, 1000 * pm / n, pd
    printf "speedup: %.1fx (best vs best), %.1fx (median vs median)\n", pm / rm, pd / rd
}'
