"""The ClientApp side: local training, personalization, evaluation and statistics on a
fleet's own cells.

Every handler reads the fleet's cells from the SuperNode's node config
(:func:`~battery_fl.flower.settings.load_fleet`) and the model from the server's message
(settings, featurizer, shared label transform and input scales, global weights), so a node
needs nothing but its data and ``battery_fl``. Messages and replies:

- ``query.stats``: the server sends ``config`` (model, featurizer); the node replies with
  ``arrays``, one float64 vector ``[count, Σ ln L, Σ (ln L)², input statistics..]``.
- ``train``: the server sends ``arrays`` (global weights) and ``config``; the node trains
  with :class:`battery_fl.FleetClient` (the code :class:`battery_fl.Simulation` runs for
  each fleet) and replies with ``arrays`` (the weights it sends: received + its update; with
  ``head`` and ``auto_head`` personalization the head is the received one) and ``metrics`` (``num-examples``,
  the cells it trained on).
- ``evaluate``: the server sends ``arrays`` and ``config``; the node replies with
  ``metrics``: ``rmse`` (cycles, the global model on its test cells), ``personalized-rmse``
  (its own model, :meth:`battery_fl.FleetClient.personal_model`; ``rmse`` again with
  personalization ``none``, the global model is its own) and ``num-examples`` (its test cells).
- ``query.calibration`` (after the last round, nodes that hold out cells only: ``auto``,
  ``auto_head`` or ``calibration-holdout``): the node replies with
  ``arrays``, the histogram of its held-out cells' conformal scores
  (:meth:`battery_fl.FleetClient.calibration_histogram`), summed like the statistics.
- ``query.intervals`` (config ``calibration-histogram``, the sum, and
  ``interval-coverage``): the node calibrates the model it ended with
  (:meth:`battery_fl.FleetClient.pooled_calibration`: its own scores, or the pooled ones when it
  held out fewer than 19 cells), predicts its test cells with intervals and replies with
  ``metrics``: ``covered`` (share inside, over the ``covered-cells`` with a known life),
  ``mean-width`` (cycles),
  ``out-of-distribution`` (flagged cells), ``pooled`` (1 when it took the pooled scores)
  and ``num-examples``.

Config keys of both: ``server-round``, ``seed`` (training uses ``job_seed(seed,
server-round, fleet index)``, evaluation the same seed for its references, as
:class:`battery_fl.Simulation`), ``local-epochs``, ``proximal-mu`` (FedProx term when > 0),
``label-statistics``, ``input-scales-a``/``input-scales-b``,
``inference-references``, ``personalization`` (``none``, ``fine_tune``, ``head``,
``ditto``, ``auto``, ``auto_head``), ``ditto-lambda``, ``personal-epochs`` (0: ``local-epochs``),
``validation-fraction`` (the share of its training cells an ``auto`` or ``auto_head`` node
holds out, and any node with ``calibration-holdout``), ``calibration-holdout`` (hold them out
in every mode, to calibrate intervals), ``choice-margin`` (how clear a validation gain, as a paired t-test's level, such a node
needs to leave its own model) and,
for DP in ``train``, ``dp-clipping-norm`` (the update ``sent - received`` is clipped to it;
none with adaptive clipping, where the server clips) and ``dp-noise-std`` (Gaussian noise
each node adds). These come from the server; a node that
does not trust it pins a floor in its own node config (:func:`dp_floor`) and refuses rounds
below it.

A node's personal state (its own head, Ditto model or ``auto``/``auto_head`` choice: the state bytes of
:class:`battery_fl.FleetClient`) stays in its ``Context.state`` under
:data:`PERSONAL_STATE_KEY` and is never sent; the node's first ``train`` or ``evaluate``
message of a run creates it (:meth:`battery_fl.FleetClient.initial_state`).

>>> from flwr.clientapp import ClientApp
>>> isinstance(make_client_app(), ClientApp)
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.clientapp.typing import Mod

import battery_fl
from battery_fl import dp, synthetic
from battery_fl.flower import linear
from battery_fl.flower.settings import (
    FleetCells,
    config_error,
    fleet_index,
    load_fleet,
    model_from_config,
    node_record_epsilon,
)

__all__ = [
    "CALIBRATION_ACTION",
    "FLEET_ACTION",
    "INTERVALS_ACTION",
    "PERSONAL_STATE_KEY",
    "STATS_ACTION",
    "app",
    "dp_floor",
    "evaluate",
    "fleet_client",
    "fleet_statistics",
    "labelled_cells",
    "make_client_app",
    "query_calibration",
    "query_fleet",
    "query_intervals",
    "query_statistics",
    "train",
]

#: The ``query`` action that returns a fleet's statistics (``query.stats``).
STATS_ACTION = "stats"
#: The ``query`` action that returns the histogram of a fleet's held-out conformal scores.
CALIBRATION_ACTION = "calibration"
#: The ``query`` action that returns a fleet's interval coverage on its test cells.
INTERVALS_ACTION = "intervals"
#: The ``query`` action that returns a fleet's index (``fleet-index``, its ``partition-id``).
FLEET_ACTION = "fleet"
#: ConfigRecord in a node's ``Context.state``: its personal state (``state``, the bytes of
#: :class:`battery_fl.FleetClient`), which never leaves the node.
PERSONAL_STATE_KEY = "bfl-personal-state"
#: Server config keys a node passes to :class:`battery_fl.FleetClient`, with their core
#: names (a key the server did not send takes the core default).
_FLEET_SETTINGS = {
    "rounds": "rounds",
    "local-epochs": "local_epochs",
    "seed": "seed",
    "inference-references": "inference_references",
    "personalization": "personalization",
    "ditto-lambda": "ditto_lambda",
    "personal-epochs": "personal_epochs",
    "validation-fraction": "validation_fraction",
    "calibration-holdout": "calibration_holdout",
    "choice-margin": "choice_margin",
    "label-scope": "label_scope",
}


def fleet_statistics(model: battery_fl.BatLiNet, cells: Sequence[battery_fl.Cell]) -> np.ndarray:
    """A fleet's statistics as one float64 vector (:meth:`battery_fl.BatLiNet.fleet_statistics`:
    label count, Σ ln(life), Σ ln(life)², then the input statistics). Summed over fleets they
    give the shared label transform and input scales (see
    :func:`battery_fl.flower.server.apply_statistics`).

    >>> import battery_fl
    >>> from battery_fl import synthetic
    >>> cells = synthetic.generate_fleets(fleets=1, cells_per_fleet=3, cycles=12, seed=1)[0].cells
    >>> model = battery_fl.BatLiNet(featurizer=battery_fl.Featurizer(cycles=12, interp_dim=8),
    ...                             conv_channels=4, progress=False)
    >>> v = fleet_statistics(model, cells)
    >>> v.dtype.name, int(v[0]), v.size == model.LABEL_STATISTICS_LEN + 1 + 2 * 6 + 6 * 12 * 8
    ('float64', 3, True)
    """
    return model.fleet_statistics(list(cells))


def _model(config: ConfigRecord) -> battery_fl.BatLiNet:
    """The model the server described, with its shared statistics applied."""
    try:
        model = model_from_config(str(config["model"]), str(config["featurizer"]))
    except KeyError as err:
        raise config_error(str(err), "missing from the server's config") from None
    if "public-cells" in config:
        # record-level DP-SGD: the statistics are the public cells', no fleet's
        model.set_public_statistics(public_cells(config))
    elif "label-statistics" in config:
        model.set_label_statistics(config["label-statistics"])  # type: ignore[arg-type]
        model.set_input_scales(config["input-scales-a"], config["input-scales-b"])  # type: ignore[arg-type]
    return model


def _config(msg: Message) -> ConfigRecord:
    record = msg.content.get("config")
    if not isinstance(record, ConfigRecord):
        raise config_error("config", "the message carries no ConfigRecord `config`")
    return record


def _arrays(msg: Message) -> list[np.ndarray]:
    record = msg.content.get("arrays")
    if not isinstance(record, ArrayRecord):
        raise config_error("arrays", "the message carries no ArrayRecord `arrays`")
    return record.to_numpy_ndarrays()


def fleet_client(
    config: Mapping[str, object],
    fleet: FleetCells,
    model: battery_fl.BatLiNet,
    node_config: Mapping[str, object] | None = None,
) -> battery_fl.FleetClient:
    """The fleet's :class:`battery_fl.FleetClient` for the server's ``config`` (see the
    module docs; keys it does not carry take the core defaults) and ``model`` (the
    architecture and shared statistics the server described).

    >>> import battery_fl
    >>> from battery_fl.flower.settings import load_fleet
    >>> fleet = load_fleet({"synthetic-fleet": 0, "synthetic-cells": 5, "synthetic-cycles": 12})
    >>> model = battery_fl.BatLiNet(featurizer=battery_fl.Featurizer(cycles=12, interp_dim=8),
    ...                             conv_channels=4, progress=False)
    >>> fleet_client({"personalization": "auto", "validation-fraction": 0.2}, fleet, model).fit_cells
    4
    """
    if "auto-margin" in config:
        # an older server's relative gain would be read as a t-test's level: refuse it
        raise config_error("auto-margin", "renamed to `choice-margin` (a paired t-test's level)")
    settings: dict[str, object] = {
        core: config[key] for key, core in _FLEET_SETTINGS.items() if key in config
    }
    if settings.get("personal_epochs") == 0:
        settings["personal_epochs"] = None
    # the server sends the FedProx term only when its strategy is FedProx (else 0); the
    # strategy matters to a node for that term alone
    mu = float(config.get("proximal-mu", 0.0))  # type: ignore[arg-type]
    settings["strategy"] = "fed_prox" if mu > 0 else "fed_avg"
    settings["proximal_mu"] = mu
    node_config = node_config or {}
    epsilon = node_record_epsilon(config, node_config)
    if epsilon <= 0:
        return battery_fl.FleetClient(settings, fleet.index, model, fleet.train)
    # the noise and the cells each step samples are keyed from the OS, unless the node
    # itself pins a seed (tests): never from a seed the server sends, which would let it
    # subtract the noise
    seed = int(node_config.get("record-seed", -1))  # type: ignore[call-overload]
    record: dict[str, object] = {"epsilon": epsilon, "seed": seed if seed >= 0 else None}
    if "record-learning-rate-scale" in config:
        # (a server that sends none leaves the node's library default)
        record["learning_rate_scale"] = float(config["record-learning-rate-scale"])  # type: ignore[arg-type]
    settings["record_privacy"] = record
    public = public_cells(config)
    return battery_fl.FleetClient(settings, fleet.index, model, fleet.train, public=public)


def public_cells(config: Mapping[str, object]) -> list[battery_fl.Cell]:
    """The library's public synthetic cells the server names (``public-cells`` per fleet of
    ``public-fleets``, default the library's ``PUBLIC_FLEETS``): every node makes the same
    ones (:func:`battery_fl.synthetic.public_cells`)."""
    fleets = int(config.get("public-fleets", synthetic.PUBLIC_FLEETS))  # type: ignore[call-overload]
    cells = int(config["public-cells"])  # type: ignore[call-overload]
    return synthetic.public_cells(fleets=fleets, cells_per_fleet=cells)


def _personal_state(
    context: Context,
    client: battery_fl.FleetClient,
    model: battery_fl.BatLiNet,
) -> bytes:
    """The node's personal state: kept in ``Context.state``, or new. Without a model of its
    own (:attr:`battery_fl.FleetClient.keeps_state`) or record-level DP-SGD there is none to
    keep (empty bytes)."""
    if not client.keeps_state:
        return b""
    record = context.state.get(PERSONAL_STATE_KEY)
    if isinstance(record, ConfigRecord) and "state" in record:
        return bytes(record["state"])  # type: ignore[arg-type]
    return client.initial_state(model)


def _keep_personal_state(context: Context, client: battery_fl.FleetClient, state: bytes) -> None:
    if client.keeps_state:
        context.state[PERSONAL_STATE_KEY] = ConfigRecord({"state": state})


def _privatize(
    sent: list[np.ndarray], received: list[np.ndarray], clipping_norm: float, noise_std: float
) -> list[np.ndarray]:
    """Our DP on a node: clip the update ``sent - received`` to L2 norm ``clipping_norm`` and
    add ``N(0, noise_std²)`` to it; ``sent`` as is when ``clipping_norm`` is 0."""
    if clipping_norm <= 0:
        return sent
    delta = [p - g for p, g in zip(sent, received, strict=True)]
    delta = dp.clip(delta, clipping_norm)
    if noise_std > 0:
        delta = dp.add_noise(delta, noise_std)
    return [(g + d).astype(np.float32) for g, d in zip(received, delta, strict=True)]


def labelled_cells(cells: Sequence[battery_fl.Cell]) -> list[battery_fl.Cell]:
    """The cells whose life is known (a test cell still cycling has none to score against).

    >>> from battery_fl import synthetic
    >>> cell = synthetic.generate_cell("LFP", cycles=30, points_per_cycle=40)
    >>> still_cycling = battery_fl.Cell("new", cell.nominal_capacity_ah, cell.cycles[:12])
    >>> [c.cell_id for c in labelled_cells([cell, still_cycling])] == [cell.cell_id]
    True
    """
    return [c for c in cells if c.cycle_life() is not None]


def dp_floor(node_config: Mapping[str, object]) -> dp.DpFloor | None:
    """The least privacy this node accepts, from its own node config (never the server's):
    ``dp-floor-clipping-norm``, ``dp-floor-noise-multiplier`` and ``dp-floor-noise-shares``
    (default 1, local DP). ``None`` when the node pins no floor.

    >>> dp_floor({}) is None, dp_floor({"dp-floor-clipping-norm": 1.0, "dp-floor-noise-multiplier": 0.5})
    (True, DpFloor(clipping_norm=1, noise_multiplier=0.5, noise_shares=1))
    """
    keys = ("dp-floor-clipping-norm", "dp-floor-noise-multiplier")
    if not any(k in node_config for k in keys):
        return None
    missing = [k for k in keys if k not in node_config]
    if missing:
        raise config_error(
            missing[0], "a DP floor needs both a clipping norm and a noise multiplier"
        )
    return dp.DpFloor(
        float(node_config[keys[0]]),  # type: ignore[arg-type]
        float(node_config[keys[1]]),  # type: ignore[arg-type]
        noise_shares=int(node_config.get("dp-floor-noise-shares", 1)),  # type: ignore[call-overload]
    )


def train(msg: Message, context: Context) -> Message:
    """The ``train`` handler: local training on this node's fleet with
    :meth:`battery_fl.FleetClient.train`, its personal state kept in ``Context.state`` (see
    the module docs). A node whose own config pins a DP floor (:func:`dp_floor`) refuses
    (:class:`battery_fl.PrivacyError`) a round that clips less or asks it for less noise."""
    config = _config(msg)
    floor = dp_floor(context.node_config)
    if floor is not None:
        floor.check(
            float(config.get("dp-clipping-norm", 0.0)),  # type: ignore[arg-type]
            float(config.get("dp-noise-std", 0.0)),  # type: ignore[arg-type]
        )
    fleet = load_fleet(context.node_config)
    if not fleet.train:
        raise config_error("node-config", "the fleet has no training cells")
    received = _arrays(msg)
    model = _model(config)
    client = fleet_client(config, fleet, model, context.node_config)
    state = _personal_state(context, client, model)
    server_round = int(config.get("server-round", 1))  # type: ignore[arg-type]
    sent, examples, state = client.train(model, received, state, server_round)
    _keep_personal_state(context, client, state)
    sent = _privatize(
        sent,
        received,
        float(config.get("dp-clipping-norm", 0.0)),  # type: ignore[arg-type]
        float(config.get("dp-noise-std", 0.0)),  # type: ignore[arg-type]
    )
    metrics = MetricRecord({"num-examples": examples})
    return Message(RecordDict({"arrays": ArrayRecord(sent), "metrics": metrics}), reply_to=msg)


def evaluate(msg: Message, context: Context) -> Message:
    """The ``evaluate`` handler: RMSE (cycles) on the fleet's test cells of known life
    (:func:`labelled_cells`; ``num-examples`` counts them), with its training
    cells as references (``inference-references`` of them at most), of the global model
    (``rmse``) and of the fleet's own model (``personalized-rmse``,
    :meth:`battery_fl.FleetClient.personal_model`, its personal state kept in
    ``Context.state``)."""
    config = _config(msg)
    fleet = load_fleet(context.node_config)
    test = labelled_cells(fleet.test)
    if not test or not fleet.train:
        raise config_error(
            "node-config", "evaluation needs test cells of known life and training cells"
        )
    model = _model(config)
    received = _arrays(msg)
    server_round = int(config.get("server-round", 0))  # type: ignore[arg-type]
    client = fleet_client(config, fleet, model, context.node_config)
    # the global weights as this fleet reads them (its own label transform with label-scope
    # fleet) and the model it uses, scored as the Simulation scores every fleet (core)
    state = _personal_state(context, client, model)
    rmse, personalized, state = client.evaluate(model, received, state, test, server_round)
    values: dict[str, float | int] = {"num-examples": len(test)}
    if client.keeps_state:
        _keep_personal_state(context, client, state)
        spent = client.record_epsilon(state)
        if spent is not None:
            values["record-epsilon"] = spent
    metrics = MetricRecord({"rmse": rmse, "personalized-rmse": personalized, **values})
    return Message(RecordDict({"metrics": metrics}), reply_to=msg)


def query_fleet(msg: Message, context: Context) -> Message:
    """The ``query.fleet`` handler: the fleet's index (``fleet-index``,
    :func:`battery_fl.flower.settings.fleet_index`), by which the server orders its nodes as
    :class:`battery_fl.Simulation` orders its fleets. It reads the node config only."""
    metrics = MetricRecord({"fleet-index": fleet_index(context.node_config)})
    return Message(RecordDict({"metrics": metrics}), reply_to=msg)


def query_statistics(msg: Message, context: Context) -> Message:
    """The ``query.stats`` handler: the fleet's :func:`fleet_statistics` for the model the
    server describes."""
    fleet = load_fleet(context.node_config)
    vector = fleet_statistics(_model(_config(msg)), fleet.train)
    metrics = MetricRecord({"num-examples": len(fleet.train)})
    return Message(RecordDict({"arrays": ArrayRecord([vector]), "metrics": metrics}), reply_to=msg)


def _stored_state(context: Context) -> bytes:
    """The node's personal state after its evaluated rounds (an interval query needs it)."""
    record = context.state.get(PERSONAL_STATE_KEY)
    if not (isinstance(record, ConfigRecord) and "state" in record):
        raise config_error("personalization", "no personal state on this node: run rounds first")
    return bytes(record["state"])  # type: ignore[arg-type]


