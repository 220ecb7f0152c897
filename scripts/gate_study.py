"""Per-cell gating between BatLiNet and the hybrid on ``--cells-out`` files.

The rule of ``model::GatedModel``: a cell whose linear prediction lies outside the range of
the training lives, or which the linear model flags out of its distribution (``ood`` in the
linear lines), is an extrapolation, where the network's reading of the curves has nothing to
go on and the linear anchor of the hybrid holds; every other cell takes BatLiNet. Prints RMSE
per split and seed for the variance and linear models, BatLiNet, the hybrid and the gated
model (mean ± population sd over seeds, as the examples print it), and how many cells the
gate sent to the hybrid.

With ``--members M`` each "seed" S is an ensemble, as ``GatedModel`` with ``members = M``
trains it (``eval_matr --members``): the geometric mean of the single-seed predictions of
model seeds S·M, ..., S·M + M − 1 (which the files must hold).

    python scripts/gate_study.py [--members M] out/s18/primary.jsonl out/s18/lobo*.jsonl \
        out/s18/linear_flags.jsonl
    # eval_synthetic --networks batlinet,hybrid --seeds 6 --cells-out out/s19/lofo.jsonl
    python scripts/gate_study.py --members 3 out/s19/lofo.jsonl
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections import defaultdict


def rmse(pairs: list[tuple[float, float]]) -> float:
    return math.sqrt(sum((p - y) ** 2 for p, y in pairs) / len(pairs))


def ensemble(runs: list[dict[str, dict]]) -> dict[str, dict]:
    """Per cell, the geometric mean of the runs' predictions (the first run's other keys)."""
    out = {}
    for cell, first in runs[0].items():
        logs = [math.log(r[cell]["pred"]) for r in runs]
        out[cell] = dict(first, pred=math.exp(sum(logs) / len(logs)))
    return out


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1, help="seeds per ensemble")
    parser.add_argument("files", nargs="+")
    args = parser.parse_args(argv)
    m = args.members
    if m < 1:
        sys.exit("--members must be at least 1")
    # (split, model, seed) -> cell -> record
    rows: dict[tuple[str, str, int], dict[str, dict]] = defaultdict(dict)
    for path in args.files:
        with open(path) as f:
            for line in f:
                r = json.loads(line)
                rows[(r["split"], r["model"], r["seed"])][r["cell"]] = r
    splits = sorted({k[0] for k in rows})
    scored = 0
    for split in splits:
        linear = rows[(split, "linear", 0)]
        variance = rows[(split, "variance", 0)]
        have = {
            s
            for (sp, model, s) in rows
            if sp == split and model == "hybrid" and (sp, "batlinet", s) in rows
        }
        # ensembles whose every member is in the files
        seeds = sorted(
            s for s in {s // m for s in have} if all(s * m + i in have for i in range(m))
        )
        if not seeds:
            print(
                f"{split}: skipped, no complete ensemble of {m} seeds with both batlinet and "
                "hybrid lines (run the examples with --models/--networks batlinet,hybrid)",
                file=sys.stderr,
            )
            continue
        scored += 1
        if not any("ood" in r for r in linear.values()):
            sys.exit(
                f"{split}: no `ood` in the linear lines: add eval_matr --models none --cells-out"
            )
        print(f"## {split}: {len(linear)} cells" + (f", {m} seeds per ensemble" if m > 1 else ""))
        print(f"variance {rmse([(r['pred'], r['life']) for r in variance.values()]):.1f}")
        print(f"linear   {rmse([(r['pred'], r['life']) for r in linear.values()]):.1f}")
        table: dict[str, list[float]] = defaultdict(list)
        for seed in seeds:
            members = range(seed * m, seed * m + m)
            net = ensemble([rows[(split, "batlinet", s)] for s in members])
            hyb = ensemble([rows[(split, "hybrid", s)] for s in members])
            gate, sent = [], 0
            for cell, lin in linear.items():
                outside = lin.get("ood", False) or not (
                    lin["train_min"] <= lin["pred"] <= lin["train_max"]
                )
                sent += outside
                pick = hyb if outside else net
                gate.append((pick[cell]["pred"], lin["life"]))
            table["batlinet"].append(rmse([(r["pred"], r["life"]) for r in net.values()]))
            table["hybrid"].append(rmse([(r["pred"], r["life"]) for r in hyb.values()]))
            table["gated"].append(rmse(gate))
            print(f"seed {seed}: cells sent to the hybrid {sent}/{len(linear)}")
        for name, values in table.items():
            # population sd over seeds, as eval_matr and eval_synthetic print it
            spread = statistics.pstdev(values)
            per_seed = ", ".join(f"{v:.1f}" for v in values)
            print(f"{name:<9} {statistics.mean(values):.1f} +- {spread:.1f} ({per_seed})")
        print()
    if not scored:
        sys.exit("no split holds a complete ensemble: nothing to score")


if __name__ == "__main__":
    main(sys.argv[1:])
