"""Run settings (Flower run config) and a fleet's own cells (Flower node config).

The **run config** (``[tool.flwr.app.config]`` of the Flower app, or ``flwr run
--run-config``) is flat, kebab-case, with two nested tables for the model: ``model.*`` are
:class:`battery_fl.BatLiNet` keyword settings and ``featurizer.*`` are
:class:`battery_fl.Featurizer` ones (``model.conv-channels = 4``, ``featurizer.interp-dim =
16``; ``model.input-channels`` is a comma-separated string such as ``"1"``), on top of the
named recipe ``batlinet-preset`` (:func:`battery_fl.batlinet_preset`: ``default``, the
published settings; ``synthetic``, the main job's on its synthetic fleets; ``matr`` for
MATR-like discharge-only cells, the recipe the main job and ``eval_matr`` use). Everything
else is a field of :class:`FederationSettings`. The settings a Flower run shares with
:class:`battery_fl.Simulation` default to the core's values
(:meth:`battery_fl.Simulation.default_config`, :data:`CORE_DEFAULTS`).

The **node config** (``flower-supernode --node-config``) tells each SuperNode where its
fleet's cells are (see :func:`load_fleet`).

>>> s = FederationSettings.from_run_config({"num-server-rounds": 2, "model.conv-channels": 4,
...                                         "featurizer.interp-dim": 16, "featurizer.cycles": 12})
>>> s.num_server_rounds, s.build_model().input_shape
(2, (6, 12, 16))
>>> FederationSettings(batlinet_preset="matr").build_model().input_shape
(1, 99, 200)
>>> fleet = load_fleet({"synthetic-fleet": 1, "synthetic-fleets": 3, "synthetic-cells": 5,
...                     "synthetic-cycles": 12, "synthetic-test-cells": 1})
>>> fleet.index, len(fleet.train), len(fleet.test)
(1, 4, 1)
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import battery_fl
from battery_fl import synthetic

# (the names the core accepts for ``strategy``, ``personalization`` and ``label_scope``,
# ``Strategy::ALL`` and so on, re-exported)
from battery_fl._core import (
    BATLINET_PRESETS,
    DEFAULT_COVERAGE,
    LABEL_SCOPES,
    PERSONALIZATIONS,
    STRATEGIES,
)

__all__ = [
    "CORE_DEFAULTS",
    "LABEL_SCOPES",
    "PERSONALIZATIONS",
    "RECIPES",
    "SHARED_SETTINGS",
    "STRATEGIES",
    "FederationSettings",
    "FleetCells",
    "config_error",
    "fleet_index",
    "load_fleet",
    "model_from_config",
    "model_to_config",
]

#: The core's federation defaults (``FederationConfig::default()``), as
#: :meth:`battery_fl.Simulation.default_config` gives them.
CORE_DEFAULTS: dict[str, Any] = battery_fl.Simulation.default_config()
_OPT = CORE_DEFAULTS["server_optimizer"]
#: The core's DP and secure-aggregation defaults (``DpConfig``, ``SecAggConfig``).
_DP = battery_fl.dp.default_config()
#: The core's record-level DP-SGD defaults (``DpSgdConfig``).
_RECORD = battery_fl.dp.default_record_config()
#: The core's adaptive-clipping defaults (``AdaptiveClipConfig``).
_ADAPTIVE = battery_fl.dp.default_adaptive_config()
_SECAGG = battery_fl.secagg.default_config()

#: :class:`FederationSettings` fields that are core federation settings, each with the
#: ``default_config()`` key it takes its default from (``server_*`` are in
#: ``server_optimizer``).
SHARED_SETTINGS = {
    "num_server_rounds": "rounds",
    "clients_per_round": "clients_per_round",
    "strategy": "strategy",
    "proximal_mu": "proximal_mu",
    "trimmed_beta": "trimmed_beta",
    "max_delta_norm": "max_delta_norm",
    "server_eta": "server_optimizer.eta",
    "server_beta1": "server_optimizer.beta1",
    "server_beta2": "server_optimizer.beta2",
    "server_tau": "server_optimizer.tau",
    "local_epochs": "local_epochs",
    "seed": "seed",
    "inference_references": "inference_references",
    "personalization": "personalization",
    "ditto_lambda": "ditto_lambda",
    "personal_epochs": "personal_epochs",
    "validation_fraction": "validation_fraction",
    "calibration_holdout": "calibration_holdout",
    "choice_margin": "choice_margin",
    "label_scope": "label_scope",
}

#: The :class:`FederationSettings` field of each core setting key (the inverse of
#: :data:`SHARED_SETTINGS`), to name the core's errors by run-config key.
_SHARED_BY_CORE_KEY = {key: name for name, key in SHARED_SETTINGS.items()}

#: Model recipes: BatLiNet over training rounds, or the linear early-life model fitted from
#: two secure sums (:mod:`battery_fl.flower.linear`).
RECIPES = ("batlinet", "linear")

#: Optional settings and the run-config value that stands for ``None`` (TOML has no null):
#: ``personal-epochs = 0`` means the core's default, ``local-epochs``; ``clients-per-round = 0``
#: every node (Flower's ``fraction-train`` sampling); ``max-delta-norm = 0`` no bound.
_NONE_IN_RUN_CONFIG: dict[str, int] = {
    "personal_epochs": 0,
    "clients_per_round": 0,
    "max_delta_norm": 0,
    "dp_adaptive_count_noise_std": 0,
}

#: Why an update bound and adaptive clipping are refused together on the Flower path.
UNCLIPPED_BOUND = (
    "with dp-adaptive the nodes send unclipped updates: the bound would be checked before "
    "clipping (the Simulation checks clipped ones) and a refused update's exact norm would "
    "reach the history"
)

#: Run-config keys that were renamed: the old key is refused rather than silently ignored.
_RENAMED = {"secagg-neighbors": "secagg-neighbours", "auto-margin": "choice-margin"}

_Scalar = bool | int | float | str


def privacy_error(reason: str) -> battery_fl.PrivacyError:
    """A :class:`battery_fl.PrivacyError` (``kind`` set as the native module sets it)."""
    err = battery_fl.PrivacyError(reason)
    err.kind = "privacy"
    return err


def node_record_epsilon(config: Mapping[str, object], node_config: Mapping[str, object]) -> float:
    """The record-level ε per cell the server asks for in ``config`` (0: off), checked on the
    node: one whose own ``record-max-epsilon`` is above 0 refuses a server that asks for no
    record privacy or for a larger ε.

    >>> node_record_epsilon({"record-epsilon": 2.0}, {"record-max-epsilon": 4.0})
    2.0
    >>> node_record_epsilon({}, {"record-max-epsilon": 4.0})
    Traceback (most recent call last):
    ...
    battery_fl.PrivacyError: the server asks for record-epsilon 0.0; this node releases only with record-level DP at epsilon <= 4.0 (record-max-epsilon)
    """
    epsilon = float(config.get("record-epsilon", 0.0))  # type: ignore[arg-type]
    cap = float(node_config.get("record-max-epsilon", 0.0))  # type: ignore[arg-type]
    if cap > 0 and not 0 < epsilon <= cap:
        raise privacy_error(
            f"the server asks for record-epsilon {epsilon}; this node releases only with "
            f"record-level DP at epsilon <= {cap} (record-max-epsilon)"
        )
    return epsilon


def config_error(field_name: str, reason: str) -> battery_fl.ConfigError:
    """A :class:`battery_fl.ConfigError` about ``field_name`` (``kind``/``field`` set as the
    native module sets them)."""
    err = battery_fl.ConfigError(f"invalid configuration `{field_name}`: {reason}")
    err.kind = "invalid_config"
    err.field = field_name  # type: ignore[attr-defined]
    return err


def _coerce(name: str, value: Any, kind: type) -> Any:
    """``value`` as ``kind`` (int/float/bool/str); Flower's config parser gives TOML types."""
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif kind is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif kind is str and isinstance(value, str):
        return value
    raise config_error(name, f"expected {kind.__name__}, got {value!r}")


