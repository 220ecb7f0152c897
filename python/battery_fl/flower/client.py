"""The ClientApp side: local training, evaluation and statistics on a fleet's own cells.

Every handler reads the fleet's cells from the SuperNode's node config
(:func:`~battery_fl.flower.settings.load_fleet`) and the model from the server's message
(settings, featurizer, shared label transform and input scales, global weights), so a node
needs nothing but its data and ``battery_fl``. Messages and replies:

- ``query.stats``: the server sends ``config`` (model, featurizer); the node replies with
  ``arrays``, one float64 vector ``[count, Σ ln L, Σ (ln L)², input statistics..]``.
- ``train``: the server sends ``arrays`` (global weights) and ``config``; the node replies
  with ``arrays`` (its local weights) and ``metrics`` (``num-examples``, ``train-loss``).
- ``evaluate``: the server sends ``arrays`` and ``config``; the node replies with
  ``metrics`` (``rmse`` in cycles on its test cells, ``num-examples``).

``train`` config keys: ``server-round``, ``seed`` (local training uses
``job_seed(seed, server-round, fleet index)``, as :class:`battery_fl.Simulation` does),
``local-epochs``, ``proximal-mu`` (FedProx term when > 0), ``label-mean``/``label-std``,
``input-scales-a``/``input-scales-b`` and, for DP, ``dp-clipping-norm`` (the update
``w_local - w_global`` is clipped to it) and ``dp-noise-std`` (Gaussian noise each node adds).
These come from the server; a node that does not trust it pins a floor in its own node
config (:func:`dp_floor`) and refuses rounds below it.

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
from battery_fl import dp
from battery_fl.flower.settings import FleetCells, config_error, load_fleet, model_from_config

__all__ = [
    "STATS_ACTION",
    "app",
    "dp_floor",
    "evaluate",
    "fleet_statistics",
    "make_client_app",
    "query_statistics",
    "train",
    "train_fleet",
]

#: The ``query`` action that returns a fleet's statistics (``query.stats``).
STATS_ACTION = "stats"


def fleet_statistics(model: battery_fl.BatLiNet, cells: Sequence[battery_fl.Cell]) -> np.ndarray:
    """A fleet's sufficient statistics as one float64 vector: label count, Σ ln(life),
    Σ ln(life)² (lives as the model labels them: ``cell.cycle_life()``), then
    ``model.input_statistics(cells)``. Summed over fleets they give the shared label transform
    and input scales (see :func:`battery_fl.flower.server.apply_statistics`).

    >>> import battery_fl
    >>> from battery_fl import synthetic
    >>> cells = synthetic.generate_fleets(fleets=1, cells_per_fleet=3, cycles=12, seed=1)[0].cells
    >>> model = battery_fl.BatLiNet(featurizer=battery_fl.Featurizer(cycles=12, interp_dim=8),
    ...                             conv_channels=4, progress=False)
    >>> v = fleet_statistics(model, cells)
    >>> v.dtype.name, int(v[0]), v.size == 3 + 1 + 2 * 6 + 6 * 12 * 8
    ('float64', 3, True)
    """
    logs = []
    for cell in cells:
        life = cell.cycle_life()
        if life is None or life <= 0:
            err = battery_fl.DataError(f"cell {cell.cell_id} has no cycle-life label")
            err.kind = "invalid_data"
            raise err
        logs.append(math.log(life))
    labels = np.array([len(logs), sum(logs), sum(v * v for v in logs)], dtype=np.float64)
    return np.concatenate([labels, model.input_statistics(cells)])


def _model(config: ConfigRecord) -> battery_fl.BatLiNet:
    """The model the server described, with its shared statistics applied."""
    try:
        model = model_from_config(str(config["model"]), str(config["featurizer"]))
    except KeyError as err:
        raise config_error(str(err), "missing from the server's config") from None
    if "label-mean" in config:
        model.set_label_transform(float(config["label-mean"]), float(config["label-std"]))  # type: ignore[arg-type]
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


def train_fleet(
    model: battery_fl.BatLiNet,
    fleet: FleetCells,
    global_parameters: Sequence[np.ndarray],
    *,
    server_round: int,
    seed: int,
    epochs: int,
    mu: float = 0.0,
    clipping_norm: float = 0.0,
    noise_std: float = 0.0,
) -> tuple[list[np.ndarray], float]:
    """One node's local training: start from ``global_parameters``, train ``epochs`` epochs
    on the fleet's training cells with seed ``job_seed(seed, server_round, fleet.index)``
    (FedProx term ``mu``), then optionally clip the update ``w_local - w_global`` to L2 norm
    ``clipping_norm`` and add ``N(0, noise_std²)`` to it (our DP). Returns the new weights and
    the last epoch's loss. Pure Python API: the in-process reference of the Flower tests.
    """
    model.set_parameters(list(global_parameters))
    losses = model.train(
        fleet.train,
        epochs=epochs,
        seed=battery_fl.job_seed(seed, server_round, fleet.index),
        mu=mu,
        global_parameters=list(global_parameters) if mu > 0 else None,
    )
    params = model.get_parameters()
    if clipping_norm > 0:
        delta = [p - g for p, g in zip(params, global_parameters, strict=True)]
        delta = dp.clip(delta, clipping_norm)
        if noise_std > 0:
            delta = dp.add_noise(delta, noise_std)
        params = [(g + d).astype(np.float32) for g, d in zip(global_parameters, delta, strict=True)]
    return params, float(losses[-1]) if losses else math.nan


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
        raise config_error(missing[0], "a DP floor needs both a clipping norm and a noise multiplier")
    return dp.DpFloor(
        float(node_config[keys[0]]),  # type: ignore[arg-type]
        float(node_config[keys[1]]),  # type: ignore[arg-type]
        noise_shares=int(node_config.get("dp-floor-noise-shares", 1)),  # type: ignore[call-overload]
    )


def train(msg: Message, context: Context) -> Message:
    """The ``train`` handler: local training on this node's fleet (see the module docs). A
    node whose own config pins a DP floor (:func:`dp_floor`) refuses
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
    global_parameters = _arrays(msg)
    params, loss = train_fleet(
        _model(config),
        fleet,
        global_parameters,
        server_round=int(config.get("server-round", 1)),  # type: ignore[arg-type]
        seed=int(config.get("seed", 0)),  # type: ignore[arg-type]
        epochs=int(config.get("local-epochs", 1)),  # type: ignore[arg-type]
        mu=float(config.get("proximal-mu", 0.0)),  # type: ignore[arg-type]
        clipping_norm=float(config.get("dp-clipping-norm", 0.0)),  # type: ignore[arg-type]
        noise_std=float(config.get("dp-noise-std", 0.0)),  # type: ignore[arg-type]
    )
    metrics = MetricRecord({"num-examples": len(fleet.train), "train-loss": loss})
    return Message(RecordDict({"arrays": ArrayRecord(params), "metrics": metrics}), reply_to=msg)


