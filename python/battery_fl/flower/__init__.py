"""Flower integration: battery-fl as the distributed engine for fleets on many machines.

Pinned to ``flwr==1.41.0`` (``pip install "battery-fl[flower]"``). Each SuperNode holds
one fleet's cells; the model, not the data, travels:

- :mod:`battery_fl.flower.client`: the ClientApp (``battery_fl.flower.client:app``) whose
  ``train`` handler trains :class:`battery_fl.BatLiNet` locally on the fleet's own cells
  (:class:`battery_fl.FleetClient`, personal state kept on the node) and returns its weights
  and sample count, optionally clipped and noised with our DP; ``evaluate`` (global and
  personalized RMSE) and ``query.stats`` handlers; :func:`make_client_app` for custom mod
  lists.
- :mod:`battery_fl.flower.strategy`: :class:`BatteryFlStrategy`, a Message-API strategy
  aggregating with our Rust aggregators and reporting ε from our RDP accountant.
- :mod:`battery_fl.flower.secagg`: our SecAgg+ as a ServerApp workflow
  (:class:`SecAggWorkflow`) and a ClientApp mod (:func:`secagg_mod`) over Flower's
  Message/Grid API, messages as bytes (not Flower's ``secaggplus_mod``).
- :mod:`battery_fl.flower.server`: the ServerApp (``battery_fl.flower.server:app``):
  statistics round, then the training rounds; :func:`write_app` writes a Flower app
  directory for ``flwr run``.
- :mod:`battery_fl.flower.local`: :class:`LocalGrid`, an in-process ``Grid`` (ServerApp and
  ClientApp nodes in one process, no Ray) for tests and quick runs.
- :mod:`battery_fl.flower.polling`: :class:`PollingGrid`, replies pulled every 0.25 s
  instead of Flower's fixed 3 s (the ServerApp uses it).
- :mod:`battery_fl.flower.settings`: run config (:class:`FederationSettings`) and node
  config (:func:`load_fleet`: ``data-dir`` or a synthetic fleet).

>>> from battery_fl import flower
>>> flower.FederationSettings().strategy, flower.secagg_mod.__name__
('fed_prox', 'secagg_mod')
"""

import warnings as _warnings

try:
    with _warnings.catch_warnings():
        # flwr 1.41 imports typer, which uses an API that click 8.3 deprecates (not ours)
        _warnings.filterwarnings("ignore", r"'click\.[\w.]+' is deprecated", DeprecationWarning)
        import flwr as _flwr
except ImportError as err:  # pragma: no cover - only without the optional dependency
    raise ImportError(
        "battery_fl.flower needs Flower: pip install 'battery-fl[flower]' (flwr==1.41.0)"
    ) from err

from battery_fl.flower.client import (
    evaluate,
    fleet_statistics,
    make_client_app,
    query_statistics,
    train,
)
from battery_fl.flower.local import LocalGrid
from battery_fl.flower.polling import PollingGrid
from battery_fl.flower.secagg import SecAggWorkflow, dropout_mod, secagg_mod
from battery_fl.flower.server import (
    apply_statistics,
    collect_statistics,
    run_federation,
    write_app,
)
from battery_fl.flower.settings import (
    FederationSettings,
    FleetCells,
    load_fleet,
)
from battery_fl.flower.strategy import BatteryFlStrategy, DpConfig

#: The Flower version this integration is built and tested against.
FLWR_VERSION = "1.41.0"

__all__ = [
    "FLWR_VERSION",
    "BatteryFlStrategy",
    "DpConfig",
    "FederationSettings",
    "FleetCells",
    "LocalGrid",
    "PollingGrid",
    "SecAggWorkflow",
    "apply_statistics",
    "collect_statistics",
    "dropout_mod",
    "evaluate",
    "fleet_statistics",
    "load_fleet",
    "make_client_app",
    "query_statistics",
    "run_federation",
    "secagg_mod",
    "train",
    "write_app",
]

del _flwr, _warnings
