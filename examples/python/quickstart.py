"""Quickstart: load real cells, featurize them, fit BatLiNet, predict cycle life.

The cells are the MATR fast-charging LFP cells of Severson et al. (2019), as converted in
the repository's ``data/matr_severson_qv`` (see its README; ``BFL_DATA_DIR`` names another
data folder, ``--data`` another MATR folder): 84 cells split into ``train`` and
``primary_test``; each file holds cycles 2..100 of the *discharge branch only* (Q on a fixed
voltage grid, no current, no charge data). So the featurizer starts at cycle 2 and the model
reads one channel, V(Qd) (channel 1); the five others are zero for these cells.

    python examples/python/quickstart.py            # the full setting (minutes)
    python examples/python/quickstart.py --small    # a few seconds (run by `make py-test`)

Seeded: the same command prints the same numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

import battery_fl

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA = Path(os.environ.get("BFL_DATA_DIR", ROOT / "data")) / "matr_severson_qv"
OUTLIER = "MATR_2017-06-30_EL150800460605"  # cycle life 148, left out as Severson et al. do


def rmse(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(np.sqrt(np.mean((pred - truth) ** 2)))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="MATR folder (with index.json)"
    )
    parser.add_argument("--small", action="store_true", help="few cells, coarse grid, few epochs")
    parser.add_argument("--epochs", type=int, help="training epochs (default 300, small 8)")
    parser.add_argument(
        "--intervals",
        action="store_true",
        help="also 80 %% conformal intervals, cross-calibrated with 3 fold models "
        "(three more trainings; always on with --small)",
    )
    args = parser.parse_args()
    if not (args.data / "index.json").is_file():
        parser.error(
            f"no MATR index.json in {args.data} (default: the repository's data/matr_severson_qv; "
            "BFL_DATA_DIR overrides the data folder, --data the MATR folder)"
        )

    # 1. load: one file per cell, the split comes from the folder's index.json
    t0 = time.perf_counter()
    cells = battery_fl.load_cells(args.data)
    split = {e["cell_id"]: e["split"] for e in json.loads((args.data / "index.json").read_text())}
    # the source leaves a few physically implausible cycles (|Q| up to 49 Ah): drop them
    cleaned = []
    for cell in cells:
        fixed, dropped = cell.clean()
        cleaned.append(fixed)
        if dropped:
            print(f"  {cell.cell_id}: dropped implausible cycles {dropped}")
    train = [c for c in cleaned if split[c.cell_id] == "train"]
    test = [c for c in cleaned if split[c.cell_id] == "primary_test" and c.cell_id != OUTLIER]
    if args.small:
        train, test = train[::3], test[::4]
    print(
        f"{len(cells)} cells loaded in {time.perf_counter() - t0:.1f} s: {len(train)} train, {len(test)} test"
    )

    # 2. what a cell is, and its features: (6 channels, 99 cycles, grid points), float32
    first = train[0]
    fingerprint = battery_fl.GenomeFingerprint.from_cell(first)
    print(
        f"{first.cell_id}: {fingerprint.cathode}, {first.nominal_capacity_ah} Ah, "
        f"recorded cycle life {first.recorded_cycle_life}, signature peaks at "
        f"{[round(v, 2) for v, _ in fingerprint.peaks[:2]]} V"
    )
    featurizer = battery_fl.Featurizer(
        cycles=99, first_cycle=2, interp_dim=32 if args.small else 200
    )
    x = featurizer.transform(first)
    print(
        f"features {x.shape} {x.dtype}; non-zero channels: "
        f"{[featurizer.channel_names[c] for c in range(6) if np.any(x[c])]}"
    )

    # 3. fit BatLiNet on the discharge channel, predict the test cells from train references
    model = battery_fl.BatLiNet(
        featurizer=featurizer,
        input_channels=[1],
        conv_channels=8 if args.small else 32,
        batch_size=16,
        epochs=args.epochs or (8 if args.small else 300),
        seed=0,
    )
    t0 = time.perf_counter()
    losses = model.fit(train)
    print(
        f"fitted {model.num_parameters} weights in {time.perf_counter() - t0:.1f} s "
        f"(loss {losses[0]:.3f} -> {losses[-1]:.3f})"
    )
    truth = np.array([c.recorded_cycle_life for c in test], dtype=float)
    pred = model.predict(test, references=train, k=min(32, len(train) - 1))
    print(f"BatLiNet RMSE on {len(test)} test cells: {rmse(pred, truth):.1f} cycles")
    for cell, p, t in list(zip(test, pred, truth, strict=True))[:3]:
        print(f"  {cell.cell_id}: predicted {p:.0f}, true {t:.0f}")

    # intervals: calibrated by 3 fold models on the training cells (no test cell involved)
    if args.small or args.intervals:
        calibration = model.cross_calibrate(train, folds=3)
        p = model.predict(test, train, coverage=0.8, calibration=calibration)
        inside = float(np.mean((p.lower <= truth) & (truth <= p.upper)))
        print(
            f"80 % intervals: {100 * inside:.0f} % of test cells inside, mean width "
            f"{np.mean(p.upper - p.lower):.0f} cycles, {int(p.out_of_distribution.sum())} flagged"
        )

    # the Severson variance baseline on the same split
    if not args.small:
        baseline = battery_fl.VarianceModel.fit(train)
        print(f"variance baseline RMSE: {rmse(baseline.predict(test), truth):.1f} cycles")

    # 4. save and reload: model.safetensors opens in PyTorch with the safetensors package
    with tempfile.TemporaryDirectory() as tmp:
        model.save(tmp)
        again = battery_fl.BatLiNet.load(tmp)
        same = np.array_equal(
            again.predict(test, references=train, k=min(32, len(train) - 1)), pred
        )
        print(f"saved {sorted(p.name for p in Path(tmp).iterdir())}; reloaded model agrees: {same}")
        assert same


if __name__ == "__main__":
    main()
