"""battery_fl.flower in one process: the real ClientApp, mods, strategy, workflow and
ServerApp logic on battery_fl.flower.LocalGrid (no SuperLink), checked against
battery_fl.Simulation and the plain-API reference. The real deployment is in
test_flower_deployment.py."""

from __future__ import annotations

import doctest
import importlib
import json
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flower_support import (
    APP,
    FLEETS,
    NODE_IDS,
    SETTINGS,
    Outcome,
    fleets,
    grid,
    load_round,
    max_diff,
    node_config,
    reference_model,
    reference_rounds,
    reference_simulation,
    run,
)
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict

import battery_fl
from battery_fl import dp, flower, synthetic
from battery_fl.flower import (
    BatteryFlStrategy,
    FederationSettings,
    LocalGrid,
    client,
    load_fleet,
    make_client_app,
    run_federation,
    server,
    write_app,
)

MODULES = ("", ".settings", ".client", ".secagg", ".strategy", ".server", ".local", ".polling")


@pytest.fixture(scope="module")
def simulation() -> battery_fl.Simulation:
    model = battery_fl.BatLiNet(
        featurizer=battery_fl.Featurizer(**SETTINGS.featurizer), progress=False, **SETTINGS.model
    )
    data = [(f"fleet-{i}", train, test) for i, (train, test) in enumerate(fleets())]
    sim = battery_fl.Simulation(
        data,
        model=model,
        rounds=2,
        local_epochs=SETTINGS.local_epochs,
        strategy="fed_avg",
        seed=SETTINGS.seed,
        inference_references=SETTINGS.inference_references,
    )
    sim.run()
    return sim


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    return run(tmp_path_factory.mktemp("plain"), "out", fraction_evaluate=1.0)


@pytest.mark.parametrize("suffix", MODULES)
def test_docstring_examples(suffix: str) -> None:
    module = importlib.import_module(f"battery_fl.flower{suffix}")
    assert module.__doc__
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


def test_public_objects_are_documented() -> None:
    for name in flower.__all__:
        assert getattr(flower, name).__doc__ or name == "FLWR_VERSION", name


def test_plain_federation_equals_the_simulation(
    plain: Outcome, simulation: battery_fl.Simulation
) -> None:
    model = reference_model()
    start = model.get_parameters()
    want = reference_rounds(model, start, [1, 2])[-1]
    assert max_diff(plain.arrays, want) < 1e-6
    assert max_diff(plain.arrays, simulation.global_parameters()) < 1e-6
    assert max_diff(plain.arrays, start) > 1e-3  # the rounds did move the model
    assert plain.summary["cells"] == FLEETS * 4 and plain.summary["nodes"] == FLEETS
    assert plain.summary["label_transform"] == pytest.approx(
        list(simulation.label_transform), abs=1e-9
    )
    # the nodes' evaluation is the simulation's: same references, seeds and pooled RMSE
    for r, record in enumerate(simulation.history, start=1):
        assert plain.summary["evaluate"][str(r)]["rmse"] == pytest.approx(
            record["global_rmse"], rel=1e-5
        )
    saved = battery_fl.BatLiNet.load(plain.out / "model")
    assert max_diff(saved.get_parameters(), plain.arrays) == 0.0
    assert saved.label_transform == pytest.approx(simulation.label_transform, abs=1e-9)


