"""The linear early-life model and its federation through the Python binding."""

from __future__ import annotations

import pickle
import tempfile
from pathlib import Path

import numpy as np
import pytest

import battery_fl
from battery_fl import synthetic
from battery_fl._core import DEFAULT_CHOICE_MARGIN


@pytest.fixture(scope="module")
def fleets() -> list[list[battery_fl.Cell]]:
    return [f.cells for f in synthetic.generate_fleets(fleets=3, cells_per_fleet=15, seed=11)]


def _rmse(pred: np.ndarray, cells: list[battery_fl.Cell]) -> float:
    truth = np.array([c.cycle_life() for c in cells], dtype=float)
    return float(np.sqrt(np.mean((pred - truth) ** 2)))


def test_fit_predict_and_pickle(fleets: list[list[battery_fl.Cell]]) -> None:
    train, test = fleets[0][:11], fleets[0][11:]
    model = battery_fl.LinearModel.fit(train)
    lives, bounded = model.predict_bounded(test)
    assert lives.dtype == np.float64 and lives.shape == (4,)
    assert not bounded.any()
    np.testing.assert_allclose(model.predict(test), lives)
    assert model.feature_set in {"variance", "fade", "discharge", "conditions", "aging", "full"}
    again = pickle.loads(pickle.dumps(model))
    assert again == model
    np.testing.assert_allclose(again.predict(test), lives)
    # far better than predicting the mean training life for every cell
    mean_life = np.mean([c.cycle_life() for c in train])
    assert _rmse(lives, test) < _rmse(np.full(4, mean_life), test)


def test_federation_is_the_pooled_fit_and_fleets_leave_it_only_when_clearly_better(
    fleets: list[list[battery_fl.Cell]],
) -> None:
    secure = battery_fl.federate_linear(fleets, seed=3)
    plain = battery_fl.federate_linear(fleets, secure_aggregation=False, seed=3)
    cells = [c for f in fleets for c in f]
    np.testing.assert_allclose(
        secure.global_model.predict(cells), plain.global_model.predict(cells), rtol=1e-4
    )
    assert len(secure.fleets) == 3
    for fleet, own in zip(secure.fleets, fleets, strict=True):
        assert {c["cathode"] for c in fleet.choices} == {c.cathode for c in own}
        assert all(c["choice"] in {"local", "personalized", "global"} for c in fleet.choices)
        assert fleet.predict(own).shape == (len(own),)
        np.testing.assert_allclose(
            fleet.global_model.predict(cells), secure.global_model.predict(cells), rtol=1e-12
        )
        for model in (fleet.local, fleet.personalized, fleet.shared):  # lambda may be inf
            assert pickle.loads(pickle.dumps(model)) == model
    # with no margin each fleet keeps the least validated error: never worse than alone there
    least = battery_fl.federate_linear(fleets, seed=3, choice_margin=0.0)
    for fleet in least.fleets:
        local_error, personal_error = fleet.errors
        assert personal_error <= local_error + 1e-12
    # a margin no gain passes keeps the global model everywhere; a negative one is refused
    never = battery_fl.federate_linear(fleets, seed=3, choice_margin=1e9)
    assert all(c["choice"] == "global" for f in never.fleets for c in f.choices)
    default = battery_fl.federate_linear(fleets, seed=3, choice_margin=DEFAULT_CHOICE_MARGIN)
    assert [f.choices for f in default.fleets] == [f.choices for f in secure.fleets]
    with pytest.raises(battery_fl.ConfigError, match="choice_margin"):
        battery_fl.federate_linear(fleets, choice_margin=-1.0)


def test_record_level_privacy_reports_its_budget_and_is_reproducible(
    fleets: list[list[battery_fl.Cell]],
) -> None:
    exact = battery_fl.federate_linear(fleets, seed=3)
    assert exact.privacy is None
    a = battery_fl.federate_linear(fleets, seed=3, epsilon=2.0, noise_seed=5)
    b = battery_fl.federate_linear(fleets, seed=3, epsilon=2.0, noise_seed=5)
    assert a.privacy is not None
    assert a.privacy["epsilon"] == pytest.approx(2.0, abs=1e-3)
    assert a.privacy["mode"] == "distributed" and a.privacy["releases"] == 2
    cells = [c for f in fleets for c in f]
    np.testing.assert_array_equal(a.global_model.predict(cells), b.global_model.predict(cells))
    # the noise moves the shared model; each fleet still keeps what validates best at home
    assert not np.allclose(a.global_model.predict(cells), exact.global_model.predict(cells))
    for fleet in a.fleets:
        local_error, personal_error = fleet.errors
        assert personal_error <= local_error + 1e-12
    local = battery_fl.federate_linear(fleets, secure_aggregation=False, epsilon=2.0, noise_seed=5)
    assert local.privacy is not None and local.privacy["mode"] == "local"
    with pytest.raises(battery_fl.ConfigError):
        battery_fl.federate_linear(fleets, epsilon=-1.0)
    # the steps refuse sums of the wrong length with a typed error
    steps = battery_fl.LinearSteps(3)
    with pytest.raises(battery_fl.DataError) as err:
        steps.errors(fleets[0], [0.0] * 3)
    assert err.value.kind == "shape"
    total = sum(steps.share(f) for f in fleets)
    with pytest.raises(battery_fl.DataError):
        steps.global_model(total, [0.0])


def test_bad_input_raises_typed_errors(fleets: list[list[battery_fl.Cell]]) -> None:
    with pytest.raises(battery_fl.DataError) as err:
        battery_fl.federate_linear(fleets[:1])
    assert err.value.kind == "not_enough_data"
    with pytest.raises(battery_fl.DataError):
        battery_fl.LinearModel.fit([])


