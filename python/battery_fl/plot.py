"""Pictures of a federation with matplotlib (``pip install "battery-fl[plot]"``): the same
two plots the main job draws, for Python users.

- :func:`predicted_vs_true`: each fleet's predictions against the true cycle life, with
  interval bars and out-of-distribution cells crossed, the identity line, a legend with the
  fleet names, axes in cycles;
- :func:`rmse_per_round`: RMSE per round of a :class:`battery_fl.Simulation` (global and
  per fleet), with each fleet's local-only level as a dashed reference line.

Both return a matplotlib ``Figure`` built without pyplot: no backend is chosen, no window
opens (headless is fine); save it with ``fig.savefig`` or show it in a notebook.

>>> import numpy as np
>>> from battery_fl import plot
>>> fig = plot.predicted_vs_true({"fleet A": (np.array([500., 900.]), np.array([520., 850.]))})
>>> ax = fig.axes[0]
>>> ax.get_xlabel(), [t.get_text() for t in ax.get_legend().get_texts()]
('true cycle life (cycles)', ['fleet A'])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

try:
    # Figure, not pyplot: no backend is chosen and no window opens; Figure.savefig renders
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator, StrMethodFormatter
except ImportError as err:  # pragma: no cover - only without the optional dependency
    raise ImportError('battery_fl.plot needs matplotlib: pip install "battery-fl[plot]"') from err

__all__ = ["predicted_vs_true", "rmse_per_round"]

_Array = npt.ArrayLike


def _cycles(ax: Any) -> None:
    """Whole-cycle tick labels with thousands separators, a light grid."""
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(MaxNLocator(nbins=6, integer=True))
        axis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    ax.grid(True, alpha=0.3)


def predicted_vs_true(
    fleets: Mapping[
        str, tuple[_Array, _Array] | tuple[_Array, _Array, _Array, _Array] | tuple[_Array, ...]
    ],
    *,
    flagged: Mapping[str, _Array] | None = None,
    title: str = "Predicted vs true cycle life",
) -> Figure:
    """Predicted against true cycle life per fleet.

    ``fleets`` maps a fleet's name to ``(truth, predicted)`` or ``(truth, predicted, lower,
    upper)`` arrays (cycles; the interval bars are drawn when given); ``flagged`` maps a
    fleet's name to a boolean array of cells flagged out of distribution (drawn as crosses).
    """
    if not fleets:
        raise ValueError("predicted_vs_true needs at least one fleet")
    fig = Figure(figsize=(7.0, 6.0), layout="constrained")
    ax = fig.add_subplot()
    lo, hi = np.inf, -np.inf
    for name, arrays in fleets.items():
        truth = np.asarray(arrays[0], dtype=np.float64)
        predicted = np.asarray(arrays[1], dtype=np.float64)
        if truth.shape != predicted.shape or truth.ndim != 1:
            raise ValueError(
                f"fleet {name!r}: truth and predicted must be 1-D arrays of one length"
            )
        if len(arrays) == 4:
            lower = np.asarray(arrays[2], dtype=np.float64)
            upper = np.asarray(arrays[3], dtype=np.float64)
            errors = np.vstack([predicted - lower, upper - predicted]).clip(min=0.0)
            bars = ax.errorbar(
                truth, predicted, yerr=errors, fmt="o", ms=5, capsize=2, alpha=0.8, label=name
            )
            colour = bars[0].get_color()
            lo, hi = min(lo, lower.min()), max(hi, upper.max())
        elif len(arrays) == 2:
            points = ax.scatter(truth, predicted, s=25, alpha=0.8, label=name)
            colour = points.get_facecolor()[0]
        else:
            raise ValueError(
                f"fleet {name!r}: give (truth, predicted) or (truth, predicted, lower, upper)"
            )
        marks = None if flagged is None else flagged.get(name)
        if marks is not None:
            m = np.asarray(marks, dtype=bool)
            if m.any():
                ax.scatter(truth[m], predicted[m], marker="x", s=80, color=colour, linewidths=2)
        lo = min(lo, truth.min(), predicted.min())
        hi = max(hi, truth.max(), predicted.max())
    pad = 0.05 * (hi - lo if hi > lo else 1.0)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "--", color="grey", lw=1, label="_identity")
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_xlabel("true cycle life (cycles)")
    ax.set_ylabel("predicted cycle life (cycles)")
    ax.set_title(title)
    _cycles(ax)
    ax.legend(title="fleet" + (" (x: out of distribution)" if flagged else ""), loc="upper left")
    return fig


def rmse_per_round(
    records: Sequence[Mapping[str, Any]],
    *,
    local: Mapping[str, float] | None = None,
    personalized: bool = False,
    title: str = "RMSE per round",
) -> Figure:
    """RMSE per round from :meth:`battery_fl.Simulation.run` records: the global model over
    all test cells (thick) and per fleet (``fleet_rmse``, or ``fleet_personalized_rmse``
    with ``personalized``), with each fleet's local-only RMSE from ``local`` (fleet name ->
    cycles) as a dashed line in the fleet's colour."""
    if not records:
        raise ValueError("rmse_per_round needs at least one round record")
    rounds = [int(r["round"]) for r in records]
    key = "fleet_personalized_rmse" if personalized else "fleet_rmse"
    fig = Figure(figsize=(8.0, 5.0), layout="constrained")
    ax = fig.add_subplot()
    overall = "personalized_rmse" if personalized else "global_rmse"
    ax.plot(
        rounds,
        [float(r[overall]) for r in records],
        "-o",
        color="black",
        lw=2.5,
        label="all fleets",
    )
    fleets = sorted({f for r in records for f in r[key]})
    for fleet in fleets:
        values = [float(r[key].get(fleet, np.nan)) for r in records]
        (line,) = ax.plot(rounds, values, "-o", ms=4, label=fleet)
        if local is not None and fleet in local:
            ax.axhline(
                float(local[fleet]),
                ls="--",
                lw=1,
                color=line.get_color(),
                label=f"{fleet}, local only",
            )
    ax.set_xlabel("round")
    ax.set_ylabel("RMSE (cycles)")
    ax.set_title(title)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    ax.grid(True, alpha=0.3)
    ax.legend(
        title="fleet (dashed: local only)" if local else "fleet", loc="best", fontsize="small"
    )
    return fig
