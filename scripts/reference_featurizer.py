#!/usr/bin/env python3
"""Reference BatLiNet featurizer (method.md section 2) in numpy + scipy.

Written from the method text for parity checks and speed comparisons with the Rust
featurizer (battery-fl-core/src/features). Per cycle row r (recorded cycle number
first_cycle + r; a missing cycle copies the nearest recorded one, the earlier on a tie,
as the Rust default `fill_missing_cycles` does; zero rows with fill_missing=False):

- Qc, Qd = capacities / nominal; charge points I > thr, discharge points I < -thr;
- samples with capacity outside [q_min, q_max] are dropped; a curve with <= 2 samples is 0;
- curves by scipy interp1d(kind="linear", bounds_error=False, fill_value=(left, right)) on
  numpy.linspace(q_min, q_max, interp_dim): V(Qc) fill (min V, max V), V(Qd) fill
  (max V, min V), I(Qc) and I(Qd) fill 0;
- ch4 = ch0 - ch1[::-1]; ch5 = (ch0 - ch1[::-1]) / (ch2 - ch3[::-1] + 1e-3); NaN -> 0.

Cycles without current (discharge-only sources) take every sample as a discharge point for
V(Qd); every channel that would need an absent signal is 0 (as in the Rust featurizer).

Usage as a script (prints the featurization wall time, loading excluded):

    python scripts/reference_featurizer.py [--cycles C] [--dim D] [--out DIR] CELL_FILE...
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy.interpolate import interp1d

EPS_R = 1e-3


def load_cell(path: str | Path) -> dict:
    """Load one cell file of the shared schema (.json or .json.gz)."""
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return json.loads(raw)


def _curve(x, y, grid, fill, q_min, q_max):
    keep = (x >= q_min) & (x <= q_max)
    x, y = x[keep], y[keep]
    if len(x) <= 2:
        return np.zeros(len(grid))
    if fill == "charge":
        fill_value = (y.min(), y.max())
    elif fill == "discharge":
        fill_value = (y.max(), y.min())
    else:
        fill_value = (0.0, 0.0)
    f = interp1d(x, y, kind="linear", bounds_error=False, fill_value=fill_value)
    return f(grid)


def featurize_cycle(cycle: dict, nominal: float, grid, thr=0.1, q_min=0.0, q_max=1.2):
    """The six channels of one cycle, float64, shape (6, len(grid))."""
    dim = len(grid)
    out = np.zeros((6, dim))
    v = np.asarray(cycle["voltage_v"], dtype=float)
    cur = cycle.get("current_a")
    qc = cycle.get("charge_capacity_ah")
    qd = cycle.get("discharge_capacity_ah")
    has_c = cur is not None and qc is not None
    has_d = qd is not None
    has_di = has_d and cur is not None
    if has_c:
        i = np.asarray(cur, dtype=float)
        x = np.asarray(qc, dtype=float) / nominal
        m = i > thr
        out[0] = _curve(x[m], v[m], grid, "charge", q_min, q_max)
        out[2] = _curve(x[m], i[m], grid, "zero", q_min, q_max)
    if has_d:
        x = np.asarray(qd, dtype=float) / nominal
        if cur is not None:
            i = np.asarray(cur, dtype=float)
            m = i < -thr
            out[1] = _curve(x[m], v[m], grid, "discharge", q_min, q_max)
            out[3] = _curve(x[m], i[m], grid, "zero", q_min, q_max)
        else:
            out[1] = _curve(x, v, grid, "discharge", q_min, q_max)
    with np.errstate(divide="ignore", invalid="ignore"):
        if has_c and has_d:
            out[4] = out[0] - out[1][::-1]
        if has_c and has_di:
            out[5] = (out[0] - out[1][::-1]) / (out[2] - out[3][::-1] + EPS_R)
    return out


def featurize(
    cell: dict,
    cycles=100,
    first_cycle=1,
    interp_dim=1000,
    q_min=0.0,
    q_max=1.2,
    thr=0.1,
    dtype=np.float64,
    fill_missing=True,
):
    """Features of one cell, shape (6, cycles, interp_dim)."""
    grid = np.linspace(q_min, q_max, interp_dim)
    nominal = float(cell["nominal_capacity_ah"])
    feat = np.zeros((6, cycles, interp_dim))
    seen = set()
    for cycle in cell["cycles"]:
        r = cycle["cycle"] - first_cycle
        if 0 <= r < cycles and r not in seen:
            seen.add(r)
            feat[:, r] = featurize_cycle(cycle, nominal, grid, thr, q_min, q_max)
    if fill_missing and seen:
        present = sorted(seen)
        for r in range(cycles):
            if r not in seen:
                nearest = min(present, key=lambda p: (abs(p - r), p))
                feat[:, r] = feat[:, nearest]
    feat[np.isnan(feat)] = 0.0
    return feat.astype(dtype, copy=False)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cycles", type=int, default=100)
    p.add_argument("--dim", type=int, default=1000)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("files", nargs="+")
    a = p.parse_args(argv)
    cells = [load_cell(f) for f in a.files]
    t0 = time.perf_counter()
    feats = [featurize(c, cycles=a.cycles, interp_dim=a.dim) for c in cells]
    seconds = time.perf_counter() - t0
    if a.out is not None:
        a.out.mkdir(parents=True, exist_ok=True)
        for c, f in zip(cells, feats, strict=True):
            np.save(a.out / f"{c['cell_id']}.npy", f.astype(np.float32))
    print(f"featurized {len(cells)} cells in {seconds:.4f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
