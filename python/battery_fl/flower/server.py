"""The ServerApp side: the statistics round, then the strategy's training rounds.

:func:`run_federation` is what the ready ServerApp (``battery_fl.flower.server:app``) runs:

1. wait for ``min-nodes`` SuperNodes;
2. **statistics**: every node sends its :func:`~battery_fl.flower.client.fleet_statistics`
   (``query.stats``), summed through our SecAgg+ when ``secure-aggregation`` is on (unless
   ``secure-statistics = false``), so the server learns totals only; they give the shared
   label transform and input scales, as in :class:`battery_fl.Simulation`;
3. **training**: :class:`~battery_fl.flower.strategy.BatteryFlStrategy` runs
   ``num-server-rounds`` rounds from the model's seeded initial weights;
4. **intervals** (nodes that hold out cells: ``auto``, ``auto_head`` or ``calibration-holdout``; every node evaluated, no record-level DP-SGD;
   the sum is not covered by the training's DP epsilon): each node sends the
   histogram of the conformal scores of the cells it held out (``query.calibration``),
   summed like the statistics; with the sum each node calibrates the model it ended with
   (pooled scores below 19 cells of its own, as :meth:`battery_fl.Simulation.calibrate_fleets`)
   and reports its coverage and mean width at ``interval-coverage`` (``query.intervals``);
5. with ``output-dir``: ``round-NNN.npz`` and ``history.json`` after each round, then the final
   global model as a :class:`battery_fl.BatLiNet` directory ``model/`` and ``result.json``
   (with ``intervals``: per node and pooled over all test cells).

:func:`write_app` writes a Flower app directory (``pyproject.toml``) for ``flwr run``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import Result

import battery_fl
from battery_fl import synthetic
from battery_fl.flower.client import (
    CALIBRATION_ACTION,
    FLEET_ACTION,
    INTERVALS_ACTION,
    STATS_ACTION,
    public_cells,
)
from battery_fl.flower.linear import pooled_intervals, run_linear_federation, sum_replies
from battery_fl.flower.polling import PollingGrid
from battery_fl.flower.secagg import SecAggWorkflow
from battery_fl.flower.settings import (
    FederationSettings,
    config_error,
    model_to_config,
)
from battery_fl.flower.strategy import BatteryFlStrategy, DpConfig

__all__ = [
    "app",
    "apply_statistics",
    "collect_fleet_indices",
    "collect_intervals",
    "collect_statistics",
    "main",
    "run_federation",
    "wait_for_nodes",
    "write_app",
]

_log = logging.getLogger("flwr")


def wait_for_nodes(grid: Grid, count: int, timeout: float) -> list[int]:
    """The connected node ids once at least ``count`` are connected; raises
    :class:`battery_fl.ConfigError` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while len(nodes := sorted(int(n) for n in grid.get_node_ids())) < count:
        if time.monotonic() > deadline:
            raise config_error(
                "min-nodes", f"only {len(nodes)} of {count} nodes connected in {timeout} s"
            )
        time.sleep(0.5)
    return nodes


def collect_statistics(
    grid: Grid,
    node_ids: list[int],
    model: battery_fl.BatLiNet,
    *,
    workflow: SecAggWorkflow | None,
    timeout: float,
) -> tuple[np.ndarray, int]:
    """The sum over nodes of their fleet statistics for ``model`` (securely with
    ``workflow``), and how many nodes are in it."""
    c, h, w = model.input_shape
    dim = battery_fl.BatLiNet.LABEL_STATISTICS_LEN + 1 + 2 * c + c * h * w
    payload = RecordDict({"config": ConfigRecord(model_to_config(model))})  # type: ignore[arg-type]
    message_type = f"{MessageType.QUERY}.{STATS_ACTION}"
    if workflow is not None:
        total, survivors = workflow.secure_sum(
            grid, node_ids, payload, message_type=message_type, round_id=0, dim=dim
        )
        return total, len(survivors)
    messages = [
        Message(payload, dst_node_id=n, message_type=message_type, group_id="statistics")
        for n in node_ids
    ]
    vectors: dict[int, np.ndarray] = {}
    for reply in grid.send_and_receive(messages, timeout=timeout):
        node = int(reply.metadata.src_node_id)
        if reply.has_error():
            _log.warning("statistics: node %d failed: %s", node, reply.error.reason)
            continue
        (vector,) = reply.content["arrays"].to_numpy_ndarrays()  # type: ignore[union-attr]
        if vector.shape != (dim,):
            _log.warning("statistics: node %d sent %s values, expected %d", node, vector.shape, dim)
            continue
        vectors[node] = vector.astype(np.float64)
    if not vectors:
        err = battery_fl.DataError("statistics: no node answered")
        err.kind = "not_enough_data"
        raise err
    total = np.zeros(dim, dtype=np.float64)
    for node in sorted(vectors):
        total += vectors[node]
    return total, len(vectors)


