"""The linear recipe on Flower: :func:`battery_fl.federate_linear`'s steps with each fleet on
its own SuperNode (run config ``recipe = "linear"``).

The ServerApp (:func:`run_linear_federation`) sends three queries; each node answers from
its own cells with :class:`battery_fl.LinearSteps` (the code ``federate_linear`` runs in one
process):

1. ``query.linear_share``: the node's summed statistics (with ``record-epsilon > 0`` clamped,
   mapped and noised: record-level DP per cell, the noise keyed and sized on the node,
   never by the server, released once per run; a node's ``record-max-epsilon`` bounds the ε
   it accepts), summed through our SecAgg+ when
   ``secure-aggregation`` is on;
2. ``query.linear_errors`` (config ``linear-total``): the errors of the models fitted on the
   other fleets, on the node's cells; summed the same way;
3. ``query.linear_fit`` (``linear-total``, ``linear-errors``): the node computes its own
   models and its choice among them, keeps them in ``Context.state``
   (:data:`LINEAR_STATE_KEY`, never sent), and replies with ``metrics``: ``local-rmse`` and
   ``personalized-rmse`` (cycles, on its test cells), ``num-examples``, and for its conformal
   intervals at ``interval-coverage`` (calibrated on its own training cells) ``covered``
   (the share of its labelled test cells inside, over ``covered-cells`` of them),
   ``mean-width`` (cycles) and ``out-of-distribution`` (flagged cells).

The server fits the global model from the two sums (``LinearSteps.global_model``); with
``output-dir`` it writes ``linear-global.json`` and ``result.json``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import (
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from flwr.serverapp import Grid

import battery_fl
from battery_fl._core import DEFAULT_CHOICE_MARGIN
from battery_fl.flower.secagg import MASKING_KEY, SecAggWorkflow
from battery_fl.flower.settings import (
    FederationSettings,
    FleetCells,
    config_error,
    load_fleet,
    node_record_epsilon,
    privacy_error,
)

__all__ = [
    "ERRORS_ACTION",
    "FIT_ACTION",
    "LINEAR_STATE_KEY",
    "SHARE_ACTION",
    "query_linear_errors",
    "query_linear_fit",
    "pooled_intervals",
    "query_linear_share",
    "run_linear_federation",
    "sum_replies",
]

#: The query actions of the three steps.
SHARE_ACTION, ERRORS_ACTION, FIT_ACTION = "linear_share", "linear_errors", "linear_fit"
#: ConfigRecord in a node's ``Context.state`` holding its linear models (JSON), never sent.
LINEAR_STATE_KEY = "bfl-linear-fleet"
#: ConfigRecord in a node's ``Context.state``: the run and the steps it has released noisily.
RELEASED_KEY = "bfl-linear-released"

_log = logging.getLogger("flwr")


def _steps(config: ConfigRecord, context: Context, step: int) -> battery_fl.LinearSteps:
    """The node's steps for the server's config, its record-level noise decided by the node:

    - keyed from the OS, or, when the node's own config pins ``record-seed`` (tests), from
      that seed, the step and the node; never from a seed the server sends, which would let
      it subtract the noise (a config that carries ``record-noise-seed`` is refused);
    - distributed (a share sized for the round's threshold, the fewest survivors whose sum
      the server can decode) only while :func:`~battery_fl.flower.secagg.secagg_mod` masks
      the reply; otherwise the reply leaves the node in the clear and carries all the noise,
      whatever ``secure-aggregation`` and ``fleets`` the server claims;
    - within the node's ``record-max-epsilon`` when it sets one (a server that asks for no
      record privacy or a larger ε is refused)."""
    if "record-noise-seed" in config:
        raise privacy_error(
            "the server sent `record-noise-seed`: a node keys its noise from the OS or its own "
            "`record-seed`, never from a seed the server knows (it could subtract the noise)"
        )
    epsilon = node_record_epsilon(config, context.node_config)
    seed = int(context.node_config.get("record-seed", -1))  # type: ignore[call-overload]
    node_seed = (
        None if seed < 0 else battery_fl.job_seed(seed, step, int(context.node_id) % (1 << 31))
    )
    fleets = int(config["fleets"])  # type: ignore[arg-type]
    masking = context.state.get(MASKING_KEY)
    if isinstance(masking, ConfigRecord):
        fleets = min(fleets, int(masking["threshold"]))  # type: ignore[arg-type]
    return battery_fl.LinearSteps(
        fleets,
        secure_aggregation=isinstance(masking, ConfigRecord),
        per_chemistry_choice=bool(config.get("per-chemistry-choice", False)),
        choice_margin=float(config.get("choice-margin", DEFAULT_CHOICE_MARGIN)),  # type: ignore[arg-type]
        epsilon=epsilon if epsilon > 0 else None,
        noise_seed=node_seed,
    )


def _release_once(context: Context, step: int, private: bool) -> None:
    """Refuse a second noisy release of ``step`` in this run (a server that asked again could
    average the independent draws, spending the ε per cell once per request)."""
    if not private:
        return
    run = int(context.run_id)
    record = context.state.get(RELEASED_KEY)
    released = (
        [int(s) for s in record["steps"]]  # type: ignore[union-attr]
        if isinstance(record, ConfigRecord) and int(record["run"]) == run  # type: ignore[arg-type]
        else []
    )
    if step in released:
        raise privacy_error(
            f"step {step} of the linear federation was already released in this run: a "
            "second noisy release of the same statistics would spend the budget again"
        )
    context.state[RELEASED_KEY] = ConfigRecord({"run": run, "steps": [*released, step]})


def _config(msg: Message) -> ConfigRecord:
    record = msg.content.get("config")
    if not isinstance(record, ConfigRecord):
        raise config_error("config", "the message carries no ConfigRecord `config`")
    return record


def _vector(config: ConfigRecord, key: str) -> list[float]:
    if key not in config:
        raise config_error(key, "missing from the server's config")
    return [float(v) for v in config[key]]  # type: ignore[union-attr]


def _reply(msg: Message, vector: np.ndarray, cells: int) -> Message:
    metrics = MetricRecord({"num-examples": cells})
    return Message(RecordDict({"arrays": ArrayRecord([vector]), "metrics": metrics}), reply_to=msg)


def query_linear_share(msg: Message, context: Context) -> Message:
    """Step 1 on a node: its share of the first sum (once per run under record privacy)."""
    fleet = load_fleet(context.node_config)
    steps = _steps(_config(msg), context, 1)
    _release_once(context, 1, steps.privacy is not None)
    return _reply(msg, steps.share(fleet.train), len(fleet.train))


def query_linear_errors(msg: Message, context: Context) -> Message:
    """Step 2 on a node: its share of the second sum, for the server's ``linear-total``."""
    config = _config(msg)
    fleet = load_fleet(context.node_config)
    steps = _steps(config, context, 2)
    total = _vector(config, "linear-total")
    _release_once(context, 2, steps.privacy is not None)
    return _reply(msg, steps.errors(fleet.train, total), len(fleet.train))


