"""BatLiNet intervals and flags through Python: calibrate, predict with coverage, refusals."""

from __future__ import annotations

import math
import pickle
from typing import Any

import numpy as np
import pytest
from conftest import CYCLES

import battery_fl
from battery_fl import synthetic
from battery_fl._core import DEFAULT_CALIBRATION_FOLDS


def test_predictions_with_intervals_match_the_plain_ones(
    cells: list[battery_fl.Cell], fitted: battery_fl.BatLiNet
) -> None:
    train, calibration, test = cells[:12], cells[12:16], cells[16:]
    cal = fitted.calibrate(train, calibration)
    assert len(cal) == 4 and cal.scale >= 0.0 and cal.max_distance >= 0.0
    p = fitted.predict(test, train, coverage=0.5, calibration=cal)
    assert isinstance(p, battery_fl.Predictions) and len(p) == len(test)
    np.testing.assert_allclose(p.life, fitted.predict(test, train), rtol=1e-9)
    assert ((p.lower <= p.life) & (p.life <= p.upper)).all()
    assert ((p.reference_low <= p.life) & (p.life <= p.reference_high)).all()
    assert p.out_of_distribution.dtype == np.bool_ and p.spread.dtype == np.float64
    assert np.isfinite(p.reference_distance).all() and (p.training_distance >= 0).all()
    # four calibration cells give at most 80 %
    with pytest.raises(battery_fl.DataError, match="calibration cells"):
        fitted.predict(test, train, coverage=0.9, calibration=cal)
    # a calibration survives pickling and JSON, and still fits its model
    for back in (pickle.loads(pickle.dumps(cal)), type(cal).from_json(cal.to_json())):
        q = fitted.predict(test, train, coverage=0.5, calibration=back)
        np.testing.assert_array_equal(q.upper, p.upper)
    # per chemistry by default; four cells are too few for a chemistry's own quantile, so
    # the pooled setting gives the same intervals, and the setting survives JSON
    pooled = cal.with_by_chemistry(False)
    assert cal.by_chemistry and not pooled.by_chemistry and "by_chemistry=False" in repr(pooled)
    q = fitted.predict(test, train, coverage=0.5, calibration=pooled)
    np.testing.assert_array_equal(q.upper, p.upper)
    assert not type(cal).from_json(pooled.to_json()).by_chemistry


def test_intervals_refuse_what_would_be_silently_wrong(
    cells: list[battery_fl.Cell], model_kwargs: dict[str, Any]
) -> None:
    model = battery_fl.BatLiNet(**model_kwargs)
    model.fit(cells[:12])
    with pytest.raises(battery_fl.ConfigError) as info:
        model.calibrate(cells[:12], cells[10:14])  # two training cells
    assert info.value.field == "calibration"
    cal = model.calibrate(cells[:12], cells[12:16])
    with pytest.raises(battery_fl.ConfigError, match="calibration"):
        model.predict(cells[16:], cells[:12], coverage=0.5)  # type: ignore[call-overload]
    with pytest.raises(battery_fl.ConfigError, match="coverage"):
        model.predict(cells[16:], cells[:12], calibration=cal)  # type: ignore[call-overload]
    with pytest.raises(battery_fl.ConfigError, match="leave out k"):
        model.predict(cells[16:], cells[:12], k=2, coverage=0.5, calibration=cal)  # type: ignore[call-overload]
    for outside in (0.0, 1.0, 1.5, -0.2, float("nan")):
        with pytest.raises(battery_fl.ConfigError) as info:
            model.predict(cells[16:], cells[:12], coverage=outside, calibration=cal)
        assert info.value.field == "coverage", outside
    with pytest.raises(battery_fl.ConfigError) as info:
        model.cross_calibrate(cells[:12], folds=1)
    assert info.value.field == "folds"
    # the default number of folds is the core's: more folds than these cells
    few = DEFAULT_CALIBRATION_FOLDS - 1
    with pytest.raises(battery_fl.ConfigError, match=rf"got {DEFAULT_CALIBRATION_FOLDS}\b"):
        model.cross_calibrate(cells[:few])
    # training further makes the calibration stale
    model.train(cells[:12], epochs=1)
    with pytest.raises(battery_fl.ModelError, match="calibrate again"):
        model.predict(cells[16:], cells[:12], coverage=0.5, calibration=cal)


