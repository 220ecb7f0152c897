"""Differential privacy on the Flower path, in one process (battery_fl.flower.LocalGrid):
central and distributed noise, the budget, local noise, and adaptive clipping, checked
against plain Python and battery_fl.Simulation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from flower_support import (
    FLEETS,
    SETTINGS,
    fleets,
    grid,
    max_diff,
    reference_model,
    reference_simulation,
    run,
)
from flwr.app import ArrayRecord, ConfigRecord

import battery_fl
from battery_fl import dp, flower
from battery_fl.flower import BatteryFlStrategy, FederationSettings


def clipped_mean_update(c: float) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Round 1 in plain Python: the initial weights and the mean of the clipped updates."""
    model = reference_model()
    start = model.get_parameters()
    deltas = []
    for f, (train, _) in enumerate(fleets()):
        model.set_parameters(start)
        model.train(
            train, epochs=SETTINGS.local_epochs, seed=battery_fl.job_seed(SETTINGS.seed, 1, f)
        )
        deltas.append(
            dp.clip([p - s for p, s in zip(model.get_parameters(), start, strict=True)], c)
        )
    return start, [sum(d[i] for d in deltas) / FLEETS for i in range(len(start))]


@pytest.mark.parametrize("mode", ["central", "distributed"])
def test_dp_clips_noises_and_accounts(tmp_path: Path, mode: str) -> None:
    """Central: the server adds N(0, (zC/m)²) to the mean; distributed (with our SecAgg):
    each node adds N(0, (zC)²/t), sized for the t = 2 survivors the protocol accepts, so the
    mean of all m = 3 carries at least as much noise: zC·√(m/t)/m."""
    z, c = 1.0, 0.01
    private = run(
        tmp_path,
        "dp",
        num_server_rounds=1,
        dp_noise_multiplier=z,
        dp_clipping_norm=c,
        dp_seed=7,
        dp_mode=mode,
        secure_aggregation=mode == "distributed",
    )
    start, mean = clipped_mean_update(c)
    noise = np.concatenate(
        [(g - s - m).ravel() for g, s, m in zip(private.arrays, start, mean, strict=True)]
    )
    expected = z * c / FLEETS * (np.sqrt(FLEETS / 2) if mode == "distributed" else 1.0)
    assert float(np.std(noise)) == pytest.approx(expected, rel=0.2)
    assert abs(float(np.mean(noise))) < 0.2 * expected
    acc = dp.RdpAccountant()
    acc.step(noise_multiplier=z, sample_rate=1.0, steps=1)
    assert private.summary["epsilon"] == pytest.approx(acc.epsilon(1e-5), rel=1e-9)
    assert private.summary["rounds"][0]["epsilon"] == private.summary["epsilon"]
    if mode == "central":
        # the server's noise of a seeded run is the Simulation's, draw for draw
        dp_config = {"noise_multiplier": z, "clipping_norm": c, "seed": 7}
        sim = reference_simulation(SETTINGS.replace(num_server_rounds=1), dp=dp_config)
        assert max_diff(private.arrays, sim.global_parameters()) < 1e-6
        other = reference_simulation(
            SETTINGS.replace(num_server_rounds=1), dp={**dp_config, "seed": 8}
        )
        assert max_diff(private.arrays, other.global_parameters()) > 2 * expected


def test_adaptive_clipping_equals_the_simulations(tmp_path: Path) -> None:
    """Central DP with adaptive clipping: the server clips each node's update to the round's
    norm and moves the norm by the noisy count of updates that fit, as the Simulation does:
    the same norm, epsilon and global weights round by round (the same seeded noise; the
    count noise 1e-6 of one node moves no bit). Nodes get no
    clipping norm (they would hide whether their update fit)."""
    adaptive = {"learning_rate": 1.0, "count_noise_std": 1e-6}
    changes = {
        "dp_noise_multiplier": 1e-10,
        "dp_clipping_norm": 0.01,
        "dp_seed": 7,
        "dp_adaptive": True,
        "dp_adaptive_learning_rate": adaptive["learning_rate"],
        "dp_adaptive_count_noise_std": adaptive["count_noise_std"],
    }
    private = run(tmp_path, "adaptive", **changes)
    dp_config = {"noise_multiplier": 1e-10, "clipping_norm": 0.01, "seed": 7, "adaptive": adaptive}
    sim = reference_simulation(SETTINGS, dp=dp_config)
    rounds = private.summary["rounds"]
    norms = [r["clipping-norm"] for r in rounds]
    # (the same seeded draws: the count noise too)
    assert norms == pytest.approx([r["clipping_norm"] for r in sim.history], rel=1e-12)
    # every update was longer than 0.01: none fit, so the norm grew by exp(1.0 * 0.5)
    assert norms[1] == pytest.approx(0.01 * np.exp(0.5), rel=1e-5)
    # (the count's step moves epsilon by ~2.5e-9 relative here: rel=1e-12 would see it go)
    assert [r["epsilon"] for r in rounds] == pytest.approx(
        [r["epsilon"] for r in sim.history], rel=1e-12
    )
    assert max_diff(private.arrays, sim.global_parameters()) < 1e-6
    assert max_diff(private.arrays, reference_model().get_parameters()) > 1e-4
    # without the adaptive norm the weights differ: the test can tell the two apart
    fixed = reference_simulation(SETTINGS, dp={**dp_config, "adaptive": None})
    assert max_diff(private.arrays, fixed.global_parameters()) > 1e-5


