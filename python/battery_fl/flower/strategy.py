"""A Flower Message-API strategy that aggregates with battery-fl's Rust aggregators.

:class:`BatteryFlStrategy` subclasses ``flwr.serverapp.strategy.FedAvg`` (node sampling,
messages, metric aggregation) and replaces the aggregation:

- every round without secure aggregation first drops the updates the core refuses
  (:func:`battery_fl.partition_updates`: names and shapes, non-finite values, a delta longer
  than ``max_delta_norm``), as :class:`battery_fl.Simulation` does; the history records them
  by node (``rejected``). The bound is for one update, never for a released mean (the
  aggregator, as the Simulation's, carries none of its own). Under secure aggregation the
  server sees only the masked sum and cannot check one update;
- plain: ``aggregator.aggregate(updates, weights, current=global)`` with any of
  :class:`battery_fl.FedAvg`, ``FedProx``, ``FedAdam``, ``FedYogi``, ``FedAdagrad``,
  ``FedMedian``, ``FedTrimmedAvg`` (weights = the ``num-examples`` metric);
- with DP (:class:`DpConfig`): updates ``w - w_global`` are clipped (the nodes clip too and
  add their share of noise in ``local``/``distributed`` mode; distributed noise is sized for
  the fewest survivors secure aggregation accepts, and refused without it), summed with
  equal weights and divided by the number of nodes *sampled* (a fixed, public denominator,
  never the number of replies), noised on the server in ``central`` mode (std ``zC/m``),
  and the mean is handed to the aggregator (FedAvg/FedProx add it; the FedOpt family steps
  with it). Each round is accounted in our :class:`battery_fl.dp.RdpAccountant` with the
  noise multiplier the survivors really carry and sampling rate 1 (nodes are sampled by the
  server and known to it, so no subsampling amplification is claimed) *before* the model is
  released: the train metrics report ``epsilon``, and an exhausted budget raises
  :class:`battery_fl.PrivacyError`. With ``DpConfig.adaptive`` (central mode without secure
  aggregation) the server clips each update to the round's norm, and the noisy count of
  updates that fit under it moves the norm for the next round (Andrew et al. 2021, the core's
  ``ServerDp``, as :class:`battery_fl.Simulation`); the nodes are then sent no clipping norm
  (clipping on the node would hide whether the update fit), the count is accounted too, and
  the history records each round's ``clipping-norm``;
- with secure aggregation (:class:`~battery_fl.flower.secagg.SecAggWorkflow`): each training
  round runs our SecAgg+ and the server only sees the survivors' weighted mean update.

>>> import battery_fl
>>> s = BatteryFlStrategy(battery_fl.FedAvg(), dp=DpConfig(noise_multiplier=1.0, clipping_norm=0.5))
>>> s.epsilon is None, s.dp.mode
(True, 'central')
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg, Result
from flwr.serverapp.strategy.strategy_utils import sample_nodes

import battery_fl
from battery_fl import dp as _dp
from battery_fl.flower.secagg import SecAggWorkflow
from battery_fl.flower.settings import UNCLIPPED_BOUND, config_error

__all__ = ["BatteryFlStrategy", "DpConfig"]

_log = logging.getLogger("flwr")
#: The core's DP defaults (``DpConfig``).
_DP = _dp.default_config()


@dataclass(frozen=True)
class DpConfig:
    """Differential privacy of a run: clip every update to ``clipping_norm`` (C) and add
    Gaussian noise of multiplier ``noise_multiplier`` (z) — on the server (``central``), or
    on each node (``local``: zC each; ``distributed``: zC/√m each, meant for secure
    aggregation); ``mode`` and ``target_delta`` (the δ of the reported ε) default to the
    core's (``battery_fl.dp.default_config()``); ``max_epsilon`` stops the run
    (:class:`battery_fl.PrivacyError`) before a round would exceed it; ``seed`` makes the
    server's noise reproducible (tests only); ``adaptive`` (the core's adaptive-clipping
    settings, :func:`battery_fl.dp.default_adaptive_config`) moves ``clipping_norm`` (then
    the first round's) round by round, in ``central`` mode without secure aggregation."""

    noise_multiplier: float
    clipping_norm: float
    mode: str = _DP["mode"]
    target_delta: float = _DP["target_delta"]
    max_epsilon: float | None = None
    seed: int | None = None
    adaptive: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        _dp.RoundNoise(self.mode, self.noise_multiplier, self.clipping_norm, 1)


class BatteryFlStrategy(FedAvg):
    """FedAvg's messaging with our aggregation, DP and secure aggregation (see the module
    docs). Nodes are sampled by FedAvg's ``fraction_train`` (unseeded), or, with
    ``clients_per_round``, by the core's seeded selection (:func:`battery_fl.select_clients`
    with ``seed``, over the connected nodes in fleet order: by ``fleet_indices``, each node's
    fleet index as the server collected it (``query.fleet``), then by node id): the fleets
    :class:`battery_fl.Simulation` trains each round when every node is connected.
    ``aggregator`` defaults to the core's default strategy
    (:func:`battery_fl.aggregator_for`: FedProx, whose ``proximal-mu`` the nodes are sent);
    ``output_dir`` (optional) receives ``round-NNN.npz`` (the global weights after each
    round) and ``history.json`` (one record per round: its training and, when nodes evaluate,
    the pooled ``rmse`` and ``personalized-rmse``)."""

    def __init__(
        self,
        aggregator: Any = None,
        *,
        fraction_train: float = 1.0,
        fraction_evaluate: float = 1.0,
        min_train_nodes: int = 2,
        min_evaluate_nodes: int = 2,
        min_available_nodes: int = 2,
        dp: DpConfig | None = None,
        secure_aggregation: SecAggWorkflow | None = None,
        output_dir: str | Path | None = None,
        clients_per_round: int | None = None,
        seed: int = 0,
        max_delta_norm: float | None = None,
        fleet_indices: Mapping[int, int] | None = None,
    ) -> None:
        if max_delta_norm is not None and secure_aggregation is not None:
            raise config_error(
                "max-delta-norm",
                "under secure aggregation the server sees only the masked sum: it cannot check "
                "one node's update",
            )
        if max_delta_norm is not None and dp is not None and dp.adaptive is not None:
            raise config_error("max-delta-norm", UNCLIPPED_BOUND)
        self.max_delta_norm = max_delta_norm
        if clients_per_round is not None:
            if fraction_train != 1.0:
                raise config_error(
                    "fraction-train",
                    "nodes are sampled by clients-per-round (the core's seeded selection): "
                    "leave fraction-train at 1",
                )
            if clients_per_round < 1:
                raise config_error("clients-per-round", f"must be >= 1, got {clients_per_round}")
        self.clients_per_round = clients_per_round
        self.seed = seed
        self.fleet_indices = dict(fleet_indices or {})
        super().__init__(
            fraction_train=fraction_train,
            fraction_evaluate=fraction_evaluate,
            min_train_nodes=min_train_nodes,
            min_evaluate_nodes=min_evaluate_nodes,
            min_available_nodes=min_available_nodes,
        )
        if dp is not None:
            _dp.check_mode(dp.mode, secure_aggregation=secure_aggregation is not None)
        self.aggregator = aggregator if aggregator is not None else battery_fl.aggregator_for()
        private = dp is not None or secure_aggregation is not None
        if private and not battery_fl.strategy_needs_only_the_sum(self.aggregator.name):
            raise config_error(
                "aggregator", f"{self.aggregator.name} cannot be used with DP or secure aggregation"
            )
        self.dp = dp
        self.secure_aggregation = secure_aggregation
        self.output_dir = Path(output_dir) if output_dir else None
        # the coordinator's DP (clipping, fixed denominator, accounting, server noise): core
        self.server_dp = (
            _dp.ServerDp(
                dp.noise_multiplier,
                dp.clipping_norm,
                mode=dp.mode,
                target_delta=dp.target_delta,
                max_epsilon=dp.max_epsilon,
                seed=dp.seed,
                secure_aggregation=secure_aggregation is not None,
                adaptive=dp.adaptive,
            )
            if dp is not None
            else None
        )
        self.history: list[dict[str, Any]] = []
        self._global: list[np.ndarray] = []
        self._sampled = 0

    def summary(self) -> None:
        """Log the configuration."""
        super().summary()
        _log.info(
            "\t└──> battery-fl: aggregator %s, dp %s, secure aggregation %s",
            self.aggregator.name,
            self.dp,
            self.secure_aggregation,
        )

    # ----------------------------------------------------------------------- training

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """FedAvg's messages; remembers the global weights, tells the nodes FedProx's
        ``proximal-mu`` when the aggregator is FedProx and the config has none, and, with DP,
        the clipping norm and their noise std (none with adaptive clipping: the server clips,
        and a node clipping first would hide whether its update fit)."""
        if isinstance(self.aggregator, battery_fl.FedProx) and "proximal-mu" not in config:
            config["proximal-mu"] = self.aggregator.mu
        if self.clients_per_round is None:
            messages = list(super().configure_train(server_round, arrays, config, grid))
        else:
            messages = self._selected_messages(server_round, arrays, config, grid)
        self._global = arrays.to_numpy_ndarrays()
        self._sampled = len(messages)
        if self.server_dp is not None and messages:
            # (checked before any node trains: adaptive clipping's count noise must exceed z/2)
            clipping_norm, client_std = self.server_dp.client_noise(
                len(messages), min_survivors=self._min_survivors(len(messages))
            )
            if self.dp is None or self.dp.adaptive is None:
                config["dp-clipping-norm"] = clipping_norm  # shared by every message
                config["dp-noise-std"] = client_std
        return messages

    def _selected_messages(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> list[Message]:
        """Training messages to the nodes :func:`battery_fl.select_clients` picks among the
        connected ones in fleet order (waiting, as FedAvg does, for ``min_available_nodes`` and
        at least ``clients_per_round``)."""
        assert self.clients_per_round is not None
        wanted = max(self.min_available_nodes, self.clients_per_round)
        _, available = sample_nodes(grid, wanted, 0)  # (waits; samples none)
        # the Simulation's fleet order: by fleet index (a node's partition-id), then node id
        nodes = sorted(available, key=lambda n: (self.fleet_indices.get(n, math.inf), n))
        picked = battery_fl.select_clients(
            self.seed, server_round, len(nodes), self.clients_per_round
        )
        chosen = [nodes[i] for i in picked]
        _log.info(
            "configure_train: selected nodes %s (of %d, seed %d)", chosen, len(nodes), self.seed
        )
        config["server-round"] = server_round
        record = RecordDict({self.arrayrecord_key: arrays, self.configrecord_key: config})
        return list(self._construct_messages(record, chosen, MessageType.TRAIN))

    @property
    def epsilon(self) -> float | None:
        """Epsilon spent so far (``None`` without DP or before the first round)."""
        return self.server_dp.epsilon if self.server_dp is not None else None

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Aggregate the nodes' weights with our aggregator (see the module docs)."""
        valid, _ = self._check_and_log_replies(replies, is_train=True)
        if not valid:
            return None, None
        updates = [m.content["arrays"].to_numpy_ndarrays() for m in valid]  # type: ignore[union-attr]
        # the core's update policy (shapes, finite values, max_delta_norm), as the Simulation's
        kept, refused = battery_fl.partition_updates(
            updates, self._global, max_delta_norm=self.max_delta_norm
        )
        rejected = {str(valid[i].metadata.src_node_id): why for i, why in refused.items()}
        for node, why in rejected.items():
            _log.warning("round %d: update of node %s rejected: %s", server_round, node, why)
        if not kept:
            self._finish_round(server_round, None, {"survivors": [], "rejected": rejected})
            return None, None
        valid, updates = [valid[i] for i in kept], [updates[i] for i in kept]
        contents = [m.content for m in valid]
        extra: dict[str, float] = {"nodes": float(len(valid))}
        if self.server_dp is None:
            weights = [float(c["metrics"][self.weighted_by_key]) for c in contents]  # type: ignore[index,arg-type]
            new = self.aggregator.aggregate(updates, weights, current=self._global)
        else:
            deltas = [
                [u - g for u, g in zip(update, self._global, strict=True)] for update in updates
            ]
            sampled = max(self._sampled, len(deltas))
            extra["clipping-norm"] = self.server_dp.clipping_norm  # this round's
            mean = self.server_dp.release_updates(
                deltas, sampled, min_survivors=self._min_survivors(sampled)
            )
            new = self._apply_mean(mean, extra)
        metrics = self.train_metrics_aggr_fn(contents, self.weighted_by_key)
        for key, value in extra.items():
            metrics[key] = value
        # the nodes whose update went in (as a secure round's survivors), and those refused
        survivors = sorted(int(m.metadata.src_node_id) for m in valid)
        self._finish_round(
            server_round, new, {**extra, "survivors": survivors, "rejected": rejected}
        )
        return ArrayRecord(new), metrics

    def _min_survivors(self, sampled: int) -> int | None:
        """The fewest survivors secure aggregation accepts of ``sampled`` nodes (distributed
        noise is sized for them); ``None`` without it."""
        if self.secure_aggregation is None or sampled < 3:
            return None
        return int(self.secure_aggregation.min_survivors(sampled))

    def _apply_mean(self, mean: list[np.ndarray], extra: dict[str, float]) -> list[np.ndarray]:
        """Apply a released mean update with the aggregator (FedAvg/FedProx add it, the FedOpt
        family steps with it); records ``epsilon``."""
        if self.epsilon is not None:
            extra["epsilon"] = self.epsilon
        moved = [(g + d).astype(np.float32) for g, d in zip(self._global, mean, strict=True)]
        if isinstance(self.aggregator, battery_fl.FedAvg | battery_fl.FedProx):
            # added as the Simulation adds it (an update policy is for one node's update, not
            # for a released mean that carries the server's noise); a server optimizer steps
            # with it, under its own policy only, as the Simulation's does
            return moved
        return self.aggregator.aggregate([moved], [1.0], current=self._global)

    def _finish_round(
        self, server_round: int, arrays: list[np.ndarray] | None, info: dict[str, Any]
    ) -> None:
        record = {"round": server_round, **info, "aggregated": arrays is not None}
        self.history.append(record)
        if self.output_dir is None:
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)
        if arrays is not None:
            np.savez(self.output_dir / f"round-{server_round:03d}.npz", *arrays)
        self._write_history()

    def _write_history(self) -> None:
        if self.output_dir is not None:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            (self.output_dir / "history.json").write_text(json.dumps(self.history, indent=1))

    # ----------------------------------------------------------------------- evaluation

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        """The pooled RMSE over every node's test cells (``sqrt(Σ n·rmse² / Σ n)``) of the
        global model (``rmse``) and, when every node reports it, of the nodes' own models
        (``personalized-rmse``); both also go into the round's :attr:`history` record, with
        each node's own (``node-rmse``: node id -> its ``rmse`` and ``personalized-rmse`` on
        its test cells)."""
        valid, _ = self._check_and_log_replies(replies, is_train=False)
        if not valid:
            return None
        metrics = [m.content["metrics"] for m in valid]
        n = np.array([float(m[self.weighted_by_key]) for m in metrics])  # type: ignore[arg-type]
        total = max(float(np.sum(n)), 1.0)

        def pooled(key: str) -> float:
            values = np.array([float(m[key]) for m in metrics])  # type: ignore[arg-type]
            return math.sqrt(float(np.sum(n * values**2) / total))

        out = {"rmse": pooled("rmse")}
        if all("personalized-rmse" in m for m in metrics):
            out["personalized-rmse"] = pooled("personalized-rmse")
        # record-level DP-SGD: ε per cell each node has spent (the history keeps every node's,
        # the metrics the largest)
        spent = {
            int(m.metadata.src_node_id): float(m.content["metrics"]["record-epsilon"])  # type: ignore[index,arg-type]
            for m in valid
            if "record-epsilon" in m.content["metrics"]  # type: ignore[operator]
        }
        if spent:
            out["record-epsilon"] = max(spent.values())
        per_node = {
            int(m.metadata.src_node_id): {
                key: float(m.content["metrics"][key])  # type: ignore[index,arg-type]
                for key in ("rmse", "personalized-rmse")
                if key in m.content["metrics"]  # type: ignore[operator]
            }
            for m in valid
        }
        extra: dict[str, Any] = {"node-rmse": per_node}
        if spent:
            extra["node-record-epsilon"] = spent
        self._record_evaluation(server_round, out, extra)
        return MetricRecord({**out, "num-examples": int(np.sum(n))})

    def _record_evaluation(
        self, server_round: int, metrics: dict[str, float], extra: dict[str, Any] | None = None
    ) -> None:
        """Add a round's evaluation (and ``extra`` entries) to its history record (a new
        record if it has none)."""
        record = next((r for r in reversed(self.history) if r["round"] == server_round), None)
        if record is None:
            record = {"round": server_round}
            self.history.append(record)
        record.update(metrics)
        record.update(extra or {})
        self._write_history()

    # ----------------------------------------------------------------------- rounds

    def start(
        self,
        grid: Grid,
        initial_arrays: ArrayRecord,
        num_rounds: int = 3,
        timeout: float = 3600,
        train_config: ConfigRecord | None = None,
        evaluate_config: ConfigRecord | None = None,
        evaluate_fn: Callable[[int, ArrayRecord], MetricRecord | None] | None = None,
    ) -> Result:
        """Flower's round loop; with secure aggregation, each training round is one run of
        :meth:`SecAggWorkflow.aggregate` (a round whose protocol fails is skipped: the
        global weights stay)."""
        if self.secure_aggregation is None:
            return super().start(
                grid,
                initial_arrays,
                num_rounds,
                timeout,
                train_config,
                evaluate_config,
                evaluate_fn,
            )
        train_config = ConfigRecord() if train_config is None else train_config
        evaluate_config = ConfigRecord() if evaluate_config is None else evaluate_config
        result = Result(arrays=initial_arrays)
        arrays = initial_arrays
        if evaluate_fn and (res := evaluate_fn(0, initial_arrays)) is not None:
            result.evaluate_metrics_serverapp[0] = res
        for server_round in range(1, num_rounds + 1):
            _log.info("[ROUND %s/%s] (secure aggregation)", server_round, num_rounds)
            new, metrics = self._secure_round(grid, server_round, arrays, train_config)
            if new is not None:
                arrays = result.arrays = new
            if metrics is not None:
                result.train_metrics_clientapp[server_round] = metrics
            replies = grid.send_and_receive(
                self.configure_evaluate(server_round, arrays, evaluate_config, grid),
                timeout=timeout,
            )
            if (agg := self.aggregate_evaluate(server_round, replies)) is not None:
                result.evaluate_metrics_clientapp[server_round] = agg
            if evaluate_fn and (res := evaluate_fn(server_round, arrays)) is not None:
                result.evaluate_metrics_serverapp[server_round] = res
        return result

    def _secure_round(
        self, grid: Grid, server_round: int, arrays: ArrayRecord, config: ConfigRecord
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        assert self.secure_aggregation is not None
        messages = list(self.configure_train(server_round, arrays, config, grid))
        if not messages:
            return None, None
        shapes = [a.shape for a in self._global]
        dim = int(sum(int(np.prod(s)) for s in shapes))
        try:
            result = self.secure_aggregation.aggregate(
                grid,
                [int(m.metadata.dst_node_id) for m in messages],
                messages[0].content,
                message_type=MessageType.TRAIN,
                round_id=server_round,
                dim=dim,
                mode="delta",
            )
        except battery_fl.SecAggError as err:
            _log.warning("round %d lost: %s", server_round, err)
            self._finish_round(server_round, None, {"survivors": [], "error": str(err)})
            return None, MetricRecord({"nodes": 0.0})
        flat = np.asarray(result.mean, dtype=np.float32)
        offsets = np.cumsum([0] + [int(np.prod(s)) for s in shapes])
        mean = [
            flat[a:b].reshape(s) for a, b, s in zip(offsets[:-1], offsets[1:], shapes, strict=True)
        ]
        survivors = len(result.survivors)
        if self.server_dp is not None:  # equal weights: the sum over the sampled count
            sampled = max(self._sampled, survivors)
            mean = self.server_dp.release(
                mean, survivors, sampled, min_survivors=self._min_survivors(sampled)
            )
        extra: dict[str, float] = {"nodes": float(survivors)}
        new = self._apply_mean(mean, extra)
        self._finish_round(
            server_round, new, {**extra, "survivors": [int(v) for v in result.survivors]}
        )
        values: dict[str, int | float | list[int] | list[float]] = dict(extra)
        return ArrayRecord(new), MetricRecord(values)