def _query_metrics(
    grid: Grid, node_ids: list[int], action: str, payload: RecordDict, *, timeout: float
) -> dict[int, dict[str, float]]:
    """Send ``query.<action>`` with ``payload`` to every node: each answering node's metrics,
    by node id (a node that fails is logged and left out)."""
    message_type = f"{MessageType.QUERY}.{action}"
    messages = [
        Message(payload, dst_node_id=n, message_type=message_type, group_id=action)
        for n in node_ids
    ]
    out: dict[int, dict[str, float]] = {}
    for reply in grid.send_and_receive(messages, timeout=timeout):
        node = int(reply.metadata.src_node_id)
        if reply.has_error():
            _log.warning("%s: node %d failed: %s", action, node, reply.error.reason)
            continue
        out[node] = {k: float(v) for k, v in reply.content["metrics"].items()}  # type: ignore[union-attr,arg-type]
    return out


def collect_fleet_indices(grid: Grid, node_ids: list[int], *, timeout: float) -> dict[int, int]:
    """Each node's fleet index (``query.fleet``: its ``partition-id``), by node id; a node that
    does not answer is left out."""
    replies = _query_metrics(grid, node_ids, FLEET_ACTION, RecordDict(), timeout=timeout)
    return {node: int(metrics["fleet-index"]) for node, metrics in replies.items()}


def collect_intervals(
    grid: Grid,
    node_ids: list[int],
    config: ConfigRecord,
    *,
    coverage: float,
    workflow: SecAggWorkflow | None,
    round_id: int,
    timeout: float,
) -> dict[str, Any]:
    """Every node's interval coverage and mean width at ``coverage`` on its test cells, its
    model calibrated on held-out cells pooled through a (secure, with ``workflow``) sum of
    score histograms (see the module docs): ``per_node`` metrics and the pooled
    ``covered`` / ``mean_width``."""
    counts = sum_replies(
        grid,
        node_ids,
        config,
        CALIBRATION_ACTION,
        battery_fl.SCORE_BINS,
        workflow=workflow,
        round_id=round_id,
        timeout=timeout,
    )
    asked = ConfigRecord(
        {
            **dict(config),
            "calibration-histogram": [float(c) for c in counts],
            "interval-coverage": coverage,
        }
    )
    payload = RecordDict({"config": asked})
    replies = _query_metrics(grid, node_ids, INTERVALS_ACTION, payload, timeout=timeout)
    per_node = {str(node): metrics for node, metrics in replies.items()}
    return {"interval_coverage": coverage, "per_node": per_node, **pooled_intervals(per_node)}


def apply_statistics(model: battery_fl.BatLiNet, total: np.ndarray) -> tuple[float, float]:
    """Set the shared label transform and input scales from summed fleet statistics
    (:meth:`battery_fl.BatLiNet.set_shared_statistics`); returns the label transform
    ``(mean, std)``."""
    model.set_shared_statistics(np.asarray(total, dtype=np.float64).tolist())
    label = model.label_transform
    assert label is not None
    return label


#: Cells per fleet of the public synthetic set (``synthetic.PUBLIC_FLEETS`` fleets) a
#: record-private run reads its statistics and branch B's training references from: the core's.
PUBLIC_CELLS = synthetic.PUBLIC_CELLS_PER_FLEET


def _statistics_config(model: battery_fl.BatLiNet, total: np.ndarray | None) -> dict[str, Any]:
    """How the nodes get the shared statistics: the summed label sums (pooled and per cathode
    group; each node derives the label transform from them with the core, grouped as the model
    says) and the input scales, or, under record-level DP-SGD (``total`` is ``None``), the
    public cells they are computed from."""
    if total is None:
        return {"public-cells": PUBLIC_CELLS, "public-fleets": synthetic.PUBLIC_FLEETS}
    scales = model.input_scales
    assert scales is not None
    return {
        "label-statistics": [float(v) for v in total[: battery_fl.BatLiNet.LABEL_STATISTICS_LEN]],
        "input-scales-a": [float(v) for v in scales[0]],
        "input-scales-b": [float(v) for v in scales[1]],
    }