@dataclass(frozen=True)
class FederationSettings:
    """Everything a battery-fl Flower run is configured with (see the module docs).

    Field ``num_server_rounds`` is run-config key ``num-server-rounds``, and so on.
    With ``secure_aggregation``, the statistics round is a secure sum too unless
    ``secure_statistics`` is off (then each node's label and input statistics reach the
    server). ``secagg_max_weight = 0`` uses the federation's total number of cells (known after the
    statistics round) as the public bound W on a node's weight; DP is on when
    ``dp_clipping_norm > 0``; ``dp_max_epsilon = 0`` means no budget; ``dp_seed = -1`` draws
    noise from the OS. ``dp_adaptive`` turns on adaptive clipping as :class:`battery_fl.Simulation`
    runs it, in central mode without secure aggregation (the server must see each update's
    norm) and without ``max_delta_norm``: ``dp_clipping_norm`` is then the first round's norm,
    ``dp_adaptive_target_unclipped_quantile``, ``dp_adaptive_learning_rate`` and
    ``dp_adaptive_count_noise_std`` (``None``, ``0`` in the run config: ``m / 20`` for ``m``
    sampled nodes, which must exceed ``dp_noise_multiplier / 2``) default to the core's, and
    the history records each round's ``clipping-norm``. The fields of :data:`SHARED_SETTINGS` default to the core's values
    (as :class:`battery_fl.Simulation`); the clients add the FedProx term ``proximal_mu``
    with ``strategy = "fed_prox"`` only; ``max_delta_norm`` (``0`` in the run config: no bound)
    makes the server drop an update whose delta is longer, as the Simulation does (refused with
    secure aggregation, which hides each update). ``personalization`` (one of
    :data:`PERSONALIZATIONS`, with ``ditto_lambda``, ``personal_epochs``,
    ``validation_fraction`` and ``choice_margin``) is how each node turns the federation into its own model
    (:class:`battery_fl.FleetClient`); ``calibration_holdout`` holds ``validation_fraction`` of
    each node's training cells out in every mode to calibrate its intervals (``auto`` and
    ``auto_head`` always do); ``clients_per_round`` (``0`` in the run config: every node, or
    Flower's unseeded ``fraction_train``) trains that many nodes per round, picked by the
    core's seeded selection (:func:`battery_fl.select_clients` with ``seed``, nodes in
    fleet order (each node's :func:`fleet_index`, which the server asks for first), as
    :class:`battery_fl.Simulation` picks its fleets);
    ``personal_epochs = None`` (``0`` in the run config)
    means ``local_epochs``. ``label_scope`` (one of :data:`LABEL_SCOPES`) says whether the
    nodes train and read the shared weights with the federation's label transform or each
    with its own. ``recipe = "linear"`` runs :func:`battery_fl.federate_linear`'s steps
    instead of BatLiNet rounds (:mod:`battery_fl.flower.linear`; each node keeps its own
    choice), with record-level DP at ``record_epsilon`` per cell when it is above 0 (each
    node keys and sizes its noise itself, see :mod:`battery_fl.flower.linear`),
    ``per_chemistry_choice`` and ``choice_margin`` (default the
    core's ``DEFAULT_CHOICE_MARGIN``, for both recipes: the level, as a normal quantile, of
    the paired t-test by which an ``auto`` or ``auto_head`` node's shared candidate must validate below its
    own model to replace it, and with the linear recipe by which a node's own fit must validate
    below the global model for the node to keep it); the BatLiNet settings do not
    apply to it. With the BatLiNet recipe, ``record_epsilon > 0`` trains every node with
    per-cell DP-SGD within that ε over all rounds (the statistics and branch B's references
    from the library's public cells, no statistics round, and the first global weights
    trained on those cells, as the core's ``Simulation`` does, unless
    ``record_public_pretraining`` is false; the private steps take the learning rate times
    ``record_learning_rate_scale``, default the core's; ``secagg_max_weight`` must then be given with
    secure aggregation); each node reports the ε it has spent in its evaluation
    metrics (``record-epsilon``), kept per node in the history (``node-record-epsilon``). A
    node keys its noise from the OS unless its own node config pins ``record-seed`` (tests),
    and refuses a server that asks for no record privacy or more than its own
    ``record-max-epsilon``. The public cells are synthetic, also for nodes with real cells. When
    the nodes hold out cells (:func:`battery_fl.holds_out_validation_cells`), each reports the
    coverage and mean width of its conformal intervals at ``interval_coverage`` (default the
    core's ``DEFAULT_COVERAGE``) on its test cells.
    """

    num_server_rounds: int = CORE_DEFAULTS["rounds"]
    min_nodes: int = 2
    clients_per_round: int | None = CORE_DEFAULTS["clients_per_round"]
    fraction_train: float = 1.0
    fraction_evaluate: float = 1.0
    strategy: str = CORE_DEFAULTS["strategy"]
    proximal_mu: float = CORE_DEFAULTS["proximal_mu"]
    trimmed_beta: float = CORE_DEFAULTS["trimmed_beta"]
    max_delta_norm: float | None = CORE_DEFAULTS["max_delta_norm"]
    server_eta: float = _OPT["eta"]
    server_beta1: float = _OPT["beta1"]
    server_beta2: float = _OPT["beta2"]
    server_tau: float = _OPT["tau"]
    local_epochs: int = CORE_DEFAULTS["local_epochs"]
    seed: int = CORE_DEFAULTS["seed"]
    timeout: float = 600.0
    inference_references: int = CORE_DEFAULTS["inference_references"]
    personalization: str = CORE_DEFAULTS["personalization"]
    ditto_lambda: float = CORE_DEFAULTS["ditto_lambda"]
    personal_epochs: int | None = CORE_DEFAULTS["personal_epochs"]
    validation_fraction: float = CORE_DEFAULTS["validation_fraction"]
    calibration_holdout: bool = CORE_DEFAULTS["calibration_holdout"]
    label_scope: str = CORE_DEFAULTS["label_scope"]
    secure_aggregation: bool = False
    secure_statistics: bool = True
    secagg_threshold: int = 0
    secagg_neighbours: int = 0
    secagg_clipping_range: float = _SECAGG["clipping_range"]
    secagg_modulus_bits: int = _SECAGG["modulus_bits"]
    secagg_max_weight: float = 0.0
    dp_noise_multiplier: float = 0.0
    dp_clipping_norm: float = 0.0
    dp_mode: str = _DP["mode"]
    dp_target_delta: float = _DP["target_delta"]
    dp_max_epsilon: float = 0.0
    dp_seed: int = -1
    dp_adaptive: bool = False
    dp_adaptive_target_unclipped_quantile: float = _ADAPTIVE["target_unclipped_quantile"]
    dp_adaptive_learning_rate: float = _ADAPTIVE["learning_rate"]
    dp_adaptive_count_noise_std: float | None = _ADAPTIVE["count_noise_std"]
    output_dir: str = ""
    recipe: str = "batlinet"
    record_epsilon: float = 0.0
    record_public_pretraining: bool = _RECORD["public_pretraining"]
    record_learning_rate_scale: float = _RECORD["learning_rate_scale"]
    per_chemistry_choice: bool = False
    choice_margin: float = CORE_DEFAULTS["choice_margin"]
    interval_coverage: float = DEFAULT_COVERAGE
    batlinet_preset: str = BATLINET_PRESETS[0]
    model: dict[str, _Scalar] = field(default_factory=dict)
    featurizer: dict[str, _Scalar] = field(default_factory=dict)

    def __post_init__(self) -> None:
        try:
            only_the_sum = battery_fl.strategy_needs_only_the_sum(self.strategy)
        except battery_fl.ConfigError:
            raise config_error(
                "strategy", f"{self.strategy!r} is not one of {STRATEGIES}"
            ) from None
        if self.num_server_rounds < 1 or self.min_nodes < 1 or self.local_epochs < 1:
            raise config_error("num-server-rounds/min-nodes/local-epochs", "must be at least 1")
        if not (0.0 < self.fraction_train <= 1.0 and 0.0 <= self.fraction_evaluate <= 1.0):
            raise config_error("fraction-train/fraction-evaluate", "must be in (0, 1]/[0, 1]")
        if not self.timeout > 0:
            raise config_error("timeout", "must be positive")
        if self.dp_mode not in ("central", "local", "distributed"):
            raise config_error("dp-mode", f"{self.dp_mode!r} is not central/local/distributed")
        if self.max_delta_norm is not None and self.secure_aggregation:
            raise config_error(
                "max-delta-norm",
                "under secure aggregation the server sees only the masked sum: it cannot check "
                "one node's update",
            )
        if self.clients_per_round is not None and self.fraction_train != 1.0:
            raise config_error(
                "fraction-train",
                "nodes are sampled by clients-per-round (the core's seeded selection): "
                "leave fraction-train at 1",
            )
        if self.personal_epochs is not None and self.personal_epochs < 1:
            raise config_error(
                "personal-epochs", "must be at least 1 (0 in the run config: local-epochs)"
            )
        self._check_shared_settings()
        if self.recipe not in RECIPES:
            raise config_error("recipe", f"{self.recipe!r} is not one of {RECIPES}")
        if self.batlinet_preset not in BATLINET_PRESETS:
            raise config_error(
                "batlinet-preset", f"{self.batlinet_preset!r} is not one of {BATLINET_PRESETS}"
            )
        if not 0.0 < self.interval_coverage < 1.0:
            raise config_error("interval-coverage", "must be in (0, 1)")
        if not (math.isfinite(self.record_epsilon) and self.record_epsilon >= 0.0):
            raise config_error("record-epsilon", "must be finite and >= 0 (0: exact sums)")
        if not (
            math.isfinite(self.record_learning_rate_scale) and self.record_learning_rate_scale > 0
        ):
            raise config_error("record-learning-rate-scale", "must be finite and > 0")
        if self.record_epsilon > 0 and self.recipe == "batlinet":
            if self.label_scope == "fleet":
                raise config_error(
                    "label-scope",
                    "record-level DP-SGD reads the shared weights with the public cells' labels",
                )
            if self.secure_aggregation and self.secagg_max_weight <= 0:
                raise config_error(
                    "secagg-max-weight",
                    "record-level DP-SGD sums no cell counts: give the public bound on a "
                    "node's cells",
                )
        if self.dp_enabled:
            battery_fl.dp.check_mode(self.dp_mode, secure_aggregation=self.secure_aggregation)
        if self.dp_adaptive:
            self._check_adaptive_clipping()
            if self.max_delta_norm is not None:
                raise config_error("max-delta-norm", UNCLIPPED_BOUND)
        if self.dp_enabled and not only_the_sum:
            raise config_error("dp", "DP noise is calibrated for mean-based strategies")
        if self.secure_aggregation and not only_the_sum:
            raise config_error(
                "secure-aggregation", "secure aggregation reveals only the (weighted) mean"
            )

    def core_config(self) -> dict[str, Any]:
        """The core federation settings among these (:data:`SHARED_SETTINGS`), as a
        :class:`battery_fl.Simulation` config dict."""
        out: dict[str, Any] = {}
        for name, key in SHARED_SETTINGS.items():
            group, _, sub = key.partition(".")
            if sub:
                out.setdefault(group, {})[sub] = getattr(self, name)
            else:
                out[key] = getattr(self, name)
        return out

    def _check_shared_settings(self) -> None:
        """The core's checks of the shared settings (:func:`battery_fl.check_federation_config`),
        its errors named by run-config key."""
        try:
            battery_fl.check_federation_config(self.core_config(), fleets=max(self.min_nodes, 1))
        except battery_fl.ConfigError as err:
            core_key = str(getattr(err, "field", "")).removeprefix("config.")
            name = _SHARED_BY_CORE_KEY.get(core_key, core_key)
            raise config_error(name.replace("_", "-"), str(err)) from None

    def dp_adaptive_config(self) -> dict[str, Any] | None:
        """The adaptive-clipping settings as the core's ``AdaptiveClipConfig`` dict (``adaptive``
        of :class:`battery_fl.dp.ServerDp` and of a Simulation's ``dp``), ``None`` when off."""
        if not self.dp_adaptive:
            return None
        return {
            "target_unclipped_quantile": self.dp_adaptive_target_unclipped_quantile,
            "learning_rate": self.dp_adaptive_learning_rate,
            "count_noise_std": self.dp_adaptive_count_noise_std,
        }

    def _check_adaptive_clipping(self) -> None:
        """The core's checks of adaptive clipping (:class:`battery_fl.dp.ServerDp`), named
        ``dp-adaptive``."""
        if not self.dp_enabled:
            raise config_error("dp-adaptive", "adaptive clipping needs DP (dp-clipping-norm > 0)")
        try:
            battery_fl.dp.ServerDp(
                self.dp_noise_multiplier,
                self.dp_clipping_norm,
                mode=self.dp_mode,
                secure_aggregation=self.secure_aggregation,
                adaptive=self.dp_adaptive_config(),
            )
        except battery_fl.ConfigError as err:
            raise config_error("dp-adaptive", str(err)) from None

    @property
    def dp_enabled(self) -> bool:
        """True when updates are clipped and noised."""
        return self.dp_clipping_norm > 0.0

    @classmethod
    def from_run_config(cls, run_config: Mapping[str, Any]) -> FederationSettings:
        """Settings from a Flower run config; unknown top-level keys are ignored (the app may
        carry its own), wrongly typed values and renamed keys (``secagg-neighbors``, now
        ``secagg-neighbours``) raise :class:`battery_fl.ConfigError`."""
        for old, new in _RENAMED.items():
            if old in run_config:
                raise config_error(old, f"renamed to `{new}`")
        kwargs: dict[str, Any] = {}
        model: dict[str, _Scalar] = {}
        featurizer: dict[str, _Scalar] = {}
        types = {f.name: f.type for f in fields(cls)}
        for key, value in run_config.items():
            head, _, rest = key.partition(".")
            if rest and head in ("model", "featurizer"):
                (model if head == "model" else featurizer)[rest.replace("-", "_")] = value
                continue
            name = key.replace("-", "_")
            if name in types and name not in ("model", "featurizer"):
                type_name = str(types[name]).removesuffix(" | None")
                kind = {"int": int, "float": float, "bool": bool, "str": str}[type_name]
                kwargs[name] = _coerce(key, value, kind)
                if name in _NONE_IN_RUN_CONFIG and kwargs[name] == _NONE_IN_RUN_CONFIG[name]:
                    kwargs[name] = None
        return cls(model=model, featurizer=featurizer, **kwargs)

    def to_run_config(self) -> dict[str, _Scalar]:
        """The flat run config these settings come from (inverse of :meth:`from_run_config`)."""
        out: dict[str, _Scalar] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("model", "featurizer"):
                for k, v in value.items():
                    out[f"{f.name}.{k.replace('_', '-')}"] = v
            else:
                out[f.name.replace("_", "-")] = (
                    _NONE_IN_RUN_CONFIG[f.name] if value is None else value
                )
        return out

    def replace(self, **changes: Any) -> FederationSettings:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def build_model(self) -> battery_fl.BatLiNet:
        """The global model (initial weights from ``model.seed``), without progress output:
        the :attr:`batlinet_preset`'s featurizer and settings with ``model.*`` and
        ``featurizer.*`` on top."""
        preset = battery_fl.batlinet_preset(self.batlinet_preset)
        kwargs: dict[str, Any] = {**preset["model"], **self.model}
        channels = self.model.get("input_channels")
        if channels is not None:
            try:
                kwargs["input_channels"] = [int(c) for c in str(channels).split(",") if c.strip()]
            except ValueError:
                raise config_error(
                    "model.input-channels", f"{channels!r} is not a list of ints"
                ) from None
        kwargs["progress"] = False
        # (the featurizer's cleaning settings are flat keyword arguments)
        base = dict(preset["featurizer"])
        featurizer_kwargs: dict[str, Any] = {**base.pop("clean"), **base, **self.featurizer}
        try:
            featurizer = battery_fl.Featurizer(**featurizer_kwargs)
            return battery_fl.BatLiNet(featurizer=featurizer, **kwargs)
        except TypeError as err:
            raise config_error("model/featurizer", str(err)) from None

    def proximal_mu_for_clients(self) -> float:
        """The FedProx term clients add (only with ``strategy = "fed_prox"``)."""
        return self.proximal_mu if self.strategy == "fed_prox" else 0.0

    def aggregator(self) -> Any:
        """The Rust aggregator of :attr:`strategy` with these settings, as the core builds it
        (:func:`battery_fl.aggregator_for`) for the server: without ``max_delta_norm``, which
        the strategy checks on each update (:func:`battery_fl.partition_updates`) and never on
        their released mean, as :class:`battery_fl.Simulation` does."""
        return battery_fl.aggregator_for({**self.core_config(), "max_delta_norm": None})