def test_intervals_cover_and_flag_an_unseen_chemistry() -> None:
    cells = [
        c for f in synthetic.generate_fleets(fleets=5, cells_per_fleet=40, seed=4) for c in f.cells
    ]
    seen = [c for c in cells if c.cathode != "NMC"]
    unseen = [c for c in cells if c.cathode == "NMC"]
    train, test = seen[::2], seen[1::2]
    model = battery_fl.LinearModel.fit(train)
    lives, lower, upper, ood = model.predict_intervals(test, train, coverage=0.9)
    truth = np.array([c.cycle_life() for c in test], dtype=float)
    covered = float(np.mean((lower <= truth) & (truth <= upper)))
    assert 0.8 <= covered <= 0.98
    assert float(np.mean(ood)) < 0.15
    assert (lower <= lives).all() and (lives <= upper).all()
    _, _, _, ood_unseen = model.predict_intervals(unseen, train)
    assert ood_unseen.all()
    # the default coverage is the core's
    default = model.predict_intervals(test, train)
    at_core = model.predict_intervals(test, train, coverage=battery_fl._core.DEFAULT_COVERAGE)
    for a, b in zip(default, at_core, strict=True):
        np.testing.assert_array_equal(a, b)
    # a named tuple: BatLiNet's Predictions' names for the same arrays, pickled by name
    assert isinstance(default, battery_fl.LinearPredictions)
    np.testing.assert_array_equal(default.lower, default[1])
    shared = {"life", "lower", "upper", "out_of_distribution"}
    assert shared == set(default._fields) <= set(dir(battery_fl.Predictions))
    again = pickle.loads(pickle.dumps(default))
    assert type(again) is battery_fl.LinearPredictions
    np.testing.assert_array_equal(again.upper, default.upper)
    with pytest.raises(battery_fl.DataError):  # five cells cannot calibrate 90 % intervals
        model.predict_intervals(test, train[:5])
    with pytest.raises(battery_fl.ConfigError):
        model.predict_intervals(test, train, coverage=1.5)


def test_hybrid_corrects_the_linear_model_it_selects() -> None:
    cells = synthetic.generate_fleets(fleets=1, cells_per_fleet=20, seed=5)[0].cells
    train, test = cells[:15], cells[15:]
    template = battery_fl.BatLiNet(
        featurizer=battery_fl.Featurizer(cycles=12, interp_dim=16),
        conv_channels=4,
        epochs=3,
        progress=False,
    )
    hybrid = battery_fl.HybridModel.fit(train, template)
    alone = battery_fl.LinearModel.fit(train)
    # the same linear model as fitting it alone, with a learned correction on top
    assert hybrid.linear == alone
    lives, linear = hybrid.predict(test), alone.predict(test)
    assert lives.shape == (5,) and np.isfinite(lives).all()
    assert not np.allclose(lives, linear)
    assert np.all((lives / linear > 0.2) & (lives / linear < 5.0))
    with pytest.raises(battery_fl.DataError):
        battery_fl.HybridModel.fit([], template)
    # saved and loaded, it predicts the same
    with tempfile.TemporaryDirectory() as tmp:
        hybrid.save(tmp)
        np.testing.assert_array_equal(battery_fl.HybridModel.load(tmp).predict(test), lives)
        with pytest.raises(battery_fl.BatteryFlError):
            battery_fl.HybridModel.load(Path(tmp) / "missing")


def test_gated_model_takes_the_hybrid_where_the_linear_model_extrapolates() -> None:
    cells = synthetic.generate_fleets(fleets=1, cells_per_fleet=24, seed=5)[0].cells
    cells.sort(key=lambda c: c.cycle_life() or 0)
    # trained on the shorter-lived cells, tested on some of those and the longest-lived
    train = [c for i, c in enumerate(cells[:18]) if i % 3]
    test = [c for i, c in enumerate(cells[:18]) if not i % 3] + cells[18:]
    template = battery_fl.BatLiNet(
        featurizer=battery_fl.Featurizer(cycles=12, interp_dim=16),
        conv_channels=4,
        epochs=3,
        progress=False,
    )
    gated = battery_fl.GatedModel.fit(train, template, members=1)
    assert gated.members == 1
    lo, hi = gated.label_range
    assert (lo, hi) == (min(c.cycle_life() for c in train), max(c.cycle_life() for c in train))
    alone = battery_fl.LinearModel.fit(train)
    linear = alone.predict(test)
    _, _, _, ood = alone.predict_intervals(test, train, coverage=0.5)
    flags = gated.extrapolates(test)
    np.testing.assert_array_equal(flags, ood | (linear < lo) | (linear > hi))
    assert flags.any() and not flags.all()
    lives = gated.predict(test)
    hybrid = battery_fl.HybridModel.fit(train, template).predict(test)
    np.testing.assert_allclose(lives[flags], hybrid[flags], rtol=1e-6)
    with tempfile.TemporaryDirectory() as tmp:
        gated.save(tmp)
        back = battery_fl.GatedModel.load(tmp)
        np.testing.assert_array_equal(back.predict(test), lives)
        with pytest.raises(battery_fl.BatteryFlError):
            battery_fl.GatedModel.load(Path(tmp) / "missing")
    # two members: every cell's life is the geometric mean of two seeds' (Rust tests the
    # arithmetic); the second seed moves the predictions and the gate stays the linear model's
    pair = battery_fl.GatedModel.fit(train, template, members=2)
    assert pair.members == 2
    np.testing.assert_array_equal(pair.extrapolates(test), flags)
    assert not np.allclose(pair.predict(test), lives, rtol=1e-6)
    for bad in (0, -1):
        with pytest.raises(battery_fl.ConfigError, match="members"):
            battery_fl.GatedModel.fit(train, template, members=bad)