def evaluate(msg: Message, context: Context) -> Message:
    """The ``evaluate`` handler: RMSE (cycles) of the global model on the fleet's test cells,
    with its training cells as references (``inference-references`` of them at most)."""
    config = _config(msg)
    fleet = load_fleet(context.node_config)
    if not fleet.test or not fleet.train:
        raise config_error("node-config", "evaluation needs test cells and training cells")
    model = _model(config)
    model.set_parameters(_arrays(msg))
    k = min(int(config.get("inference-references", 16)), len(fleet.train))  # type: ignore[arg-type]
    r = int(config.get("server-round", 0))  # type: ignore[arg-type]
    seed = battery_fl.job_seed(int(config.get("seed", 0)), r, fleet.index)  # type: ignore[arg-type]
    predicted = model.predict(fleet.test, references=fleet.train, k=k, seed=seed)
    truth = np.array([c.cycle_life() or math.nan for c in fleet.test], dtype=np.float64)
    rmse = float(np.sqrt(np.mean((predicted - truth) ** 2)))
    metrics = MetricRecord({"rmse": rmse, "num-examples": len(fleet.test)})
    return Message(RecordDict({"metrics": metrics}), reply_to=msg)


def query_statistics(msg: Message, context: Context) -> Message:
    """The ``query.stats`` handler: the fleet's :func:`fleet_statistics` for the model the
    server describes."""
    fleet = load_fleet(context.node_config)
    vector = fleet_statistics(_model(_config(msg)), fleet.train)
    metrics = MetricRecord({"num-examples": len(fleet.train)})
    return Message(RecordDict({"arrays": ArrayRecord([vector]), "metrics": metrics}), reply_to=msg)


def make_client_app(mods: Sequence[Mod] | None = None) -> ClientApp:
    """A ClientApp with the ``train``, ``evaluate`` and ``query.stats`` handlers. ``mods``
    wrap every handler (first = outermost); add
    :func:`battery_fl.flower.secagg.secagg_mod` for secure aggregation (the default
    :data:`app` has it: it only acts on secure-aggregation messages)."""
    client_app = ClientApp(mods=list(mods) if mods is not None else None)
    client_app.train()(train)
    client_app.evaluate()(evaluate)
    client_app.query(STATS_ACTION)(query_statistics)
    return client_app


def _default_app() -> ClientApp:
    from battery_fl.flower.secagg import secagg_mod

    return make_client_app(mods=[secagg_mod])


#: The ready ClientApp (``battery_fl.flower.client:app``), secure aggregation included.
app: ClientApp = _default_app()
