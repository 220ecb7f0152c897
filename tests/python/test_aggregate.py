"""Aggregators against numpy references; validation; server-optimizer state and pickling."""

from __future__ import annotations

import json
import pickle
from typing import Any

import numpy as np
import pytest

import battery_fl

RNG = np.random.default_rng(11)
SHAPES = [(3, 2), (4,), ()]


def _update(scale: float = 1.0) -> list[np.ndarray]:
    return [(RNG.standard_normal(s) * scale).astype(np.float32) for s in SHAPES]


UPDATES = [_update() for _ in range(5)]
WEIGHTS = [3.0, 1.0, 2.0, 5.0, 4.0]


def _stack(i: int) -> np.ndarray:
    return np.stack([u[i].astype(np.float64) for u in UPDATES])


def _check(out: list[np.ndarray], reference: list[np.ndarray], atol: float = 1e-6) -> None:
    assert [o.shape for o in out] == SHAPES and all(o.dtype == np.float32 for o in out)
    for o, r in zip(out, reference, strict=True):
        np.testing.assert_allclose(o, r, atol=atol)


@pytest.mark.parametrize("agg", [battery_fl.FedAvg(), battery_fl.FedProx(0.1)])
def test_weighted_mean(agg: Any) -> None:
    w = np.array(WEIGHTS)
    ref = [np.tensordot(w, _stack(i), axes=1) / w.sum() for i in range(len(SHAPES))]
    _check(agg.aggregate(UPDATES, WEIGHTS), ref)
    # current only shapes the output for parameter updates
    _check(agg.aggregate(UPDATES, WEIGHTS, current=_update()), ref)


def test_robust_rules_ignore_weights() -> None:
    med = battery_fl.FedMedian().aggregate(UPDATES, WEIGHTS)
    _check(med, [np.median(_stack(i), axis=0) for i in range(len(SHAPES))])
    trimmed = battery_fl.FedTrimmedAvg(0.2).aggregate(UPDATES, [1] * 5)
    ref = [np.sort(_stack(i), axis=0)[1:-1].mean(axis=0) for i in range(len(SHAPES))]
    _check(trimmed, ref)
    assert battery_fl.FedTrimmedAvg(0.2).beta == 0.2 and battery_fl.FedProx(0.3).mu == 0.3


def _fedopt_reference(
    kind: str, x: np.ndarray, rounds: list[list[np.ndarray]], eta=0.1, b1=0.9, b2=0.99, tau=1e-3
):
    m, v = np.zeros_like(x), np.full_like(x, tau * tau)
    for ups in rounds:
        d = np.mean([u - x for u in ups], axis=0)
        m = b1 * m + (1 - b1) * d
        if kind == "adagrad":
            v = v + d * d
        elif kind == "adam":
            v = b2 * v + (1 - b2) * d * d
        else:
            v = v - (1 - b2) * d * d * np.sign(v - d * d)
        x = x + eta * m / (np.sqrt(v) + tau)
    return x


@pytest.mark.parametrize(
    "cls, kind",
    [
        (battery_fl.FedAdam, "adam"),
        (battery_fl.FedYogi, "yogi"),
        (battery_fl.FedAdagrad, "adagrad"),
    ],
)
def test_server_optimizers_keep_their_state(cls: Any, kind: str) -> None:
    x0 = np.zeros(4, dtype=np.float32)
    rounds = [[RNG.standard_normal(4).astype(np.float32) for _ in range(3)] for _ in range(3)]
    agg = cls([x0], eta=0.05)
    for r in range(2):
        out = agg.aggregate([[u] for u in rounds[r]], [1, 1, 1])
    # a pickled copy continues exactly where the original is
    copy = pickle.loads(pickle.dumps(agg))
    a = agg.aggregate([[u] for u in rounds[2]], [1, 1, 1])[0]
    b = copy.aggregate([[u] for u in rounds[2]], [1, 1, 1])[0]
    np.testing.assert_array_equal(a, b)
    ref = _fedopt_reference(kind, x0.astype(np.float64), rounds, eta=0.05)
    np.testing.assert_allclose(a, ref, rtol=1e-4, atol=1e-6)
    assert agg.name == f"fed_{kind}" and out[0].shape == (4,)
    # without initial parameters, `current` is required on the first round
    with pytest.raises(battery_fl.ConfigError) as info:
        cls().aggregate([[x0]], [1])
    assert info.value.field == "current"
    np.testing.assert_allclose(
        cls(eta=0.05).aggregate([[u] for u in rounds[0]], [1] * 3, current=[x0])[0],
        _fedopt_reference(kind, x0.astype(np.float64), rounds[:1], eta=0.05),
        rtol=1e-4,
        atol=1e-6,
    )