def _rmse(predicted: np.ndarray, cells: list[battery_fl.Cell]) -> float | None:
    """RMSE over the labelled ``cells`` (a cell without a known life is left out; ``None``
    when none has one)."""
    truth = np.array([c.cycle_life() or math.nan for c in cells], dtype=np.float64)
    labelled = np.isfinite(truth)
    if not labelled.any():
        return None
    return float(np.sqrt(np.mean((predicted[labelled] - truth[labelled]) ** 2)))


def query_linear_fit(msg: Message, context: Context) -> Message:
    """Step 3 on a node: its own models from both sums, kept in ``Context.state``; replies
    with their RMSE on its test cells."""
    config = _config(msg)
    fleet = load_fleet(context.node_config)
    own = _steps(config, context, 3).fleet(
        fleet.train, _vector(config, "linear-total"), _vector(config, "linear-errors")
    )
    context.state[LINEAR_STATE_KEY] = ConfigRecord(
        {
            "local": own.local.to_json(),
            "personalized": own.personalized.to_json(),
            "shared": own.shared.to_json(),
            "global": own.global_model.to_json(),
            "choices": json.dumps(own.choices),
        }
    )
    metrics: dict[str, Any] = {"num-examples": len(fleet.test)}
    local = _rmse(own.local.predict(fleet.test), fleet.test) if fleet.test else None
    personalized = _rmse(own.predict(fleet.test), fleet.test) if fleet.test else None
    if local is not None and personalized is not None:
        metrics["local-rmse"], metrics["personalized-rmse"] = local, personalized
        metrics.update(_interval_metrics(own, fleet, float(config["interval-coverage"])))  # type: ignore[arg-type]
    return Message(RecordDict({"metrics": MetricRecord(metrics)}), reply_to=msg)


