"""The linear recipe on Flower, in one process (battery_fl.flower.LocalGrid): the real
ClientApp handlers and ServerApp logic reach the models battery_fl.federate_linear fits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from flower_support import DATA_SEED, FLEETS, POINTS, SETTINGS, node_config
from flwr.app import ConfigRecord, Message, MessageType, RecordDict

import battery_fl
from battery_fl import synthetic
from battery_fl.flower import LocalGrid, make_client_app, secagg_mod
from battery_fl.flower.linear import LINEAR_STATE_KEY, SHARE_ACTION, run_linear_federation
from battery_fl.flower.secagg import MASKING_KEY

NODE_IDS = [101, 202, 303]
# the early-life features read cycles 10 to 100
CELLS, TEST_CELLS, CYCLES = 12, 4, 110
EXTRA = {"synthetic-cells": CELLS, "synthetic-test-cells": TEST_CELLS, "synthetic-cycles": CYCLES}


def _fleets(cells: int = CELLS) -> list[tuple[list[battery_fl.Cell], list[battery_fl.Cell]]]:
    generated = synthetic.generate_fleets(
        fleets=FLEETS, cells_per_fleet=cells, cycles=CYCLES, points_per_cycle=POINTS, seed=DATA_SEED
    )
    return [(f.cells[: cells - TEST_CELLS], f.cells[cells - TEST_CELLS :]) for f in generated]


def _grid(cells: int = CELLS, **node: object) -> LocalGrid:
    """The nodes, each with ``node`` added to its node config."""
    app = make_client_app(mods=[secagg_mod])
    extra = {**EXTRA, "synthetic-cells": cells, **node}
    return LocalGrid(app, {n: node_config(i, **extra) for i, n in enumerate(NODE_IDS)})


def _rmse(predicted: np.ndarray, cells: list[battery_fl.Cell]) -> float:
    truth = np.array([c.cycle_life() for c in cells], dtype=float)
    return float(np.sqrt(np.mean((predicted - truth) ** 2)))


@pytest.mark.parametrize("secure", [False, True])
def test_flower_runs_the_linear_federation_of_federate_linear(tmp_path: Path, secure: bool) -> None:
    data = _fleets()
    grid = _grid()
    # eight training cells per node: enough for 80 % intervals, not for 90 %
    settings = SETTINGS.replace(
        recipe="linear", secure_aggregation=secure, output_dir=str(tmp_path), interval_coverage=0.8
    )
    summary = run_linear_federation(grid, settings, NODE_IDS)
    reference = battery_fl.federate_linear([train for train, _ in data], secure_aggregation=False)

    # exact without secure aggregation; with it, to the fixed-point grid of the secure sum
    # (Flower's statistics encoding is coarser than the in-process one)
    rtol = 1e-3 if secure else 1e-6
    cells = [c for train, test in data for c in train + test]
    model = battery_fl.LinearModel.from_json((tmp_path / "linear-global.json").read_text())
    assert model.feature_set == reference.global_model.feature_set
    np.testing.assert_allclose(
        model.predict(cells), reference.global_model.predict(cells), rtol=rtol
    )
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["privacy"] is None and result["interval_coverage"] == 0.8
    cells_per_node = [summary["per_node"][str(n)]["covered-cells"] for n in NODE_IDS]
    pooled = [summary["per_node"][str(n)]["covered"] for n in NODE_IDS]
    assert result["covered"] == pytest.approx(np.average(pooled, weights=cells_per_node))
    for i, node in enumerate(NODE_IDS):
        _, test = data[i]
        metrics = summary["per_node"][str(node)]
        own = reference.fleets[i]
        assert metrics["personalized-rmse"] == pytest.approx(
            _rmse(own.predict(test), test), rel=rtol
        )
        # each node's intervals are the fleet's own, calibrated on its training cells
        train, _ = data[i]
        _, lower, upper, ood = own.predict_intervals(test, train, coverage=0.8)
        truth = np.array([c.cycle_life() for c in test], dtype=float)
        assert metrics["covered"] == pytest.approx(np.mean((lower <= truth) & (truth <= upper)))
        assert metrics["mean-width"] == pytest.approx(np.mean(upper - lower), rel=rtol)
        assert metrics["out-of-distribution"] == ood.sum()
        # (the local model never touches a sum)
        assert metrics["local-rmse"] == pytest.approx(
            _rmse(own.local.predict(test), test), rel=1e-9
        )
        # the node keeps its models at home: in its Context.state, not in anything it sent
        state = grid.contexts[node].state[LINEAR_STATE_KEY]
        kept = battery_fl.LinearModel.from_json(str(state["personalized"]))
        np.testing.assert_allclose(kept.predict(test), own.personalized.predict(test), rtol=rtol)
        chosen = [(c["cathode"], c["choice"]) for c in json.loads(str(state["choices"]))]
        assert chosen == [(c["cathode"], c["choice"]) for c in own.choices]
        kept = battery_fl.LinearModel.from_json(str(state["global"]))
        np.testing.assert_allclose(kept.predict(test), model.predict(test), rtol=1e-9)


def test_the_choice_margin_reaches_every_node() -> None:
    # (16 training cells per node: with no margin one node keeps its own fit, at the
    # default margin none does)
    data = _fleets(20)
    grid = _grid(20)
    settings = SETTINGS.replace(recipe="linear", choice_margin=0.0, interval_coverage=0.8)
    run_linear_federation(grid, settings, NODE_IDS)
    trains = [train for train, _ in data]
    reference = battery_fl.federate_linear(trains, secure_aggregation=False, choice_margin=0.0)
    default = battery_fl.federate_linear(trains, secure_aggregation=False)
    choices = [[(c["cathode"], c["choice"]) for c in f.choices] for f in reference.fleets]
    assert choices != [[(c["cathode"], c["choice"]) for c in f.choices] for f in default.fleets]
    for i, node in enumerate(NODE_IDS):
        state = grid.contexts[node].state[LINEAR_STATE_KEY]
        chosen = [(c["cathode"], c["choice"]) for c in json.loads(str(state["choices"]))]
        assert chosen == choices[i]


def test_flower_linear_federation_with_record_level_privacy(tmp_path: Path) -> None:
    settings = SETTINGS.replace(
        recipe="linear", secure_aggregation=True, record_epsilon=4.0, output_dir=str(tmp_path)
    )
    grid = _grid(**{"record-seed": 9})
    summary = run_linear_federation(grid, settings, NODE_IDS)
    # (the SecAgg mod's masking entry lives only while it masks a reply)
    assert not any(MASKING_KEY in grid.contexts[n].state for n in NODE_IDS)
    privacy = summary["privacy"]
    assert privacy["epsilon"] == pytest.approx(4.0, abs=1e-3)
    assert privacy["mode"] == "distributed" and privacy["releases"] == 2
    # the server never learns the exact cell count under privacy
    assert summary["cells"] is None
    # every node still ends with its own models; noise the nodes seed themselves makes the
    # run reproducible (to the secure sum's fixed-point grid)
    assert set(summary["per_node"]) == {str(n) for n in NODE_IDS}
    again = run_linear_federation(
        _grid(**{"record-seed": 9}), settings.replace(output_dir=""), NODE_IDS
    )
    for node, metrics in summary["per_node"].items():
        assert again["per_node"][node] == pytest.approx(metrics, rel=1e-5)
    # (other node seeds, another noisy shared model)
    other = run_linear_federation(
        _grid(**{"record-seed": 10}), settings.replace(output_dir=""), NODE_IDS
    )
    assert other["global_error"] != pytest.approx(summary["global_error"], rel=1e-3)


def test_a_server_can_neither_key_nor_drop_a_nodes_record_noise() -> None:
    """The attack: a server that names the seed of a node's noise draws the same noise itself
    (the share of no cells under that seed is the noise alone) and subtracts it from the
    node's reply, recovering the node's exact statistics. The linear recipe's nodes used to
    seed their noise from the server's ``record-noise-seed``; now they refuse it and key the
    noise themselves, and the subtraction recovers nothing."""
    node, seed, epsilon = NODE_IDS[0], 9, 1.0
    train, _ = _fleets()[0]
    config = {"fleets": FLEETS, "secure-aggregation": False, "record-epsilon": epsilon}

    def ask(grid: LocalGrid, **extra: object) -> Message:
        content = RecordDict({"config": ConfigRecord({**config, **extra})})
        message_type = f"{MessageType.QUERY}.{SHARE_ACTION}"
        (reply,) = grid.send_and_receive(
            [Message(content, dst_node_id=node, message_type=message_type)], timeout=10.0
        )
        return reply

    def steps(noise_seed: int | None, eps: float = epsilon) -> battery_fl.LinearSteps:
        return battery_fl.LinearSteps(
            FLEETS, secure_aggregation=False, epsilon=eps, noise_seed=noise_seed
        )

    # the node's statistics as released without noise (at an ε that leaves next to none)
    exact = steps(0, 1e9).share(train)
    # what the server subtracts: the noise of the node's first step under the seed it named
    known = battery_fl.job_seed(seed, 1, node)
    noise = steps(known).share([])
    # with the seed known the attack recovers the statistics (the node's former behaviour) ...
    np.testing.assert_allclose(steps(known).share(train) - noise, exact, atol=0.2)
    assert np.max(np.abs(noise)) > 5.0  # (the noise itself is not small)

    # ... so a node refuses a server that sends one
    refused = ask(_grid(), **{"record-noise-seed": seed})
    assert refused.has_error() and "record-noise-seed" in refused.error.reason
    # and without it the node keys its noise from the OS: the subtraction recovers nothing
    grid = _grid()
    (reply,) = ask(grid).content["arrays"].to_numpy_ndarrays()  # type: ignore[union-attr]
    assert np.max(np.abs(reply - noise - exact)) > 5.0
    # asking again for an independent draw to average is refused: one release per step
    again = ask(grid)
    assert again.has_error() and "already released" in again.error.reason

    # a node that requires record privacy refuses a server that drops or loosens it
    strict = _grid(**{"record-max-epsilon": 2.0})
    for asked in (0.0, 4.0):
        reply_error = ask(strict, **{"record-epsilon": asked})
        assert reply_error.has_error() and "record-max-epsilon" in reply_error.error.reason
    assert not ask(strict).has_error()


def test_a_server_cannot_shrink_a_nodes_record_noise() -> None:
    """The attack: a plain (unmasked) query that claims secure aggregation among many fleets
    asked each node for a small share of distributed noise (z·s/√fleets), and read the
    reply in the clear. A node now sizes its noise itself: distributed only while its SecAgg
    mod masks the reply, for that round's threshold; otherwise all the noise."""
    node, pinned, epsilon = NODE_IDS[0], 3, 1.0
    train, _ = _fleets()[0]
    grid = _grid(**{"record-seed": pinned})
    content = RecordDict(
        {
            "config": ConfigRecord(
                {"fleets": 1000, "secure-aggregation": True, "record-epsilon": epsilon}
            )
        }
    )
    message_type = f"{MessageType.QUERY}.{SHARE_ACTION}"
    (reply,) = grid.send_and_receive(
        [Message(content, dst_node_id=node, message_type=message_type)], timeout=10.0
    )
    (released,) = reply.content["arrays"].to_numpy_ndarrays()  # type: ignore[union-attr]
    noise_seed = battery_fl.job_seed(pinned, 1, node)

    def share(fleets: int, secure: bool) -> np.ndarray:
        steps = battery_fl.LinearSteps(
            fleets, secure_aggregation=secure, epsilon=epsilon, noise_seed=noise_seed
        )
        return steps.share(train)

    exact = battery_fl.LinearSteps(FLEETS, secure_aggregation=False, epsilon=1e9).share(train)
    # what the server asked for: noise about 1/√1000 of what one cell's privacy needs
    asked = share(1000, True)
    assert np.max(np.abs(asked - exact)) < 0.2 * np.max(np.abs(released - exact))
    # what the node released: all of it, as if alone
    np.testing.assert_allclose(released, share(1000, False), rtol=1e-12)

    # while its SecAgg mod masks the reply (the mod's entry in the node's own state, which no
    # message can write), the node adds a distributed share sized for the round's threshold,
    # not for the fleets the server claims
    masked = _grid(**{"record-seed": pinned})
    masked.contexts[node].state[MASKING_KEY] = ConfigRecord({"round": 1, "threshold": 2})
    (reply,) = masked.send_and_receive(
        [Message(content, dst_node_id=node, message_type=message_type)], timeout=10.0
    )
    (released,) = reply.content["arrays"].to_numpy_ndarrays()  # type: ignore[union-attr]
    np.testing.assert_allclose(released, share(2, True), rtol=1e-12)


def test_linear_recipe_settings_are_checked() -> None:
    with pytest.raises(battery_fl.ConfigError):
        SETTINGS.replace(recipe="cnn")
    with pytest.raises(battery_fl.ConfigError, match="choice-margin"):
        SETTINGS.replace(recipe="linear", choice_margin=-0.5)
    with pytest.raises(battery_fl.ConfigError):
        SETTINGS.replace(record_epsilon=-1.0)


def test_a_node_scores_only_its_labelled_test_cells() -> None:
    """A test cell without a known life neither counts in a node's RMSE nor turns it into
    NaN; with no labelled test cell the node reports no RMSE at all."""
    from battery_fl.flower.linear import _rmse

    labelled = synthetic.generate_cell("LFP", cycles=30, points_per_cycle=40)
    life = labelled.cycle_life()
    assert life is not None
    unknown = battery_fl.Cell(
        "unknown", labelled.nominal_capacity_ah, labelled.cycles[:12], cathode=labelled.cathode
    )
    assert unknown.cycle_life() is None
    assert _rmse(np.array([life + 30.0, 1.0]), [labelled, unknown]) == pytest.approx(30.0)
    assert _rmse(np.array([1.0]), [unknown]) is None