def test_updates_are_validated() -> None:
    agg = battery_fl.FedAvg()
    nan = _update()
    nan[1][2] = np.nan
    with pytest.raises(battery_fl.AggregationError, match="non-finite") as info:
        agg.aggregate([UPDATES[0], nan], [1, 1])
    assert info.value.client_id == "1"
    with pytest.raises(battery_fl.AggregationError, match="invalid weight"):
        agg.aggregate(UPDATES[:2], [1, 0])
    with pytest.raises(battery_fl.AggregationError, match="invalid weight"):
        agg.aggregate(UPDATES[:2], [1, 2.5])  # weights are sample counts
    with pytest.raises(battery_fl.DataError):
        agg.aggregate(UPDATES[:2], [1])
    bounded = battery_fl.FedAvg(max_delta_norm=0.1)
    with pytest.raises(battery_fl.AggregationError, match="exceeds bound"):
        bounded.aggregate(UPDATES[:2], [1, 1], current=UPDATES[0])
    # lists, tuples and other dtypes are converted to float32
    out = agg.aggregate([[[1, 2]], ([3.0, 4.0],)], [1, 1])
    assert out[0].tolist() == [2.0, 3.0] and out[0].dtype == np.float32


def test_partition_sorts_updates_as_the_simulation_does() -> None:
    """``partition_updates`` checks each update alone: the good ones' positions, and each
    refused one's reason (what a Flower server drops and records)."""
    current = [np.zeros(3, np.float32), np.zeros(2, np.float32)]
    near = [np.full(3, 0.1, np.float32), np.full(2, 0.1, np.float32)]
    far = [np.full(3, 5.0, np.float32), np.zeros(2, np.float32)]
    nan = [np.array([0.0, np.nan, 0.0], np.float32), np.zeros(2, np.float32)]
    short = [np.zeros(3, np.float32)]
    kept, refused = battery_fl.partition_updates(
        [near, far, nan, short, near], current, max_delta_norm=1.0
    )
    assert kept == [0, 4] and sorted(refused) == [1, 2, 3]
    assert "exceeds bound 1" in refused[1] and "non-finite" in refused[2]
    assert "shape" in refused[3] or "parameters" in refused[3]
    # without a bound only the broken updates go
    kept, refused = battery_fl.partition_updates([near, far, nan], current)
    assert kept == [0, 1] and list(refused) == [2]
    for bad in (
        lambda: battery_fl.aggregator_for({"max_delta_norm": -1.0}),
        lambda: battery_fl.partition_updates([near], current, max_delta_norm=0.0),
    ):
        with pytest.raises(battery_fl.ConfigError) as info:
            bad()
        assert info.value.field == "max_delta_norm"


AGGREGATORS = {
    "fed_avg": battery_fl.FedAvg(),
    "fed_prox": battery_fl.FedProx(0.01),
    "fed_adam": battery_fl.FedAdam(),
    "fed_yogi": battery_fl.FedYogi(),
    "fed_adagrad": battery_fl.FedAdagrad(),
    "fed_median": battery_fl.FedMedian(),
    "fed_trimmed_avg": battery_fl.FedTrimmedAvg(0.2),
}


@pytest.mark.parametrize("strategy", AGGREGATORS)
def test_aggregator_names_are_the_core_strategy_names(strategy: str) -> None:
    """One name per rule: ``agg.name`` is the ``strategy`` name of Simulation and Flower,
    and whether the rule composes with secure aggregation/DP comes from the core."""
    assert AGGREGATORS[strategy].name == strategy
    robust = strategy in ("fed_median", "fed_trimmed_avg")
    assert battery_fl.strategy_needs_only_the_sum(strategy) is not robust