def _interval_metrics(
    own: battery_fl.LinearFleet, fleet: FleetCells, coverage: float
) -> dict[str, float]:
    """Coverage, mean width (cycles) and flagged count of the node's conformal intervals on
    its test cells, calibrated on its training cells; empty when it has too few of them."""
    try:
        _, lower, upper, ood = own.predict_intervals(fleet.test, fleet.train, coverage=coverage)
    except battery_fl.DataError as err:
        _log.warning("no %.0f %% intervals on this node: %s", 100 * coverage, err)
        return {}
    truth = [c.cycle_life() or math.nan for c in fleet.test]
    s = battery_fl.interval_summary(lower, upper, ood, truth)
    if not s["labelled"]:  # (a cell without a known life neither covers nor misses)
        return {}
    return {
        "covered": s["covered"],
        "covered-cells": s["labelled"],
        "mean-width": s["mean_width"],
        "out-of-distribution": s["flagged"],
    }


def sum_replies(
    grid: Grid,
    nodes: list[int],
    config: ConfigRecord,
    action: str,
    dim: int,
    *,
    workflow: SecAggWorkflow | None,
    round_id: int,
    timeout: float,
) -> np.ndarray:
    """The sum over ``nodes`` of their ``dim`` values in reply to ``query.<action>``
    (securely with ``workflow``); every node must answer (a sum missing a fleet is not the
    federation's)."""
    payload = RecordDict({"config": config})
    message_type = f"{MessageType.QUERY}.{action}"
    if workflow is not None:
        total, survivors = workflow.secure_sum(
            grid, nodes, payload, message_type=message_type, round_id=round_id, dim=dim
        )
        if len(survivors) != len(nodes):
            raise battery_fl.SecAggError(
                f"{action}: {len(nodes) - len(survivors)} node(s) dropped out"
            )
        return np.asarray(total, dtype=np.float64)
    messages = [
        Message(payload, dst_node_id=n, message_type=message_type, group_id=action) for n in nodes
    ]
    vectors = [_reply_vector(r) for r in grid.send_and_receive(messages, timeout=timeout)]
    if len(vectors) != len(nodes) or any(v.shape != (dim,) for v in vectors):
        raise config_error(action, f"expected {dim} values from each of {len(nodes)} nodes")
    return np.sum(vectors, axis=0)


def _reply_vector(reply: Message) -> np.ndarray:
    if reply.has_error():
        raise config_error(
            "linear", f"node {reply.metadata.src_node_id} failed: {reply.error.reason}"
        )
    (vector,) = reply.content["arrays"].to_numpy_ndarrays()  # type: ignore[union-attr]
    return np.asarray(vector, dtype=np.float64)


