"""Per-fleet risk of the linear federation's choices over ten data seeds of the demo fleets.

For each seed (the demo's five fleet profiles, 24 cells per fleet, two thirds train), every
fleet's test cells are predicted by its local model, its chosen model (``personalized``),
the global model, and two hedges: the geometric mean of the local model's prediction with
the chosen one's (``hedge``) or with the global one's (``hedge_global``). Prints each row's
RMSE over all test cells against local only, and the worst fleet's ratio to its own local
model. Usage (after ``make py-develop``): ``.venv/bin/python scripts/linear_hedge_study.py``.
"""

import numpy as np
import numpy.typing as npt

from battery_fl import federate_linear, synthetic


def rmse(p: npt.ArrayLike, y: npt.ArrayLike) -> float:
    return float(np.sqrt(np.mean((np.asarray(p) - np.asarray(y)) ** 2)))


KINDS = ["local", "personalized", "hedge", "global", "hedge_global"]
ratios: dict[str, list[float]] = {k: [] for k in KINDS}
worst_of: dict[str, list[float]] = {k: [] for k in KINDS}
for seed in range(42, 52):
    fleets = synthetic.generate_fleets(fleets=5, cells_per_fleet=24, seed=seed)
    train = [[c for i, c in enumerate(f.cells) if i % 3 != 2] for f in fleets]
    test = [[c for i, c in enumerate(f.cells) if i % 3 == 2] for f in fleets]
    fed = federate_linear(train, secure_aggregation=False)
    predictions: dict[str, list[np.ndarray]] = {k: [] for k in KINDS}
    worst = dict.fromkeys(KINDS, 0.0)
    truth = []
    for fleet, cells in zip(fed.fleets, test, strict=True):
        y = np.array([c.recorded_cycle_life for c in cells], float)
        local, chosen = fleet.local.predict(cells), fleet.predict(cells)
        glob = fed.global_model.predict(cells)
        by_kind = {
            "local": local,
            "personalized": chosen,
            "hedge": np.sqrt(local * chosen),
            "global": glob,
            "hedge_global": np.sqrt(local * glob),
        }
        for k, p in by_kind.items():
            predictions[k].append(p)
            worst[k] = max(worst[k], rmse(p, y) / rmse(local, y))
        truth.append(y)
    y_all = np.concatenate(truth)
    r = {k: rmse(np.concatenate(predictions[k]), y_all) for k in KINDS}
    for k in KINDS:
        ratios[k].append(r[k] / r["local"])
        worst_of[k].append(worst[k])
    print(seed, " | ".join(f"{k} {r[k]:.1f} (worst fleet {worst[k]:.2f})" for k in KINDS))
for k in KINDS[1:]:
    w = np.array(worst_of[k])
    print(
        f"{k}: mean ratio to local {np.mean(ratios[k]):.3f}, "
        f"seeds with a fleet above 1.05 x: {int((w > 1.05).sum())} of {len(w)}, "
        f"worst {w.max():.2f}"
    )