def test_strategy_needs_only_the_sum_refuses_unknown_names() -> None:
    for name in ("fedavg", "FedAvg", ""):
        with pytest.raises(battery_fl.ConfigError) as info:
            battery_fl.strategy_needs_only_the_sum(name)
        assert info.value.field == "strategy"


def test_json_round_trip_checks_the_class() -> None:
    agg = battery_fl.FedTrimmedAvg(0.1)
    assert battery_fl.FedTrimmedAvg.from_json(agg.to_json()).beta == 0.1
    with pytest.raises(battery_fl.ConfigError):
        battery_fl.FedAvg.from_json(agg.to_json())
    assert pickle.loads(pickle.dumps(battery_fl.FedProx(0.5))).mu == 0.5
    assert repr(battery_fl.FedMedian()) == "FedMedian()"


@pytest.mark.parametrize("strategy", AGGREGATORS)
def test_aggregator_for_is_the_rule_the_core_builds(strategy: str) -> None:
    """``aggregator_for`` builds the rule a strategy names with the config's settings (the
    core's dispatch, as ``Simulation`` makes it), and aggregates as the class itself does."""
    config = {
        "strategy": strategy,
        "proximal_mu": 0.3,
        "trimmed_beta": 0.25,
        "server_optimizer": {"eta": 0.05},
    }
    agg = battery_fl.aggregator_for(config, initial_parameters=[np.zeros(2)])
    assert type(agg) is type(AGGREGATORS[strategy]) and agg.name == strategy
    settings = json.loads(agg.to_json())["rule"]
    inner = next(iter(settings.values()))
    if strategy == "fed_prox":
        assert agg.mu == 0.3
    elif strategy == "fed_trimmed_avg":
        assert agg.beta == 0.25
    elif strategy in ("fed_adam", "fed_yogi", "fed_adagrad"):
        assert inner["config"]["eta"] == 0.05
    ups = [[np.array([v, -v])] for v in (1.0, 2.0, 3.0, 100.0)]
    out = agg.aggregate(ups, [1, 1, 1, 1], current=[np.zeros(2)])
    if strategy in ("fed_trimmed_avg", "fed_median"):
        # (the median of 1, 2, 3, 100 and their mean trimmed by one each side: 2.5)
        np.testing.assert_allclose(out[0], [2.5, -2.5])
    elif strategy in ("fed_avg", "fed_prox"):
        np.testing.assert_allclose(out[0], [26.5, -26.5])
    else:  # a server optimizer: the class itself with the same eta steps the same way
        cls = type(AGGREGATORS[strategy])
        same = cls([np.zeros(2)], eta=0.05).aggregate(ups, [1, 1, 1, 1], current=[np.zeros(2)])
        np.testing.assert_array_equal(out[0], same[0])
        default = cls([np.zeros(2)]).aggregate(ups, [1, 1, 1, 1], current=[np.zeros(2)])
        assert not np.allclose(out[0], default[0])  # (eta 0.05 is not the default 0.1)


def test_defaults_are_the_cores() -> None:
    core = battery_fl.Simulation.default_config()
    assert battery_fl.aggregator_for().name == core["strategy"]
    assert battery_fl.FedTrimmedAvg().beta == core["trimmed_beta"]
    for cls in (battery_fl.FedAdam, battery_fl.FedYogi, battery_fl.FedAdagrad):
        (inner,) = json.loads(cls().to_json())["rule"].values()
        assert {k: inner["config"][k] for k in core["server_optimizer"] if k != "policy"} == {
            k: v for k, v in core["server_optimizer"].items() if k != "policy"
        }
    bad = [
        ({"strategy": "fedavg"}, "config.strategy"),
        ({"no_such_setting": 1}, "config.no_such_setting"),
        ({"strategy": "fed_trimmed_avg", "trimmed_beta": 0.5}, "trimmed_beta"),
        ({"strategy": "fed_adam", "server_optimizer": {"beta2": 1.0}}, "server_optimizer.beta2"),
    ]
    for config, field in bad:
        with pytest.raises(battery_fl.ConfigError) as info:
            battery_fl.aggregator_for(config)
        # the key whose value does not parse, the unknown key or the refused setting
        assert info.value.field == field, config