def _train_config(
    model: battery_fl.BatLiNet, settings: FederationSettings, total: np.ndarray | None
) -> ConfigRecord:
    return ConfigRecord(
        {
            **model_to_config(model),
            **_statistics_config(model, total),
            "rounds": settings.num_server_rounds,
            "record-epsilon": settings.record_epsilon,
            "record-learning-rate-scale": settings.record_learning_rate_scale,
            "local-epochs": settings.local_epochs,
            "seed": settings.seed,
            "proximal-mu": settings.proximal_mu_for_clients(),
            "inference-references": settings.inference_references,
            "personalization": settings.personalization,
            "ditto-lambda": settings.ditto_lambda,
            "personal-epochs": settings.personal_epochs or 0,
            "validation-fraction": settings.validation_fraction,
            "calibration-holdout": settings.calibration_holdout,
            "choice-margin": settings.choice_margin,
            "label-scope": settings.label_scope,
        }
    )


def run_federation(grid: Grid, settings: FederationSettings) -> Result:
    """Run a whole federation on ``grid`` (see the module docs); returns Flower's ``Result``."""
    started = time.monotonic()
    grid = grid if isinstance(grid, PollingGrid) else PollingGrid(grid)
    model = settings.build_model()
    nodes = wait_for_nodes(grid, settings.min_nodes, settings.timeout)
    _log.info("battery-fl: %d nodes connected", len(nodes))
    workflow = None
    if settings.secure_aggregation:
        workflow = SecAggWorkflow(
            threshold=settings.secagg_threshold or None,
            neighbours=settings.secagg_neighbours or None,
            clipping_range=settings.secagg_clipping_range,
            modulus_bits=settings.secagg_modulus_bits,
            timeout=settings.timeout,
        )
    total: np.ndarray | None = None
    cells: int | None = None
    if settings.record_epsilon > 0:
        # record-level DP-SGD: no statistic of a fleet is summed; everyone reads the public
        # cells' (the nodes make the same ones), and the first global weights are trained on
        # them, as the core's Simulation does (unless record-public-pretraining is off)
        model.start_private(
            public_cells(_statistics_config(model, None)),
            public_pretraining=settings.record_public_pretraining,
        )
        answered = len(nodes)
        mean, std = model.label_transform or (math.nan, math.nan)
        _log.info("battery-fl: record-level DP-SGD at epsilon %g per cell", settings.record_epsilon)
    else:
        total, answered = collect_statistics(
            grid,
            nodes,
            model,
            workflow=workflow if settings.secure_statistics else None,
            timeout=settings.timeout,
        )
        mean, std = apply_statistics(model, total)
        cells = int(round(total[0]))
        _log.info(
            "battery-fl: %d cells on %d nodes; label transform (%.4f, %.4f)",
            cells,
            answered,
            mean,
            std,
        )
    if workflow is not None:
        # W bounds a node's weight (its cell count): the federation's total is a public bound
        max_weight = settings.secagg_max_weight or float(max(cells or 1, 1))
        workflow = dataclasses.replace(workflow, max_weight=max_weight)
    dp = None
    if settings.dp_enabled:
        dp = DpConfig(
            noise_multiplier=settings.dp_noise_multiplier,
            clipping_norm=settings.dp_clipping_norm,
            mode=settings.dp_mode,
            target_delta=settings.dp_target_delta,
            max_epsilon=settings.dp_max_epsilon or None,
            seed=settings.dp_seed if settings.dp_seed >= 0 else None,
            adaptive=settings.dp_adaptive_config(),
        )
    out = Path(settings.output_dir) if settings.output_dir else None
    minimum = min(settings.min_nodes, len(nodes))
    strategy = BatteryFlStrategy(
        settings.aggregator(),
        fraction_train=settings.fraction_train,
        fraction_evaluate=settings.fraction_evaluate,
        min_train_nodes=minimum,
        min_evaluate_nodes=minimum if settings.fraction_evaluate > 0 else 0,
        min_available_nodes=minimum,
        dp=dp,
        secure_aggregation=workflow,
        output_dir=out,
        clients_per_round=settings.clients_per_round,
        seed=settings.seed,
        max_delta_norm=settings.max_delta_norm,
        fleet_indices=(
            collect_fleet_indices(grid, nodes, timeout=settings.timeout)
            if settings.clients_per_round is not None
            else None
        ),
    )
    config = _train_config(model, settings, total)
    result = strategy.start(
        grid,
        ArrayRecord(model.get_parameters()),
        num_rounds=settings.num_server_rounds,
        timeout=settings.timeout,
        train_config=config,
        evaluate_config=ConfigRecord(dict(config)),
    )
    intervals: dict[str, Any] | None = None
    # every node evaluated (so holds the model it ended with), and no record-level DP-SGD,
    # whose guarantee does not cover the summed errors
    if (
        battery_fl.holds_out_validation_cells(settings.core_config())
        and settings.fraction_evaluate == 1.0
        and settings.record_epsilon <= 0
    ):
        try:
            intervals = collect_intervals(
                grid,
                nodes,
                config,
                coverage=settings.interval_coverage,
                workflow=workflow,
                round_id=settings.num_server_rounds + 1,
                timeout=settings.timeout,
            )
        except battery_fl.BatteryFlError as err:  # the trained run stands without intervals
            _log.warning("battery-fl: no intervals: %s", err)
            intervals = {"error": str(err)}
        else:
            _log.info(
                "battery-fl: %.0f %% intervals cover %s of the test cells, mean width %s",
                100 * settings.interval_coverage,
                intervals["covered"],
                intervals["mean_width"],
            )
    if out is not None:
        model.set_parameters(result.arrays.to_numpy_ndarrays())
        model.save(out / "model")
        summary = {
            "nodes": answered,
            "cells": cells,
            "label_transform": [mean, std],
            "epsilon": strategy.epsilon,
            "rounds": strategy.history,
            "evaluate": {str(r): dict(m) for r, m in result.evaluate_metrics_clientapp.items()},
            "intervals": intervals,
            "seconds": time.monotonic() - started,
        }
        (out / "result.json").write_text(json.dumps(summary, indent=1))
    return result