@dataclass(frozen=True)
class FleetCells:
    """One fleet's cells, which never leave its SuperNode: ``index`` (the fleet's position in
    the federation, used for its training seeds), training cells (also its inference
    references) and held-out test cells."""

    index: int
    train: list[battery_fl.Cell]
    test: list[battery_fl.Cell]


def fleet_index(node_config: Mapping[str, Any]) -> int:
    """The fleet's position in the federation (its training seeds depend on it):
    ``partition-id`` when the node config gives one, else ``synthetic-fleet``, else 0.

    >>> fleet_index({"partition-id": 3, "synthetic-fleet": 1}), fleet_index({})
    (3, 0)
    """
    index = node_config.get("partition-id", node_config.get("synthetic-fleet", 0))
    return _coerce("partition-id", index, int)


def load_fleet(node_config: Mapping[str, Any]) -> FleetCells:
    """The fleet's cells named by a SuperNode's node config.

    Either ``data-dir`` (a folder of cell JSON files, all for training) with an optional
    ``test-dir``, or a synthetic fleet for tests and demos: ``synthetic-fleet`` (index),
    ``synthetic-fleets`` (how many fleets the federation has), ``synthetic-seed``,
    ``synthetic-cells`` (per fleet), ``synthetic-cycles``, ``synthetic-points`` (per cycle)
    and ``synthetic-test-cells`` (the last cells, held out). The fleet index is
    ``partition-id`` when given, else the synthetic index, else 0. Paths may use ``~`` and
    environment variables.
    """
    index = fleet_index(node_config)
    if "data-dir" in node_config:
        folder = _path(node_config["data-dir"], "data-dir")
        train = battery_fl.load_cells(folder)
        test_dir = node_config.get("test-dir")
        test = battery_fl.load_cells(_path(test_dir, "test-dir")) if test_dir else []
        return FleetCells(index, train, test)
    if "synthetic-fleet" in node_config:

        def get(key: str, default: int) -> int:
            return int(_coerce(key, node_config.get(key, default), int))

        fleet = get("synthetic-fleet", 0)
        count = get("synthetic-fleets", fleet + 1)
        if not 0 <= fleet < count:
            raise config_error("synthetic-fleet", f"{fleet} is not in 0..{count - 1}")
        cells = synthetic.generate_fleets(
            fleets=count,
            cells_per_fleet=get("synthetic-cells", 20),
            cycles=get("synthetic-cycles", 100),
            points_per_cycle=get("synthetic-points", 200),
            seed=get("synthetic-seed", 42),
        )[fleet].cells
        held_out = get("synthetic-test-cells", 0)
        if not 0 <= held_out < len(cells):
            raise config_error("synthetic-test-cells", f"must be in 0..{len(cells) - 1}")
        return FleetCells(index, cells[: len(cells) - held_out], cells[len(cells) - held_out :])
    raise config_error(
        "node-config", "give `data-dir` (a folder of cell JSON files) or `synthetic-fleet`"
    )


def _path(value: Any, key: str) -> Path:
    path = Path(os.path.expandvars(os.path.expanduser(_coerce(key, value, str))))
    if not path.is_dir():
        raise config_error(key, f"{path} is not a directory")
    return path


def model_to_config(model: battery_fl.BatLiNet) -> dict[str, str]:
    """The model's settings and featurizer as JSON strings (what travels to the nodes)."""
    return {"model": json.dumps(model.config), "featurizer": model.featurizer.to_json()}


def model_from_config(model_json: str, featurizer_json: str) -> battery_fl.BatLiNet:
    """The inverse of :func:`model_to_config` (weights from the model seed; no progress)."""
    kwargs = json.loads(model_json)
    kwargs["progress"] = False
    featurizer = battery_fl.Featurizer.from_json(featurizer_json)
    return battery_fl.BatLiNet(featurizer=featurizer, **kwargs)