def pooled_intervals(per_node: dict[str, dict[str, float]]) -> dict[str, float | None]:
    """``covered`` and ``mean_width`` over the test cells of every node that reported them
    (:func:`battery_fl.pooled_interval_summary` of the nodes' metrics); ``None`` without
    any."""
    summaries = [
        {
            "covered": m["covered"],
            "labelled": int(m["covered-cells"]),
            "mean_width": m["mean-width"],
            "flagged": int(m.get("out-of-distribution", 0)),
            "cells": int(m["num-examples"]),
        }
        for m in per_node.values()
        if m.get("covered-cells", 0) > 0
    ]
    if not summaries:
        return {"covered": None, "mean_width": None}
    pooled = battery_fl.pooled_interval_summary(summaries)
    return {"covered": pooled["covered"], "mean_width": pooled["mean_width"]}


def run_linear_federation(
    grid: Grid, settings: FederationSettings, nodes: list[int]
) -> dict[str, Any]:
    """The linear recipe on ``grid`` over ``nodes`` (see the module docs); returns the
    summary (also ``result.json`` with ``output-dir``)."""
    started = time.monotonic()
    workflow = None
    if settings.secure_aggregation:
        workflow = SecAggWorkflow(
            threshold=settings.secagg_threshold or None,
            neighbours=settings.secagg_neighbours or None,
            timeout=settings.timeout,
        )
    config: dict[str, Any] = {
        "fleets": len(nodes),
        "secure-aggregation": settings.secure_aggregation,
        "per-chemistry-choice": settings.per_chemistry_choice,
        "choice-margin": settings.choice_margin,
        "record-epsilon": settings.record_epsilon,
        "interval-coverage": settings.interval_coverage,
    }
    steps = battery_fl.LinearSteps(
        len(nodes),
        secure_aggregation=settings.secure_aggregation,
        per_chemistry_choice=settings.per_chemistry_choice,
        choice_margin=settings.choice_margin,
        epsilon=settings.record_epsilon or None,
    )
    total = sum_replies(
        grid,
        nodes,
        ConfigRecord(config),
        SHARE_ACTION,
        steps.share_len,
        round_id=1,
        workflow=workflow,
        timeout=settings.timeout,
    )
    config["linear-total"] = [float(v) for v in total]
    dim = steps.errors_len(total)
    errors = sum_replies(
        grid,
        nodes,
        ConfigRecord(config),
        ERRORS_ACTION,
        dim,
        round_id=2,
        workflow=workflow,
        timeout=settings.timeout,
    )
    config["linear-errors"] = [float(v) for v in errors]
    model, error = steps.global_model(total, errors)
    payload = RecordDict({"config": ConfigRecord(config)})
    fit = f"{MessageType.QUERY}.{FIT_ACTION}"
    messages = [
        Message(payload, dst_node_id=n, message_type=fit, group_id=FIT_ACTION) for n in nodes
    ]
    per_node: dict[str, dict[str, float]] = {}
    for reply in grid.send_and_receive(messages, timeout=settings.timeout):
        node = str(reply.metadata.src_node_id)
        if reply.has_error():
            _log.warning("linear fit: node %s failed: %s", node, reply.error.reason)
            continue
        per_node[node] = {k: float(v) for k, v in reply.content["metrics"].items()}  # type: ignore[union-attr,arg-type]
    summary = {
        "recipe": "linear",
        "nodes": len(nodes),
        "cells": int(round(total[0])) if settings.record_epsilon <= 0 else None,
        "global_feature_set": model.feature_set,
        "global_error": error,
        "privacy": steps.privacy,
        "per_node": per_node,
        "interval_coverage": settings.interval_coverage,
        **pooled_intervals(per_node),
        "seconds": time.monotonic() - started,
    }
    _log.info(
        "battery-fl linear: %s", json.dumps({k: v for k, v in summary.items() if k != "per_node"})
    )
    if settings.output_dir:
        out = Path(settings.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "linear-global.json").write_text(model.to_json())
        (out / "result.json").write_text(json.dumps(summary, indent=1))
    return summary