def query_calibration(msg: Message, context: Context) -> Message:
    """The ``query.calibration`` handler: the histogram of the conformal scores of the cells
    this node held out (see the module docs)."""
    config = _config(msg)
    fleet = load_fleet(context.node_config)
    model = _model(config)
    client = fleet_client(config, fleet, model, context.node_config)
    counts = client.calibration_histogram(model, _stored_state(context))
    return Message(RecordDict({"arrays": ArrayRecord([counts])}), reply_to=msg)


def query_intervals(msg: Message, context: Context) -> Message:
    """The ``query.intervals`` handler: coverage and width of the intervals of the model this
    node ended with on its test cells (see the module docs)."""
    config = _config(msg)
    fleet = load_fleet(context.node_config)
    model = _model(config)
    client = fleet_client(config, fleet, model, context.node_config)
    state = _stored_state(context)
    summed = np.asarray(config["calibration-histogram"], dtype=np.float64)
    calibration = client.pooled_calibration(model, state, summed)
    own = client.current_model(model, state)
    coverage = float(config["interval-coverage"])  # type: ignore[arg-type]
    p = own.predict(fleet.test, fleet.train, coverage=coverage, calibration=calibration)
    truth = [c.cycle_life() or math.nan for c in fleet.test]
    s = battery_fl.interval_summary(p.lower, p.upper, p.out_of_distribution, truth)
    metrics = MetricRecord(
        {
            "covered": s["covered"],
            "covered-cells": s["labelled"],
            "mean-width": s["mean_width"],
            "out-of-distribution": s["flagged"],
            "pooled": int(calibration.pooled),
            "num-examples": s["cells"],
        }
    )
    return Message(RecordDict({"metrics": metrics}), reply_to=msg)