def test_adaptive_clipping_is_refused_where_the_server_cannot_see_each_norm() -> None:
    for changes in (
        {"dp_mode": "local"},
        {"dp_mode": "distributed", "secure_aggregation": True},
        {"secure_aggregation": True},
    ):
        with pytest.raises(battery_fl.ConfigError, match="dp-adaptive"):
            SETTINGS.replace(
                dp_noise_multiplier=0.1, dp_clipping_norm=1.0, dp_adaptive=True, **changes
            )
    with pytest.raises(battery_fl.ConfigError, match="dp-adaptive"):
        SETTINGS.replace(dp_adaptive=True)  # no DP
    with pytest.raises(battery_fl.ConfigError, match="learning_rate"):
        SETTINGS.replace(
            dp_noise_multiplier=0.1,
            dp_clipping_norm=1.0,
            dp_adaptive=True,
            dp_adaptive_learning_rate=-1.0,
        )
    with pytest.raises(battery_fl.ConfigError, match="dp.adaptive"):
        BatteryFlStrategy(
            battery_fl.FedAvg(),
            dp=flower.DpConfig(0.1, 1.0, mode="local", adaptive={}),
        )
    # run config: 0 means the core's count noise (m / 20)
    settings = FederationSettings.from_run_config(
        {
            "dp-clipping-norm": 1.0,
            "dp-noise-multiplier": 0.05,
            "dp-adaptive": True,
            "dp-adaptive-count-noise-std": 0.0,
        }
    )
    assert settings.dp_adaptive_config() == {
        **dp.default_adaptive_config(),
        "count_noise_std": None,
    }
    assert FederationSettings.from_run_config(settings.to_run_config()) == settings


def test_an_exhausted_privacy_budget_stops_before_release(tmp_path: Path) -> None:
    with pytest.raises(battery_fl.PrivacyError):
        run(tmp_path, "budget", dp_noise_multiplier=1.0, dp_clipping_norm=0.1, dp_max_epsilon=1.0)
    assert not (tmp_path / "budget" / "round-001.npz").exists()


def test_local_dp_noise_is_added_by_the_nodes(tmp_path: Path) -> None:
    strategy = BatteryFlStrategy(
        battery_fl.FedAvg(), dp=flower.DpConfig(1.0, 0.5, mode="local"), min_available_nodes=3
    )
    g = grid()
    arrays = ArrayRecord([np.zeros(3, np.float32)])
    messages = list(strategy.configure_train(1, arrays, ConfigRecord(), g))
    config = messages[0].content["config"]
    assert (
        len(messages) == 3 and config["dp-clipping-norm"] == 0.5 and config["dp-noise-std"] == 0.5
    )


def test_adaptive_clipping_sends_the_nodes_no_clipping_norm() -> None:
    """Even with the core's default adaptive settings (an empty dict): a node clipping first
    would make every update fit, and the norm would shrink round after round."""
    for adaptive in ({}, {"count_noise_std": 1.0}):
        strategy = BatteryFlStrategy(
            battery_fl.FedAvg(),
            dp=flower.DpConfig(0.1, 0.5, mode="central", adaptive=adaptive),
            min_available_nodes=3,
        )
        arrays = ArrayRecord([np.zeros(3, np.float32)])
        messages = list(strategy.configure_train(1, arrays, ConfigRecord(), grid()))
        config = messages[0].content["config"]
        assert len(messages) == 3
        assert "dp-clipping-norm" not in config and "dp-noise-std" not in config
    fixed = BatteryFlStrategy(
        battery_fl.FedAvg(), dp=flower.DpConfig(0.1, 0.5, mode="central"), min_available_nodes=3
    )
    messages = list(fixed.configure_train(1, arrays, ConfigRecord(), grid()))
    assert messages[0].content["config"]["dp-clipping-norm"] == 0.5


def test_adaptive_clipping_with_too_little_count_noise_fails_before_any_node_trains(
    tmp_path: Path,
) -> None:
    """The count noise m/20 of three nodes (0.15) cannot carry z = 1 (it needs z < 2 sigma_b):
    the strategy finds out when it samples the nodes, not after they trained."""
    with pytest.raises(battery_fl.PrivacyError, match="count_noise_std"):
        run(
            tmp_path,
            "short",
            dp_noise_multiplier=1.0,
            dp_clipping_norm=0.1,
            dp_adaptive=True,
        )
    assert not (tmp_path / "short" / "round-001.npz").exists()


def test_adaptive_clipping_and_an_update_bound_are_refused_together() -> None:
    with pytest.raises(battery_fl.ConfigError, match="max-delta-norm"):
        SETTINGS.replace(
            dp_noise_multiplier=0.1, dp_clipping_norm=1.0, dp_adaptive=True, max_delta_norm=5.0
        )
    with pytest.raises(battery_fl.ConfigError, match="max-delta-norm"):
        BatteryFlStrategy(
            battery_fl.FedAvg(), dp=flower.DpConfig(0.1, 1.0, adaptive={}), max_delta_norm=5.0
        )