@pytest.mark.parametrize("personalization", ["ditto", "head"])
def test_personalized_federation_equals_the_simulation(
    tmp_path: Path, personalization: str
) -> None:
    """Nodes train and evaluate with battery_fl.FleetClient, their personal state kept in
    their own Context.state: per round, the pooled personalized RMSE is the Simulation's
    (``auto`` is checked against the Simulation in test_fleet_client.py)."""
    settings = SETTINGS.replace(personalization=personalization, fraction_evaluate=1.0)
    sim = reference_simulation(settings)
    g = grid()
    out = tmp_path / personalization
    result = run_federation(g, settings.replace(output_dir=str(out)))
    summary = json.loads((out / "result.json").read_text())
    assert max_diff(result.arrays.to_numpy_ndarrays(), sim.global_parameters()) < 1e-6
    for r, record in enumerate(sim.history, start=1):
        evaluated = summary["evaluate"][str(r)]
        assert evaluated["rmse"] == pytest.approx(record["global_rmse"], rel=1e-6)
        assert evaluated["personalized-rmse"] == pytest.approx(
            record["personalized_rmse"], rel=1e-6
        )
        assert summary["rounds"][r - 1]["personalized-rmse"] == evaluated["personalized-rmse"]
    history = json.loads((out / "history.json").read_text())
    assert [h["rmse"] for h in history] == [summary["evaluate"][str(r)]["rmse"] for r in (1, 2)]
    # each node's own numbers, as the Simulation's fleet records (fleet i is node i)
    for record, kept in zip(sim.history, history, strict=True):
        for i, node in enumerate(NODE_IDS):
            own = kept["node-rmse"][str(node)]
            assert own["rmse"] == pytest.approx(record["fleet_rmse"][f"fleet-{i}"], rel=1e-6)
            assert own["personalized-rmse"] == pytest.approx(
                record["fleet_personalized_rmse"][f"fleet-{i}"], rel=1e-6
            )
    last = summary["evaluate"]["2"]
    assert last["personalized-rmse"] != pytest.approx(
        last["rmse"], rel=1e-6
    )  # personal models differ
    for node in NODE_IDS:  # the state stays on the node
        assert isinstance(g.contexts[node].state[client.PERSONAL_STATE_KEY]["state"], bytes)


@pytest.mark.parametrize(
    ("personalization", "holdout"), [("auto", False), ("auto_head", False), ("head", True)]
)
def test_nodes_that_hold_out_cells_report_the_simulations_intervals(
    tmp_path: Path, personalization: str, holdout: bool
) -> None:
    """After the last round nodes that held out cells (``auto``, ``auto_head``, or any mode
    with ``calibration-holdout``) calibrate the model they ended with on those cells, pooled
    through the summed score histograms: each node's coverage and width are those of
    ``Simulation.calibrate_fleets`` with the fleet's model."""
    settings = SETTINGS.replace(
        personalization=personalization,
        calibration_holdout=holdout,
        fraction_evaluate=1.0,
        interval_coverage=0.5,
    )
    sim = reference_simulation(settings)
    out = tmp_path / personalization
    run_federation(grid(), settings.replace(output_dir=str(out)))
    intervals = json.loads((out / "result.json").read_text())["intervals"]
    assert intervals["interval_coverage"] == 0.5 and set(intervals["per_node"]) == {
        str(n) for n in NODE_IDS
    }
    calibrations = sim.calibrate_fleets()
    for i, (train, test) in enumerate(fleets()):
        fleet_id = f"fleet-{i}"
        cal = calibrations[fleet_id]
        p = sim.fleet_model(fleet_id).predict(test, train, coverage=0.5, calibration=cal)
        truth = np.array([c.cycle_life() for c in test], dtype=np.float64)
        node = intervals["per_node"][str(NODE_IDS[i])]
        assert node["covered"] == pytest.approx(np.mean((p.lower <= truth) & (truth <= p.upper)))
        assert node["mean-width"] == pytest.approx(np.mean(p.upper - p.lower), rel=1e-6)
        assert node["pooled"] == float(cal.pooled) == 1.0
    assert intervals["covered"] is not None and intervals["mean_width"] > 0


@pytest.mark.parametrize("node_ids", [NODE_IDS, NODE_IDS[::-1]])
def test_clients_per_round_trains_the_simulations_fleets(
    tmp_path: Path, node_ids: list[int]
) -> None:
    """With ``clients-per-round`` the server picks nodes by the core's seeded selection over
    its nodes in fleet order (each node's ``partition-id``, asked first; node ids carry no
    order, as in a deployment, where they are random): round by round the Simulation's fleets,
    so the global weights and each round's personalized RMSE (Ditto: a fleet left out keeps
    its personal model) are the Simulation's."""
    settings = SETTINGS.replace(clients_per_round=2, personalization="ditto", fraction_evaluate=1.0)
    sim = reference_simulation(settings)
    out = tmp_path / "two"
    nodes = LocalGrid(APP, {node: node_config(i) for i, node in enumerate(node_ids)})
    result = run_federation(nodes, settings.replace(output_dir=str(out)))
    assert max_diff(result.arrays.to_numpy_ndarrays(), sim.global_parameters()) < 1e-6
    history = json.loads((out / "history.json").read_text())
    for record, kept in zip(sim.history, history, strict=True):
        fleets = [int(c.removeprefix("fleet-")) for c in record["clients"]]
        assert len(fleets) == 2
        assert sorted(kept["survivors"]) == sorted(node_ids[i] for i in fleets)
        assert kept["personalized-rmse"] == pytest.approx(record["personalized_rmse"], rel=1e-6)


