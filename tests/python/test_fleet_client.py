"""battery_fl.FleetClient: one fleet's side of a round, as a Flower node runs it. Driven by
hand (train every fleet, FedAvg by ``num_examples``, then each fleet's personal model), it
must reproduce battery_fl.Simulation, which runs the same code for every fleet in process."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

import battery_fl
from battery_fl import synthetic
from battery_fl.flower import client as flower_client
from battery_fl.flower.settings import FleetCells

Fleets = list[tuple[str, list[battery_fl.Cell], list[battery_fl.Cell]]]


@pytest.fixture(scope="module")
def fleet_data(fleets: list[synthetic.Fleet]) -> Fleets:
    return [(f.id, f.cells[:4], f.cells[4:]) for f in fleets]


@dataclass
class Replay:
    """Per round: the Simulation's record, the global weights the clients reach, what each
    fleet received and sent, and each fleet's RMSE with the global weights (``shared``) and
    with its own model (``personal``), from :meth:`battery_fl.FleetClient.evaluate`."""

    records: list[dict[str, Any]] = field(default_factory=list)
    globals: list[list[np.ndarray]] = field(default_factory=list)
    received: list[list[np.ndarray]] = field(default_factory=list)
    sent: list[list[list[np.ndarray]]] = field(default_factory=list)
    counts: list[list[int]] = field(default_factory=list)
    personal: list[dict[str, float]] = field(default_factory=list)
    shared: list[dict[str, float]] = field(default_factory=list)
    simulated: list[list[np.ndarray]] = field(default_factory=list)
    personal_weights: list[list[list[np.ndarray]]] = field(default_factory=list)


def rmse(
    model: battery_fl.BatLiNet,
    train: list[battery_fl.Cell],
    test: list[battery_fl.Cell],
    k: int,
    seed: int,
) -> float:
    """RMSE (cycles) on ``test`` with references from ``train``, as the nodes evaluate."""
    predicted = model.predict(test, references=train, k=min(k, len(train)), seed=seed)
    truth = np.array([c.cycle_life() for c in test], dtype=np.float64)
    return float(np.sqrt(np.mean((predicted - truth) ** 2)))


def replay(
    fleet_data: Fleets, model_kwargs: dict[str, Any], rounds: int, **settings: Any
) -> Replay:
    """Run a Simulation and, beside it, one FleetClient per fleet driven by hand."""
    settings = dict(
        rounds=rounds,
        local_epochs=2,
        seed=1,
        inference_references=4,
        strategy="fed_avg",
        secure_aggregation=None,
        dp=None,
        **settings,
    )
    sim = battery_fl.Simulation(fleet_data, model=battery_fl.BatLiNet(**model_kwargs), **settings)
    model = battery_fl.BatLiNet(**model_kwargs)  # same seed: the Simulation's initial weights
    model.set_label_transform(*sim.label_transform)
    model.set_input_scales(*sim.input_scales)
    current = model.get_parameters()
    clients = [
        battery_fl.FleetClient(sim.config, i, model, train)
        for i, (_, train, _) in enumerate(fleet_data)
    ]
    states = [c.initial_state(model) for c in clients]
    out = Replay()
    for r in range(1, rounds + 1):
        out.records.append(sim.run_round())
        out.simulated.append(sim.global_parameters())
        sent, counts = [], []
        for i, client in enumerate(clients):
            weights, n, states[i] = client.train(model, current, states[i], r)
            sent.append(weights)
            counts.append(n)
        out.received.append(current)
        out.sent.append(sent)
        out.counts.append(counts)
        current = battery_fl.FedAvg().aggregate(sent, [float(n) for n in counts])
        out.globals.append(current)
        personal, shared, weights_of = {}, {}, []
        for i, (client, (fleet_id, train, test)) in enumerate(
            zip(clients, fleet_data, strict=True)
        ):
            shared[fleet_id], personal[fleet_id], states[i] = client.evaluate(
                model, current, states[i], test, r
            )
            own = (
                client.current_model(model, states[i])
                if client.keeps_fleet_model
                else client.shared_model(model, current)
            )
            weights_of.append(own.get_parameters())
            # the core's score is the plain one: the fleet's model on its test cells
            seed = battery_fl.job_seed(settings["seed"], r, i)
            k = settings["inference_references"]
            assert personal[fleet_id] == pytest.approx(rmse(own, train, test, k, seed), rel=1e-9)
        out.personal.append(personal)
        out.shared.append(shared)
        out.personal_weights.append(weights_of)
    return out


def max_diff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return max(
        float(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64)).max())
        for x, y in zip(a, b, strict=True)
    )


def test_fedavg_over_fleet_clients_is_the_simulation(
    fleet_data: Fleets, model_kwargs: dict[str, Any]
) -> None:
    run = replay(fleet_data, model_kwargs, rounds=2, personalization="none")
    for r in range(2):
        assert max_diff(run.globals[r], run.simulated[r]) < 1e-6, f"round {r + 1}"
        assert run.counts[r] == [4, 4, 4]
        # without personalization every fleet uses the global model
        assert all(max_diff(w, run.globals[r]) == 0.0 for w in run.personal_weights[r])
        assert run.personal[r] == pytest.approx(run.records[r]["fleet_rmse"], rel=1e-9)
    assert max_diff(run.globals[-1], run.received[0]) > 1e-3  # training moved the model


@pytest.mark.parametrize(
    ("personalization", "rounds", "extra"),
    [
        ("ditto", 2, {}),
        ("head", 2, {}),
        ("auto", 1, {}),
        # two validation cells and the least error: a fleet can take its own-head model
        ("auto_head", 2, {"validation_fraction": 0.5, "choice_margin": 0.0}),
    ],
)
def test_personalized_rmse_is_the_simulations(
    fleet_data: Fleets,
    model_kwargs: dict[str, Any],
    personalization: str,
    rounds: int,
    extra: dict[str, Any],
) -> None:
    """Per fleet and round, the personal model's RMSE equals the Simulation's (same code and
    seeds; the global weights differ by float rounding only, since the Simulation averages
    deltas)."""
    run = replay(fleet_data, model_kwargs, rounds=rounds, personalization=personalization, **extra)
    for r in range(rounds):
        assert max_diff(run.globals[r], run.simulated[r]) < 1e-6
        assert run.personal[r] == pytest.approx(
            run.records[r]["fleet_personalized_rmse"], rel=1e-6
        ), f"round {r + 1}"
        assert run.shared[r] == pytest.approx(run.records[r]["fleet_rmse"], rel=1e-6)
    # the personal models are not the global one: the check has teeth
    assert run.records[-1]["fleet_personalized_rmse"] != pytest.approx(
        run.records[-1]["fleet_rmse"], rel=1e-6
    )


@pytest.mark.parametrize("personalization", ["head", "auto_head"])
def test_head_stays_home(
    fleet_data: Fleets, model_kwargs: dict[str, Any], personalization: str
) -> None:
    run = replay(fleet_data, model_kwargs, rounds=2, personalization=personalization)
    names = battery_fl.BatLiNet(**model_kwargs).parameter_names
    heads = [i for i, n in enumerate(names) if n.startswith("head.")]
    assert heads and len(heads) < len(names)
    for r in range(2):
        for sent in run.sent[r]:
            for i in range(len(names)):
                if i in heads:  # the head sent is the one received
                    np.testing.assert_array_equal(sent[i], run.received[r][i])
            assert (
                max_diff(
                    [sent[i] for i in range(len(names)) if i not in heads],
                    [run.received[r][i] for i in range(len(names)) if i not in heads],
                )
                > 0
            )
    if personalization == "auto_head":
        return  # (each fleet keeps its own model on one validation cell: nothing shared to use)
    # each fleet uses the global encoders with its own head
    own = run.personal_weights[-1]
    for weights in own:
        assert max_diff([weights[i] for i in heads], [run.globals[-1][i] for i in heads]) > 0
        assert (
            max_diff(
                [w for i, w in enumerate(weights) if i not in heads],
                [w for i, w in enumerate(run.globals[-1]) if i not in heads],
            )
            == 0.0
        )
    assert max_diff([own[0][i] for i in heads], [own[1][i] for i in heads]) > 0


def test_auto_holds_out_validation_cells(fleet_data: Fleets, model_kwargs: dict[str, Any]) -> None:
    model = battery_fl.BatLiNet(**model_kwargs)
    train = fleet_data[0][1]
    model.set_statistics(*model.local_statistics(train))
    assert battery_fl.FleetClient({"personalization": "none"}, 0, model, train).fit_cells == len(
        train
    )
    auto = battery_fl.FleetClient(
        {"personalization": "auto", "validation_fraction": 0.25, "local_epochs": 1}, 0, model, train
    )
    assert auto.fit_cells == len(train) - 1  # round(4 * 0.25) cells validate
    start = model.get_parameters()
    state = auto.initial_state(model)
    weights, n, state = auto.train(model, start, state, 1)
    assert n == auto.fit_cells and isinstance(state, bytes) and len(weights) == len(start)


def test_settings_and_inputs_are_checked(fleet_data: Fleets, model_kwargs: dict[str, Any]) -> None:
    model = battery_fl.BatLiNet(**model_kwargs)
    train = fleet_data[0][1]
    with pytest.raises(battery_fl.ConfigError) as info:
        battery_fl.FleetClient({"personalization": "none", "bogus": 1}, 0, model, train)
    assert info.value.field == "config.bogus"
    # a value its setting cannot take names the setting
    with pytest.raises(battery_fl.ConfigError, match="everyone") as info:
        battery_fl.FleetClient({"personalization": "everyone"}, 0, model, train)
    assert info.value.field == "config.personalization"
    # a node checks the settings it trains and chooses with (it does not know the others')
    for bad in ({"choice_margin": -1.0}, {"validation_fraction": 0.9}, {"local_epochs": 0}):
        with pytest.raises(battery_fl.ConfigError) as info:
            battery_fl.FleetClient({"personalization": "auto", **bad}, 0, model, train)
        assert info.value.field == next(iter(bad))
    with pytest.raises(battery_fl.ConfigError) as info:
        flower_client.fleet_client({"auto-margin": 0.1}, FleetCells(0, train, []), model)
    assert info.value.field == "auto-margin"
    with pytest.raises(battery_fl.DataError) as data_info:
        battery_fl.FleetClient({}, 0, model, [])
    assert data_info.value.kind == "not_enough_data"
    model.set_statistics(*model.local_statistics(train))
    client = battery_fl.FleetClient(
        {"personalization": "ditto", "local_epochs": 1}, 0, model, train
    )
    start = model.get_parameters()
    with pytest.raises(battery_fl.BatteryFlError):
        client.train(model, start, b"not a state", 1)
    with pytest.raises(battery_fl.BatteryFlError):
        client.train(model, start[:-1], b"", 1)
