"""Record-level DP-SGD through Python: the report, the budget, public references."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from conftest import CYCLES

import battery_fl
from battery_fl import dp, synthetic


def test_train_private_reports_what_it_spends(
    fleets: list[Any], model_kwargs: dict[str, Any]
) -> None:
    private, public = fleets[0].cells, fleets[1].cells
    model = battery_fl.BatLiNet(**model_kwargs)
    model.set_public_statistics(public)
    before = np.concatenate([p.ravel() for p in model.get_parameters()])
    report = model.train_private(private, public, epsilon=2.0, noise_seed=1)
    assert set(report) == {
        "epsilon",
        "delta",
        "noise_multiplier",
        "sample_rate",
        "steps",
        "epoch_losses",
        "clipped_fraction",
    }
    assert 0.0 <= report["clipped_fraction"] <= 1.0
    acc = dp.RdpAccountant()
    acc.step(
        noise_multiplier=report["noise_multiplier"],
        sample_rate=report["sample_rate"],
        steps=report["steps"],
    )
    assert report["epsilon"] == pytest.approx(acc.epsilon(1e-5)) and report["epsilon"] <= 2.0
    after = np.concatenate([p.ravel() for p in model.get_parameters()])
    assert not np.array_equal(before, after)


def test_the_private_steps_take_the_scaled_learning_rate(
    fleets: list[Any], model_kwargs: dict[str, Any]
) -> None:
    private, public = fleets[0].cells, fleets[1].cells

    def moved(**scale: float) -> tuple[np.ndarray, float]:
        model = battery_fl.BatLiNet(**model_kwargs)
        model.set_public_statistics(public)
        before = np.concatenate([p.ravel() for p in model.get_parameters()])
        model.train_private(private, public, epsilon=4.0, noise_seed=1, seed=2, **scale)
        after = np.concatenate([p.ravel() for p in model.get_parameters()])
        return after, float(np.abs(after - before).mean())

    default, by_default = moved()
    explicit, _ = moved(learning_rate_scale=dp.default_record_config()["learning_rate_scale"])
    np.testing.assert_array_equal(default, explicit)  # the default is the core's
    _, by_one = moved(learning_rate_scale=1.0)
    # Adam's steps are about lr x scale each, whatever the noise: the default (3) moves the
    # weights further than 1 does
    assert by_default > 1.5 * by_one
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(battery_fl.ConfigError, match="learning_rate_scale"):
            moved(learning_rate_scale=bad)


def test_train_private_refuses_overspending_and_private_references(
    fleets: list[Any], model_kwargs: dict[str, Any]
) -> None:
    private, public = fleets[0].cells, fleets[1].cells
    model = battery_fl.BatLiNet(**model_kwargs)
    model.set_public_statistics(public)
    with pytest.raises(battery_fl.PrivacyError):
        model.train_private(private, public, noise_multiplier=0.2, epsilon=0.5)
    with pytest.raises(battery_fl.ConfigError) as info:
        model.train_private(private, public + private[:1], epsilon=4.0)
    assert info.value.field == "public"
    with pytest.raises(battery_fl.ConfigError):
        model.train_private(private, public, epsilon=-1.0)


def test_membership_auc_is_a_probability_and_refuses_empty_sets(
    fleets: list[Any], fitted: battery_fl.BatLiNet
) -> None:
    cells = [c for f in fleets for c in f.cells]
    # the same cells on both sides: every pair is a tie or has its mirror, so exactly 0.5
    same = battery_fl.membership_auc(fitted, cells[12:], cells[12:], cells[:12])
    assert same == pytest.approx(0.5, abs=1e-12)
    auc = battery_fl.membership_auc(fitted, cells[:12], cells[12:], cells[:12])
    assert 0.0 <= auc <= 1.0
    with pytest.raises(battery_fl.DataError):
        battery_fl.membership_auc(fitted, [], cells[12:], cells[:12])


def test_simulation_trains_each_fleet_privately_within_its_budget(
    fleets: list[Any], model_kwargs: dict[str, Any]
) -> None:
    federated = [(f.id, f.cells[:4], f.cells[4:]) for f in fleets[:2]]
    public = synthetic.public_cells(cells_per_fleet=3, cycles=CYCLES, points_per_cycle=60)
    assert all(c.cell_id.startswith("public-") for c in public)
    model = battery_fl.BatLiNet(**model_kwargs)
    sim = battery_fl.Simulation(
        federated,
        model=model,
        rounds=2,
        local_epochs=1,
        seed=3,
        inference_references=2,
        record_privacy={"epsilon": 3.0, "seed": 4},
        public=public,
    )
    records = sim.run()
    spent = [r["fleet_epsilon"] for r in records]
    assert set(spent[0]) == {fleets[0].id, fleets[1].id}
    for fleet in spent[0]:
        assert 0 < spent[0][fleet] < spent[1][fleet] <= 3.0 * (1 + 1e-9)
    with pytest.raises(battery_fl.PrivacyError):
        sim.run_round()
    # public cells belong with record privacy, and record privacy needs them
    with pytest.raises(battery_fl.ConfigError):
        battery_fl.Simulation(federated, model=model, public=public)
    with pytest.raises(battery_fl.ConfigError):
        battery_fl.Simulation(federated, model=model, record_privacy={"epsilon": 3.0})