def test_a_node_reports_its_fleet_index() -> None:
    indices = server.collect_fleet_indices(
        LocalGrid(APP, {7: node_config(2), 9: {"partition-id": 0}}), [7, 9], timeout=10.0
    )
    assert indices == {7: 2, 9: 0}


def test_fedadam_strategy_equals_the_simulation(tmp_path: Path) -> None:
    model = battery_fl.BatLiNet(
        featurizer=battery_fl.Featurizer(**SETTINGS.featurizer), progress=False, **SETTINGS.model
    )
    data = [(f"fleet-{i}", train, test) for i, (train, test) in enumerate(fleets())]
    sim = battery_fl.Simulation(
        data,
        model=model,
        rounds=2,
        local_epochs=SETTINGS.local_epochs,
        strategy="fed_adam",
        seed=SETTINGS.seed,
        server_optimizer={"eta": 0.01},
    )
    sim.run()
    adam = run(tmp_path, "adam", strategy="fed_adam", server_eta=0.01)
    assert max_diff(adam.arrays, sim.global_parameters()) < 1e-5


def test_secure_aggregation_gives_the_fedavg_result(tmp_path: Path, plain: Outcome) -> None:
    secure = run(tmp_path, "secagg", secure_aggregation=True)
    # statistics summed securely: the same label transform up to the 64-bit grid
    assert secure.summary["label_transform"] == pytest.approx(
        plain.summary["label_transform"], rel=1e-5
    )
    assert [r["survivors"] for r in secure.summary["rounds"]] == [sorted(NODE_IDS)] * 2
    # round 1: the same local training, aggregated through the fixed-point grid: quantization
    # noise only (stochastic rounding draws fresh randomness each run)
    first = max_diff(
        load_round(secure.out / "round-001.npz"), load_round(plain.out / "round-001.npz")
    )
    assert 0 < first < 2e-4
    # round 2 trains from those slightly different weights; local Adam steps carry the
    # difference on, so the bound is looser, but still far below the weights' own scale (~0.1)
    assert max_diff(secure.arrays, plain.arrays) < 5e-3


@pytest.mark.parametrize("stage", [1, 2])
def test_a_node_dropping_in_round_2_does_not_lose_the_round(tmp_path: Path, stage: int) -> None:
    dropped = run(tmp_path, "drop", drops={"node2": f"2:{stage}"}, secure_aggregation=True)
    rounds = dropped.summary["rounds"]
    assert [r["aggregated"] for r in rounds] == [True, True]
    assert rounds[1]["survivors"] == NODE_IDS[:2] and rounds[1]["nodes"] == 2
    start = load_round(tmp_path / "drop" / "round-001.npz")
    want = reference_rounds(reference_model(), start, [2], members=[0, 1])[-1]
    assert max_diff(dropped.arrays, want) < 1e-4


def _poison_mod(msg: Message, context: Context, call_next: Any) -> Message:
    """A node whose node config has ``poison`` adds it to every weight it sends back."""
    reply: Message = call_next(msg, context)
    shift = float(context.node_config.get("poison", 0.0))  # type: ignore[arg-type]
    if shift and msg.metadata.message_type == MessageType.TRAIN and reply.has_content():
        arrays = reply.content["arrays"].to_numpy_ndarrays()  # type: ignore[union-attr]
        reply.content["arrays"] = ArrayRecord([a + shift for a in arrays])
    return reply


