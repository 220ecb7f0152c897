"""Shared pieces of the Flower tests: the tiny federation they run (3 synthetic fleets,
a 4-channel BatLiNet on 12 cycles x 16 points) and its in-process references, computed with
the plain Python API (BatLiNet.train with the same job seeds, then battery_fl.FedAvg) or
with battery_fl.Simulation (personalized runs); and the in-process harness (three nodes on a
battery_fl.flower.LocalGrid, ``run``)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import battery_fl
from battery_fl import synthetic
from battery_fl.flower import (
    FederationSettings,
    LocalGrid,
    dropout_mod,
    make_client_app,
    run_federation,
    secagg_mod,
)

FLEETS, CELLS, TEST_CELLS, CYCLES, POINTS, DATA_SEED = 3, 6, 2, 12, 60, 5
MODEL: dict[str, Any] = {"conv_channels": 4, "batch_size": 4, "seed": 3}
FEATURIZER: dict[str, Any] = {"cycles": CYCLES, "interp_dim": 16}
SETTINGS = FederationSettings(
    num_server_rounds=2,
    strategy="fed_avg",
    min_nodes=FLEETS,
    local_epochs=2,
    seed=11,
    fraction_evaluate=0.0,
    timeout=150.0,
    model=MODEL,
    featurizer=FEATURIZER,
)


def node_config(i: int, **extra: Any) -> dict[str, Any]:
    """Node config of fleet ``i`` (a synthetic-fleet spec)."""
    return {
        "partition-id": i,
        "synthetic-fleet": i,
        "synthetic-fleets": FLEETS,
        "synthetic-cells": CELLS,
        "synthetic-cycles": CYCLES,
        "synthetic-points": POINTS,
        "synthetic-seed": DATA_SEED,
        "synthetic-test-cells": TEST_CELLS,
        **extra,
    }


def node_config_arg(i: int, **extra: Any) -> str:
    """The same, as a ``flower-supernode --node-config`` string."""

    def toml(v: Any) -> str:
        return f'"{v}"' if isinstance(v, str) else str(v)

    return " ".join(f"{k}={toml(v)}" for k, v in node_config(i, **extra).items())


def fleets() -> list[tuple[list[battery_fl.Cell], list[battery_fl.Cell]]]:
    """(train, test) cells of every fleet, as the nodes load them."""
    generated = synthetic.generate_fleets(
        fleets=FLEETS, cells_per_fleet=CELLS, cycles=CYCLES, points_per_cycle=POINTS, seed=DATA_SEED
    )
    return [(f.cells[: CELLS - TEST_CELLS], f.cells[CELLS - TEST_CELLS :]) for f in generated]


def reference_model(settings: FederationSettings = SETTINGS) -> battery_fl.BatLiNet:
    """The global model with the pooled label transform and input scales (plain sums)."""
    model = battery_fl.BatLiNet(
        featurizer=battery_fl.Featurizer(**settings.featurizer), progress=False, **settings.model
    )
    data = fleets()
    logs = [math.log(c.cycle_life() or 0) for train, _ in data for c in train]
    mean = sum(logs) / len(logs)
    model.set_label_transform(mean, math.sqrt(sum(v * v for v in logs) / len(logs) - mean * mean))
    model.set_input_statistics(sum(model.input_statistics(train) for train, _ in data).tolist())
    return model


def reference_rounds(
    model: battery_fl.BatLiNet,
    start: Sequence[np.ndarray],
    rounds: Sequence[int],
    settings: FederationSettings = SETTINGS,
    members: Sequence[int] = tuple(range(FLEETS)),
) -> list[list[np.ndarray]]:
    """Global weights after each of ``rounds``: every fleet in ``members`` trains locally
    (``local_epochs``, seed ``job_seed(seed, round, fleet)``) from the global weights, then
    FedAvg weighted by training cells."""
    data = fleets()
    params = [np.asarray(p) for p in start]
    out = []
    for r in rounds:
        updates, weights = [], []
        for f in members:
            model.set_parameters(params)
            model.train(
                data[f][0],
                epochs=settings.local_epochs,
                seed=battery_fl.job_seed(settings.seed, r, f),
            )
            updates.append(model.get_parameters())
            weights.append(float(len(data[f][0])))
        params = battery_fl.FedAvg().aggregate(updates, weights)
        out.append(params)
    return out


def reference_simulation(
    settings: FederationSettings = SETTINGS, **extra: Any
) -> battery_fl.Simulation:
    """battery_fl.Simulation of the same federation (fleet ``i`` is node ``partition-id = i``,
    same seeds and settings, personalization included, ``extra`` Simulation arguments), run to
    the end: its records hold the per-round ``global_rmse`` and ``personalized_rmse`` the
    nodes' evaluation must give."""
    model = battery_fl.BatLiNet(
        featurizer=battery_fl.Featurizer(**settings.featurizer), progress=False, **settings.model
    )
    data = [(f"fleet-{i}", train, test) for i, (train, test) in enumerate(fleets())]
    sim = battery_fl.Simulation(
        data,
        model=model,
        rounds=settings.num_server_rounds,
        clients_per_round=settings.clients_per_round,
        local_epochs=settings.local_epochs,
        strategy=settings.strategy,
        proximal_mu=settings.proximal_mu,
        seed=settings.seed,
        inference_references=settings.inference_references,
        personalization=settings.personalization,
        ditto_lambda=settings.ditto_lambda,
        personal_epochs=settings.personal_epochs,
        validation_fraction=settings.validation_fraction,
        calibration_holdout=settings.calibration_holdout,
        choice_margin=settings.choice_margin,
        **extra,
    )
    sim.run()
    return sim


def max_diff(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> float:
    """Largest absolute difference between two weight lists (same shapes)."""
    assert [x.shape for x in a] == [y.shape for y in b]
    return max(
        float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
        for x, y in zip(a, b, strict=True)
    )


def load_round(path: Any) -> list[np.ndarray]:
    """Weights saved by BatteryFlStrategy (``round-NNN.npz``)."""
    with np.load(path) as z:
        return [z[f"arr_{i}"] for i in range(len(z.files))]


NODE_IDS = [101, 202, 303]
APP = make_client_app(mods=[dropout_mod, secagg_mod])


def grid(**drops: str) -> LocalGrid:
    """Three nodes; ``drops`` maps ``node<i>`` to a ``secagg-drop`` rule."""
    configs = {}
    for i, node in enumerate(NODE_IDS):
        rule = drops.get(f"node{i}")
        configs[node] = node_config(i, **({"secagg-drop": rule} if rule else {}))
    return LocalGrid(APP, configs)


@dataclass
class Outcome:
    """A finished in-process run: Flower's Result, result.json and the output folder."""

    result: Any
    summary: dict[str, Any]
    out: Path

    @property
    def arrays(self) -> list[np.ndarray]:
        return self.result.arrays.to_numpy_ndarrays()


def run(tmp_path: Path, name: str, drops: dict[str, str] | None = None, **changes: Any) -> Outcome:
    out = tmp_path / name
    result = run_federation(grid(**(drops or {})), SETTINGS.replace(output_dir=str(out), **changes))
    return Outcome(result, json.loads((out / "result.json").read_text()), out)