#: The ready ServerApp (``battery_fl.flower.server:app``): settings from the run config.
app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """The ServerApp entry point: :func:`run_federation` with the run config's settings, or
    with ``recipe = "linear"`` :func:`battery_fl.flower.linear.run_linear_federation`."""
    settings = FederationSettings.from_run_config(context.run_config)
    if settings.recipe == "linear":
        polling = PollingGrid(grid)
        run_linear_federation(
            polling, settings, wait_for_nodes(polling, settings.min_nodes, settings.timeout)
        )
    else:
        run_federation(grid, settings)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    raise config_error("run-config", f"{value!r} is not a TOML scalar")


def write_app(
    directory: str | Path,
    settings: FederationSettings | None = None,
    *,
    name: str = "battery-fl-app",
    serverapp: str = "battery_fl.flower.server:app",
    clientapp: str = "battery_fl.flower.client:app",
    extra_config: Mapping[str, object] | None = None,
) -> Path:
    """Write a Flower app (``pyproject.toml``) for ``flwr run DIRECTORY``: the components
    (ours by default) and every setting as run config (override with ``--run-config``;
    Flower only overrides keys the app declares, so set in ``settings.model`` and
    ``settings.featurizer`` every model setting a run may change).
    Nodes and SuperLink need ``battery_fl`` and ``flwr`` installed: Flower's runtime
    dependency installation is not used.

    >>> import tempfile, tomllib
    >>> d = write_app(tempfile.mkdtemp(), FederationSettings(model={"conv_channels": 4}))
    >>> cfg = tomllib.loads((d / "pyproject.toml").read_text())["tool"]["flwr"]["app"]
    >>> cfg["components"]["serverapp"], cfg["config"]["model"]["conv-channels"]
    ('battery_fl.flower.server:app', 4)
    """
    settings = settings or FederationSettings()
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    flat = {**settings.to_run_config(), **(extra_config or {})}
    top = [f"{k} = {_toml_value(v)}" for k, v in flat.items() if "." not in k]
    tables: dict[str, list[str]] = {}
    for key, value in flat.items():
        if "." in key:
            table, _, rest = key.partition(".")
            tables.setdefault(table, []).append(f"{rest} = {_toml_value(value)}")
    lines = [
        "[build-system]",
        'requires = ["hatchling"]',
        'build-backend = "hatchling.build"',
        "",
        "[project]",
        f"name = {json.dumps(name)}",
        'version = "1.0.0"',
        'description = "battery-fl federated lifetime prediction on Flower"',
        'license = "MIT OR Apache-2.0"',
        'dependencies = ["flwr==1.41.0", "battery-fl"]',
        "",
        "[tool.hatch.build.targets.wheel]",
        'packages = ["."]',
        "",
        "[tool.flwr.app]",
        'publisher = "battery-fl"',
        "",
        "[tool.flwr.app.components]",
        f"serverapp = {json.dumps(serverapp)}",
        f"clientapp = {json.dumps(clientapp)}",
        "",
        "[tool.flwr.app.config]",
        *top,
    ]
    for table, entries in tables.items():
        lines += ["", f"[tool.flwr.app.config.{table}]", *entries]
    (root / "pyproject.toml").write_text("\n".join(lines) + "\n")
    return root