def test_max_delta_norm_drops_a_poisoning_node(tmp_path: Path) -> None:
    """A node that sends weights far from what it received (every weight + 100) is dropped by
    the core's update policy (``max-delta-norm``), round after round, and the others'
    federation goes on exactly as without it; without the bound it takes the model along."""
    app = make_client_app(mods=[_poison_mod])
    configs = {
        n: node_config(i, **({"poison": 100.0} if i == 2 else {})) for i, n in enumerate(NODE_IDS)
    }
    out = tmp_path / "bounded"
    bounded = run_federation(
        LocalGrid(app, configs), SETTINGS.replace(max_delta_norm=50.0, output_dir=str(out))
    )
    history = json.loads((out / "history.json").read_text())
    for kept in history:
        assert kept["survivors"] == NODE_IDS[:2] and kept["nodes"] == 2
        assert list(kept["rejected"]) == [str(NODE_IDS[2])]
        assert "exceeds bound 50" in kept["rejected"][str(NODE_IDS[2])]
    model = reference_model()
    want = reference_rounds(model, model.get_parameters(), [1, 2], members=[0, 1])[-1]
    assert max_diff(bounded.arrays.to_numpy_ndarrays(), want) < 1e-6
    unbounded = run_federation(LocalGrid(app, configs), SETTINGS)
    assert max_diff(unbounded.arrays.to_numpy_ndarrays(), want) > 10.0
    # with central DP the bound still drops the node, and the released mean, whose server noise
    # (z C / m per weight) is far longer than the bound, is applied as the Simulation applies
    # it (added, or a server optimizer's step)
    for strategy in ("fed_avg", "fed_adam"):
        noisy = tmp_path / strategy
        run_federation(
            LocalGrid(app, configs),
            SETTINGS.replace(
                strategy=strategy,
                max_delta_norm=50.0,
                dp_noise_multiplier=100.0,
                dp_clipping_norm=0.5,
                dp_mode="central",
                dp_seed=1,
                output_dir=str(noisy),
            ),
        )
        history = json.loads((noisy / "history.json").read_text())
        assert [h["aggregated"] for h in history] == [True, True], strategy
        assert all(list(h["rejected"]) == [str(NODE_IDS[2])] for h in history)


def test_too_few_survivors_lose_only_that_round(tmp_path: Path) -> None:
    lost = run(
        tmp_path, "lost", drops={"node0": "1:1"}, secure_aggregation=True, secagg_threshold=3
    )
    rounds = lost.summary["rounds"]
    assert [r["aggregated"] for r in rounds] == [False, True]
    assert "below" in rounds[0]["error"] or "threshold" in rounds[0]["error"]
    assert not (tmp_path / "lost" / "round-001.npz").exists()
    model = reference_model()
    want = reference_rounds(model, model.get_parameters(), [2])[
        -1
    ]  # round 2 from the initial weights
    assert max_diff(lost.arrays, want) < 1e-4


def test_strategy_and_settings_reject_bad_combinations() -> None:
    with pytest.raises(battery_fl.ConfigError):
        BatteryFlStrategy(battery_fl.FedMedian(), secure_aggregation=flower.SecAggWorkflow())
    with pytest.raises(battery_fl.ConfigError):
        FederationSettings(strategy="fed_trimmed_avg", dp_clipping_norm=1.0)
    with pytest.raises(battery_fl.ConfigError):
        FederationSettings(strategy="fedsgd")
    with pytest.raises(battery_fl.ConfigError, match="num-server-rounds"):
        FederationSettings.from_run_config({"num-server-rounds": "two"})
    with pytest.raises(battery_fl.ConfigError):
        flower.DpConfig(noise_multiplier=-1.0, clipping_norm=1.0)


