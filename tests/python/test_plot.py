"""battery_fl.plot, headless: the figures carry what a reader needs (title, axes in cycles,
a legend naming every fleet, interval bars, flagged cells, local-only reference lines)."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest

import battery_fl
from battery_fl import plot, synthetic


def _legend(fig: Any) -> list[str]:
    return [t.get_text() for t in fig.axes[0].get_legend().get_texts()]


def test_predicted_vs_true_draws_every_fleet_with_intervals_and_flags() -> None:
    fleets = [f.cells for f in synthetic.generate_fleets(fleets=2, cells_per_fleet=14, seed=3)]
    data, flags = {}, {}
    for i, cells in enumerate(fleets):
        model = battery_fl.LinearModel.fit(cells[:10])
        lives, lower, upper, _ = model.predict_intervals(cells[10:], cells[:10], coverage=0.8)
        truth = np.array([c.cycle_life() for c in cells[10:]], dtype=float)
        data[f"fleet {i}"] = (truth, lives, lower, upper)
        flags[f"fleet {i}"] = np.array([True, False, False, False])
    fig = plot.predicted_vs_true(data, flagged=flags, title="two fleets")
    ax = fig.axes[0]
    assert ax.get_title() == "two fleets"
    assert (
        ax.get_xlabel() == "true cycle life (cycles)"
        and ax.get_ylabel() == "predicted cycle life (cycles)"
    )
    assert _legend(fig) == ["fleet 0", "fleet 1"]
    # one error-bar container per fleet, four cells each, and one cross per fleet
    assert len(ax.containers) == 2
    assert all(len(c.lines[0].get_xdata()) == 4 for c in ax.containers)
    from matplotlib.collections import PathCollection

    crosses = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert [c.get_offsets().shape[0] for c in crosses] == [1, 1]
    # tick labels are whole cycles, not 410.21
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert labels and all("." not in t for t in labels)
    png = io.BytesIO()
    fig.savefig(png, format="png")
    assert png.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rmse_per_round_shows_each_fleet_and_its_local_level(
    fleets: list[synthetic.Fleet], model_kwargs: dict[str, Any]
) -> None:
    fleet_data = [(f.id, f.cells[:4], f.cells[4:]) for f in fleets]
    sim = battery_fl.Simulation(
        fleet_data,
        model=battery_fl.BatLiNet(**model_kwargs),
        rounds=2,
        local_epochs=1,
        seed=1,
        inference_references=4,
        strategy="fed_avg",
    )
    records = sim.run()
    local = {f.id: 500.0 + 10 * i for i, f in enumerate(fleets)}
    fig = plot.rmse_per_round(records, local=local)
    ax = fig.axes[0]
    assert ax.get_ylabel() == "RMSE (cycles)" and ax.get_xlabel() == "round"
    names = _legend(fig)
    assert names[0] == "all fleets"
    for f in fleets:
        assert f.id in names and f"{f.id}, local only" in names
    # the global line holds each round's global RMSE
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [r["global_rmse"] for r in records])
    # each local-only level is a horizontal line at its value
    levels = sorted(
        float(line.get_ydata()[0])
        for line in ax.lines
        if len(set(line.get_ydata())) == 1 and len(line.get_ydata()) == 2
    )
    assert levels == pytest.approx(sorted(local.values()))


def test_bad_input_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="at least one fleet"):
        plot.predicted_vs_true({})
    with pytest.raises(ValueError, match="one length"):
        plot.predicted_vs_true({"a": (np.ones(3), np.ones(2))})
    with pytest.raises(ValueError, match="at least one round"):
        plot.rmse_per_round([])
