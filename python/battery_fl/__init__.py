"""battery_fl: federated, privacy-preserving battery-lifetime prediction.

Fleets keep their cycling data at home; the model travels. The logic lives in the Rust core
(``battery-fl-core``); this package re-exports its bindings with numpy in and out:

- data: :class:`Cell`, :class:`Cycle`, :func:`load_cell`, :func:`load_cells`, :func:`load_fleets`
- genome fingerprints: :class:`GenomeFingerprint`
- features: :class:`Featurizer` (six channels, float32 ``(6, cycles, interp_dim)``)
- models: :class:`BatLiNet` (named recipes: :func:`batlinet_preset`), :class:`LinearModel`,
  :class:`HybridModel` (BatLiNet on the linear model's residuals), :class:`VarianceModel`
- aggregation: :class:`FedAvg`, :class:`FedProx`, :class:`FedAdam`, :class:`FedYogi`,
  :class:`FedAdagrad`, :class:`FedMedian`, :class:`FedTrimmedAvg`; :func:`aggregator_for`
  (the one a federation config's ``strategy`` names, as the core builds it)
- federation: :func:`federate_linear` (:class:`LinearFederation`, :class:`LinearFleet`;
  :class:`LinearSteps` for fleets on different machines),
  :class:`Simulation` (core defaults: :meth:`Simulation.default_config`; checks:
  :func:`check_federation_config`, :func:`holds_out_validation_cells`),
  :class:`FleetClient` (one fleet's side of a round, for Flower nodes), :func:`job_seed`,
  :func:`select_clients`,
  :func:`strategy_needs_only_the_sum`
- submodules :mod:`battery_fl.dp`, :mod:`battery_fl.secagg`, :mod:`battery_fl.synthetic`;
  optional :mod:`battery_fl.flower` (``[flower]`` extra) and :mod:`battery_fl.plot`
  (``[plot]`` extra: the main job's pictures with matplotlib)
- errors: :class:`BatteryFlError` and its subclasses

The native module links the libtorch of the ``torch`` package, pinned to ``torch==2.13.0``
(the version ``tch`` 0.26 is built against). The wheel does not bundle libtorch: importing
``battery_fl`` loads libtorch's shared libraries from the installed torch package without
importing ``torch`` itself (about 0.3 s instead of about 3 s; see ``battery_fl._libtorch``).

>>> import battery_fl
>>> isinstance(battery_fl.__version__, str)
True
>>> issubclass(battery_fl.ConfigError, (battery_fl.BatteryFlError, ValueError))
True
"""

# libtorch must be loaded before the native module: _core links libtorch_cpu/libc10 by
# soname, and the dynamic loader resolves them to the copies loaded here.
from battery_fl import _libtorch

_libtorch.load()

try:
    from battery_fl._core import (
        BATLINET_PRESETS,
        SCORE_BINS,
        AggregationError,
        BatLiNet,
        BatteryFlError,
        Cell,
        ConfigError,
        Cycle,
        DataError,
        Featurizer,
        FedAdagrad,
        FedAdam,
        FedAvg,
        FedMedian,
        FedProx,
        FedTrimmedAvg,
        FedYogi,
        FleetClient,
        GatedModel,
        GenomeFingerprint,
        HybridModel,
        IntervalCalibration,
        LinearFederation,
        LinearFleet,
        LinearModel,
        LinearPredictions,
        LinearSteps,
        ModelError,
        Predictions,
        PrivacyError,
        SecAggError,
        Simulation,
        VarianceModel,
        __version__,
        aggregator_for,
        batlinet_preset,
        check_federation_config,
        federate_linear,
        holds_out_validation_cells,
        interval_summary,
        job_seed,
        load_cell,
        load_cells,
        load_fleets,
        membership_auc,
        memory_policy,
        partition_updates,
        pooled_interval_summary,
        select_clients,
        set_memory_policy,
        strategy_needs_only_the_sum,
    )
except ImportError as err:  # pragma: no cover - only on a broken install
    raise ImportError(
        f"battery_fl's native module failed to load against {_libtorch.torch_dir()}; "
        f"battery_fl is built against torch=={_libtorch.TORCH_VERSION} ({err})"
    ) from err

from battery_fl import dp, secagg, synthetic  # noqa: E402 (they need the native module)

__all__ = [
    "BATLINET_PRESETS",
    "AggregationError",
    "BatLiNet",
    "BatteryFlError",
    "Cell",
    "ConfigError",
    "Cycle",
    "DataError",
    "FedAdagrad",
    "FedAdam",
    "FedAvg",
    "FedMedian",
    "FedProx",
    "FedTrimmedAvg",
    "FedYogi",
    "Featurizer",
    "FleetClient",
    "GatedModel",
    "GenomeFingerprint",
    "HybridModel",
    "IntervalCalibration",
    "LinearFederation",
    "LinearFleet",
    "LinearModel",
    "LinearPredictions",
    "LinearSteps",
    "ModelError",
    "Predictions",
    "PrivacyError",
    "SCORE_BINS",
    "SecAggError",
    "Simulation",
    "VarianceModel",
    "__version__",
    "aggregator_for",
    "batlinet_preset",
    "check_federation_config",
    "dp",
    "federate_linear",
    "holds_out_validation_cells",
    "interval_summary",
    "job_seed",
    "load_cell",
    "load_cells",
    "load_fleets",
    "membership_auc",
    "memory_policy",
    "partition_updates",
    "pooled_interval_summary",
    "secagg",
    "select_clients",
    "set_memory_policy",
    "strategy_needs_only_the_sum",
    "synthetic",
]