def test_settings_round_trip_through_a_written_app(tmp_path: Path) -> None:
    settings = SETTINGS.replace(
        secure_aggregation=True, model={**SETTINGS.model, "input_channels": "1,2"}
    )
    app = write_app(tmp_path / "app", settings)
    config = tomllib.loads((app / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]
    flat = {k: v for k, v in config.items() if not isinstance(v, dict)}
    for table in ("model", "featurizer"):
        flat.update({f"{table}.{k}": v for k, v in config[table].items()})
    assert FederationSettings.from_run_config(flat) == settings
    assert settings.build_model().input_shape == (2, 12, 16)


def test_load_fleet_reads_a_folder_and_names_bad_configs(tmp_path: Path) -> None:
    train, test = fleets()[1]
    for folder, cells in (("train", train), ("test", test)):
        (tmp_path / folder).mkdir()
        for cell in cells:
            cell.save(tmp_path / folder / f"{cell.cell_id}.json")
    fleet = load_fleet(
        {"data-dir": str(tmp_path / "train"), "test-dir": str(tmp_path / "test"), "partition-id": 4}
    )
    assert fleet.index == 4
    assert sorted(c.cell_id for c in fleet.train) == sorted(c.cell_id for c in train)
    assert len(fleet.test) == len(test)
    with pytest.raises(battery_fl.ConfigError, match="data-dir"):
        load_fleet({"data-dir": str(tmp_path / "missing")})
    with pytest.raises(battery_fl.ConfigError, match="node-config"):
        load_fleet({})
    with pytest.raises(battery_fl.ConfigError, match="synthetic-fleet"):
        load_fleet({"synthetic-fleet": 3, "synthetic-fleets": 3})


def test_the_secagg_mod_passes_other_messages_through() -> None:
    g = grid()
    payload = RecordDict(
        {"config": ConfigRecord(flower.settings.model_to_config(SETTINGS.build_model()))}
    )
    (reply,) = g.send_and_receive(
        [Message(payload, dst_node_id=NODE_IDS[0], message_type="query.stats")]
    )
    assert not reply.has_error()
    (stats,) = reply.content["arrays"].to_numpy_ndarrays()
    assert stats[0] == 4 and stats.dtype == np.float64


def test_a_failing_node_becomes_an_error_reply() -> None:
    g = LocalGrid(APP, {1: {}})
    (reply,) = g.send_and_receive(
        [Message(RecordDict(), dst_node_id=1, message_type="query.stats")]
    )
    assert reply.has_error() and "ConfigError" in (reply.error.reason or "")


@pytest.mark.parametrize(("pretraining", "scale"), [(True, None), (False, 1.0)])
def test_record_private_federation_equals_the_simulation(
    tmp_path: Path, pretraining: bool, scale: float | None
) -> None:
    """Record-level DP-SGD on the nodes: public statistics (no statistics round), the first
    global weights trained on the public cells or not, the private steps' learning-rate scale
    (the core's default or another), each node's accountant, the same seeded mechanism as
    battery_fl.Simulation with public cells."""
    # the nodes pin their own noise seed (a test: a deployment keys it from the OS)
    private_grid = LocalGrid(
        APP, {node: node_config(i, **{"record-seed": 7}) for i, node in enumerate(NODE_IDS)}
    )
    settings = SETTINGS.replace(
        output_dir=str(tmp_path / "private"),
        fraction_evaluate=1.0,
        record_epsilon=4.0,
        record_public_pretraining=pretraining,
        **({} if scale is None else {"record_learning_rate_scale": scale}),
    )
    assert dp.default_record_config()["public_pretraining"] is True
    assert SETTINGS.record_public_pretraining is True  # the core's default
    default_scale = dp.default_record_config()["learning_rate_scale"]
    assert SETTINGS.record_learning_rate_scale == default_scale != scale
    result = run_federation(private_grid, settings)
    out = Outcome(result, json.loads((tmp_path / "private" / "result.json").read_text()), tmp_path)
    public = synthetic.public_cells(cells_per_fleet=server.PUBLIC_CELLS)
    sim = reference_simulation(
        SETTINGS,
        record_privacy={
            "epsilon": 4.0,
            "seed": 7,
            "public_pretraining": pretraining,
            "learning_rate_scale": scale or default_scale,
        },
        public=public,
    )
    records = sim.history
    # (the server pretrains only when told: with the setting off on one side only, the
    # first global weights, and so every round's, would differ)
    assert max_diff(out.arrays, sim.global_parameters()) < 1e-5
    assert out.summary["cells"] is None  # no cell count was summed
    assert out.summary["label_transform"] == pytest.approx(list(sim.label_transform), abs=1e-9)
    for r, record in enumerate(records, start=1):
        spent = out.summary["rounds"][r - 1]["node-record-epsilon"]
        assert sorted(spent.values()) == pytest.approx(sorted(record["fleet_epsilon"].values()))
    final = out.summary["rounds"][-1]["node-record-epsilon"]
    assert len(final) == FLEETS and all(e == pytest.approx(4.0, rel=1e-3) for e in final.values())
    with pytest.raises(battery_fl.ConfigError):
        SETTINGS.replace(record_epsilon=4.0, label_scope="fleet")
    with pytest.raises(battery_fl.ConfigError, match="record-learning-rate-scale"):
        SETTINGS.replace(record_epsilon=4.0, record_learning_rate_scale=0.0)
    with pytest.raises(battery_fl.ConfigError):
        SETTINGS.replace(record_epsilon=4.0, secure_aggregation=True, secagg_max_weight=0.0)
    # a node that requires record privacy refuses a server that drops or loosens it
    strict = {"record-max-epsilon": 2.0}
    fleet = load_fleet(node_config(0))
    for asked in (0.0, 4.0):
        with pytest.raises(battery_fl.PrivacyError):
            client.fleet_client(
                {"record-epsilon": asked, "public-cells": 2}, fleet, reference_model(), strict
            )