def make_client_app(mods: Sequence[Mod] | None = None) -> ClientApp:
    """A ClientApp with the ``train``, ``evaluate``, ``query.stats``, ``query.fleet``, ``query.calibration``
    and ``query.intervals`` handlers, and the
    linear recipe's ``query.linear_*`` (:mod:`battery_fl.flower.linear`). ``mods``
    wrap every handler (first = outermost); add
    :func:`battery_fl.flower.secagg.secagg_mod` for secure aggregation (the default
    :data:`app` has it: it only acts on secure-aggregation messages)."""
    client_app = ClientApp(mods=list(mods) if mods is not None else None)
    client_app.train()(train)
    client_app.evaluate()(evaluate)
    client_app.query(STATS_ACTION)(query_statistics)
    client_app.query(FLEET_ACTION)(query_fleet)
    client_app.query(CALIBRATION_ACTION)(query_calibration)
    client_app.query(INTERVALS_ACTION)(query_intervals)
    client_app.query(linear.SHARE_ACTION)(linear.query_linear_share)
    client_app.query(linear.ERRORS_ACTION)(linear.query_linear_errors)
    client_app.query(linear.FIT_ACTION)(linear.query_linear_fit)
    return client_app


def _default_app() -> ClientApp:
    from battery_fl.flower.secagg import secagg_mod

    return make_client_app(mods=[secagg_mod])


#: The ready ClientApp (``battery_fl.flower.client:app``), secure aggregation included.
app: ClientApp = _default_app()