def test_cross_calibration_scores_every_training_cell(
    cells: list[battery_fl.Cell], fitted: battery_fl.BatLiNet
) -> None:
    cal = fitted.cross_calibrate(cells[:12], folds=3)
    assert len(cal) == 12
    p = fitted.predict(cells[12:], cells[:12], coverage=0.8, calibration=cal)
    assert ((p.lower <= p.life) & (p.life <= p.upper)).all()


def test_cells_of_a_chemistry_absent_from_training_are_flagged(
    cells: list[battery_fl.Cell], fitted: battery_fl.BatLiNet
) -> None:
    train, calibration, test = cells[:12], cells[12:16], cells[16:]
    assert "LCO" not in {c.cathode for c in train + calibration}
    cal = fitted.calibrate(train, calibration)
    unseen = [
        synthetic.generate_cell(
            "LCO", cell_id=f"lco-{i}", seed=i, cycles=CYCLES, points_per_cycle=60
        )
        for i in range(3)
    ]
    p = fitted.predict(unseen + test, train, coverage=0.5, calibration=cal)
    # every cell of the unseen chemistry is flagged; the flags are per cell, in order
    assert p.out_of_distribution[:3].all()
    alone = fitted.predict(test, train, coverage=0.5, calibration=cal)
    np.testing.assert_array_equal(p.out_of_distribution[3:], alone.out_of_distribution)
    # (not a flag on everything: the training cells themselves, of seen chemistries and at
    # distance 0 from the training cells, are never flagged)
    seen = fitted.predict(train, train, coverage=0.5, calibration=cal)
    assert not seen.out_of_distribution.any() and (seen.training_distance == 0).all()


def test_bounded_predictions_are_flagged_without_a_calibration(
    cells: list[battery_fl.Cell], fitted: battery_fl.BatLiNet
) -> None:
    """``predict_bounded`` gives ``predict``'s lives and, per cell, whether it hit the bound
    around the training lives; with intervals the same flag comes as ``bounded`` (which
    cells the core bounds is tested in Rust, tests/it/model.rs)."""
    train, calibration, test = cells[:12], cells[12:16], cells[16:]
    lives, bounded = fitted.predict_bounded(test, train)
    np.testing.assert_array_equal(lives, fitted.predict(test, train))
    assert bounded.dtype == np.bool_ and bounded.shape == lives.shape
    cal = fitted.calibrate(train, calibration)
    p = fitted.predict(test, train, coverage=0.5, calibration=cal)
    np.testing.assert_array_equal(p.bounded, bounded)


def test_new_entry_points_refuse_bad_input_with_typed_errors() -> None:
    """An unknown preset is a ConfigError naming it; interval arrays of unequal lengths are a
    DataError (shape), not a silently truncated summary."""
    with pytest.raises(battery_fl.ConfigError) as info:
        battery_fl.batlinet_preset("severson")
    assert info.value.field == "preset"
    with pytest.raises(battery_fl.DataError, match="upper"):
        battery_fl.interval_summary([1.0], [2.0, 3.0], [False], [1.0])
    s = battery_fl.interval_summary([1.0, 5.0], [2.0, 6.0], [False, True], [1.5, 9.0])
    assert (s["covered"], s["labelled"], s["flagged"], s["mean_width"]) == (0.5, 2, 1, 1.0)


def test_summaries_pool_by_cells_through_the_core() -> None:
    """Fleets' summaries pooled: coverage over every labelled cell, width over every cell; a
    summary with a key the core does not know is refused by name, an empty list is empty."""
    a = battery_fl.interval_summary([0.0, 0.0], [10.0, 10.0], [False, True], [5.0, math.nan])
    b = battery_fl.interval_summary([0.0, 0.0, 0.0], [40.0] * 3, [False] * 3, [5.0, 99.0, 50.0])
    s = battery_fl.pooled_interval_summary([a, b])
    # 1 of 1 labelled in a, 1 of 3 in b: 2 of 4; widths 10, 10, 40, 40, 40 over 5 cells
    assert s["covered"] == pytest.approx(0.5) and s["labelled"] == 4
    assert s["mean_width"] == pytest.approx(28.0) and (s["flagged"], s["cells"]) == (1, 5)
    with pytest.raises(battery_fl.ConfigError) as info:
        battery_fl.pooled_interval_summary([{**a, "coverage": 0.9}])
    assert info.value.field == "summary.coverage"
    empty = battery_fl.pooled_interval_summary([])
    assert (empty["covered"], empty["cells"]) == (0.0, 0)
