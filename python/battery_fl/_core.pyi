"""Type stubs for the native module ``battery_fl._core`` (checked by ``mypy.stubtest``)."""

import os
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal, NamedTuple, Self, final, overload

import numpy as np
import numpy.typing as npt

__all__ = [
    "BATLINET_PRESETS",
    "batlinet_preset",
    "membership_auc",
    "dp_default_adaptive_config",
    "dp_default_config",
    "dp_default_record_config",
    "secagg_default_config",
    "DEFAULT_CALIBRATION_FOLDS",
    "DEFAULT_CHOICE_MARGIN",
    "DEFAULT_COVERAGE",
    "DEFAULT_PROTOCOL_GROUPS",
    "LABEL_SCOPES",
    "PERSONALIZATIONS",
    "SCORE_BINS",
    "STRATEGIES",
    "AggregationError",
    "BatLiNet",
    "BatteryFlError",
    "Cell",
    "ConfigError",
    "Cycle",
    "DataError",
    "DpFloor",
    "Featurizer",
    "FedAdagrad",
    "FedAdam",
    "FedAvg",
    "FedMedian",
    "FedProx",
    "FedTrimmedAvg",
    "FedYogi",
    "Fleet",
    "FleetClient",
    "GaussianNoise",
    "GenomeFingerprint",
    "GatedModel",
    "HybridModel",
    "IntervalCalibration",
    "LinearFederation",
    "LinearFleet",
    "LinearModel",
    "LinearPredictions",
    "LinearSteps",
    "ModelError",
    "NodeSession",
    "Predictions",
    "PrivacyError",
    "RdpAccountant",
    "RoundNoise",
    "SecAggClient",
    "SecAggError",
    "ServerDp",
    "SecAggResult",
    "SecAggServer",
    "Simulation",
    "VarianceModel",
    "__version__",
    "add_noise",
    "aggregator_for",
    "check_federation_config",
    "check_mode",
    "interval_summary",
    "clip",
    "federate_linear",
    "generate_cell",
    "generate_fleets",
    "holds_out_validation_cells",
    "job_seed",
    "l2_norm",
    "load_cell",
    "load_cells",
    "load_fleets",
    "memory_policy",
    "partition_updates",
    "pooled_interval_summary",
    "protocol_threshold",
    "set_memory_policy",
    "statistics_protocol",
    "public_cells",
    "PUBLIC_SEED",
    "PUBLIC_FLEETS",
    "PUBLIC_CELLS_PER_FLEET",
    "STATISTICS_BOUND",
    "encode_statistics",
    "decode_statistics",
    "select_clients",
    "simulate_round",
    "strategy_needs_only_the_sum",
    "verifying_key",
]

__version__: str
BATLINET_PRESETS: tuple[str, ...]

def batlinet_preset(name: str) -> dict[str, dict[str, Any]]: ...

DEFAULT_CALIBRATION_FOLDS: int
DEFAULT_CHOICE_MARGIN: float
DEFAULT_COVERAGE: float
DEFAULT_PROTOCOL_GROUPS: int
LABEL_SCOPES: tuple[str, ...]
PERSONALIZATIONS: tuple[str, ...]
SCORE_BINS: int
STRATEGIES: tuple[str, ...]

def dp_default_adaptive_config() -> dict[str, Any]: ...
def dp_default_config() -> dict[str, Any]: ...
def dp_default_record_config() -> dict[str, Any]: ...
def membership_auc(
    model: BatLiNet,
    members: Sequence[Cell],
    non_members: Sequence[Cell],
    references: Sequence[Cell],
) -> float: ...
def secagg_default_config() -> dict[str, Any]: ...

_Path = str | os.PathLike[str]
_F32 = npt.NDArray[np.float32]
_F64 = npt.NDArray[np.float64]
_Update = npt.ArrayLike | Sequence[npt.ArrayLike]

# errors --------------------------------------------------------------------------------

# `kind` is always set; the other attributes only on the kinds that carry them.
class BatteryFlError(Exception):
    kind: str

class DataError(BatteryFlError, ValueError):
    path: str  # io, parse
    cell_id: str  # invalid_data
    cycle: int | None  # invalid_data
    field: str  # invalid_data
    expected: list[int]  # shape
    needed: int  # not_enough_data
    got: list[int] | int  # shape, not_enough_data

class ConfigError(BatteryFlError, ValueError):
    field: str

class ModelError(BatteryFlError, RuntimeError): ...

class AggregationError(BatteryFlError, ValueError):
    client_id: str  # rejected_update

class PrivacyError(BatteryFlError, ValueError):
    epsilon: float  # budget_exhausted
    max_epsilon: float  # budget_exhausted

class SecAggError(BatteryFlError, ValueError):
    stage: str
    needed: int  # below_threshold
    got: int  # below_threshold

# data ----------------------------------------------------------------------------------

@final
class Cycle:
    def __new__(
        cls,
        cycle: int,
        voltage_v: npt.ArrayLike,
        *,
        time_s: npt.ArrayLike | None = None,
        current_a: npt.ArrayLike | None = None,
        charge_capacity_ah: npt.ArrayLike | None = None,
        discharge_capacity_ah: npt.ArrayLike | None = None,
        temperature_c: npt.ArrayLike | None = None,
    ) -> Self: ...
    @property
    def cycle(self) -> int: ...
    @property
    def voltage_v(self) -> _F64: ...
    @property
    def time_s(self) -> _F64 | None: ...
    @property
    def current_a(self) -> _F64 | None: ...
    @property
    def charge_capacity_ah(self) -> _F64 | None: ...
    @property
    def discharge_capacity_ah(self) -> _F64 | None: ...
    @property
    def temperature_c(self) -> _F64 | None: ...
    def __len__(self) -> int: ...
    def __eq__(self, value: object, /) -> bool: ...
    def __ne__(self, value: object, /) -> bool: ...

@final
class Cell:
    def __new__(
        cls,
        cell_id: str,
        nominal_capacity_ah: float,
        cycles: Sequence[Cycle],
        *,
        cycle_life: int | None = None,
        source: str | None = None,
        cathode: str | None = None,
        anode: str | None = None,
        electrolyte: str | None = None,
        form_factor: str | None = None,
        voltage_min_v: float | None = None,
        voltage_max_v: float | None = None,
        temperature_c: float | None = None,
        protocol: str | None = None,
    ) -> Self: ...
    @property
    def cell_id(self) -> str: ...
    @property
    def nominal_capacity_ah(self) -> float: ...
    @property
    def cycles(self) -> list[Cycle]: ...
    @property
    def recorded_cycle_life(self) -> int | None: ...
    @property
    def source(self) -> str | None: ...
    @property
    def cathode(self) -> str | None: ...
    @property
    def anode(self) -> str | None: ...
    @property
    def electrolyte(self) -> str | None: ...
    @property
    def form_factor(self) -> str | None: ...
    @property
    def voltage_min_v(self) -> float | None: ...
    @property
    def voltage_max_v(self) -> float | None: ...
    @property
    def temperature_c(self) -> float | None: ...
    @property
    def protocol(self) -> str | None: ...
    @property
    def capacity_trajectory(self) -> _F64: ...
    @property
    def suspect_cycles(self) -> list[int]: ...
    @property
    def has_full_signals(self) -> bool: ...
    def cycle_life(
        self, eol: float = 0.8, *, median_window: int = 1, prefer_recorded: bool = True
    ) -> int | None: ...
    def validate(self) -> None: ...
    def clean(
        self,
        *,
        min_capacity_fraction: float = -0.02,
        max_capacity_fraction: float = 1.2,
        max_capacity_fall_ah: float = 0.01,
        drop_source_suspects: bool = False,
    ) -> tuple[Cell, list[int]]: ...
    def to_json(self) -> str: ...
    @classmethod
    def from_json(cls, text: str) -> Cell: ...
    def save(self, path: _Path) -> None: ...
    def __len__(self) -> int: ...
    def __eq__(self, value: object, /) -> bool: ...
    def __ne__(self, value: object, /) -> bool: ...
    def __reduce__(self) -> tuple[Any, tuple[str]]: ...

def load_cell(path: _Path) -> Cell: ...
def load_cells(folder: _Path) -> list[Cell]: ...
def load_fleets(
    folder: _Path, *, by: str, fleets: int | None = None
) -> list[tuple[str, list[Cell], list[Cell]]]: ...

# features ------------------------------------------------------------------------------

@final
class Featurizer:
    channel_names: ClassVar[tuple[str, ...]]
    def __new__(
        cls,
        cycles: int = 100,
        interp_dim: int = 1000,
        *,
        first_cycle: int = 1,
        q_min: float = 0.0,
        q_max: float = 1.2,
        current_threshold_a: float = 0.1,
        diff_base_cycle: int = 10,
        fill_missing_cycles: bool = True,
        edge_points: int = 50,
        edge_std: float = 3.0,
        glitch_width: int = 25,
        glitch_std: float = 3.0,
        cycle_std: float = 5.0,
    ) -> Self: ...
    @property
    def cycles(self) -> int: ...
    @property
    def interp_dim(self) -> int: ...
    @property
    def first_cycle(self) -> int: ...
    @property
    def diff_base_cycle(self) -> int: ...
    @property
    def grid(self) -> _F64: ...
    @property
    def output_shape(self) -> tuple[int, int, int]: ...
    def transform(self, cell: Cell) -> _F32: ...
    def transform_many(self, cells: Sequence[Cell]) -> _F32: ...
    def branch_a(self, cell: Cell) -> _F32: ...
    def to_json(self) -> str: ...
    @classmethod
    def from_json(cls, text: str) -> Featurizer: ...
    def __eq__(self, value: object, /) -> bool: ...
    def __ne__(self, value: object, /) -> bool: ...
    def __reduce__(self) -> tuple[Any, tuple[str]]: ...

# genome --------------------------------------------------------------------------------

@final
class GenomeFingerprint:
    @classmethod
    def from_cell(cls, cell: Cell) -> GenomeFingerprint: ...
    def distance(self, other: GenomeFingerprint) -> float: ...
    @property
    def cell_id(self) -> str: ...
    @property
    def cathode(self) -> str | None: ...
    @property
    def anode(self) -> str | None: ...
    @property
    def form_factor(self) -> str | None: ...
    @property
    def nominal_capacity_ah(self) -> float: ...
    @property
    def voltage_window(self) -> tuple[float, float] | None: ...
    @property
    def composition(self) -> dict[str, float]: ...
    @property
    def purity_ppm(self) -> dict[str, float]: ...
    @property
    def capacity_ratio(self) -> float: ...
    @property
    def v_of_q(self) -> _F64: ...
    @property
    def dqdv(self) -> _F64: ...
    @property
    def peaks(self) -> list[tuple[float, float]]: ...
    def to_json(self) -> str: ...
    @classmethod
    def from_json(cls, text: str) -> GenomeFingerprint: ...
    def __eq__(self, value: object, /) -> bool: ...
    def __ne__(self, value: object, /) -> bool: ...
    def __reduce__(self) -> tuple[Any, tuple[str]]: ...

# model ---------------------------------------------------------------------------------

@final
class BatLiNet:
    def __new__(
        cls,
        *,
        featurizer: Featurizer | None = None,
        input_channels: Sequence[int] | None = None,
        conv_channels: int = 32,
        kernel: int = 3,
        pool: int = 3,
        alpha: float = 0.5,
        train_references: int = 2,
        inference_references: int = 32,
        selection: str = "random",
        learning_rate: float = 0.001,
        weight_decay: float = 0.01,
        batch_size: int = 128,
        epochs: int = 200,
        seed: int = 0,
        device: str = "cpu",
        single_branch: bool = False,
        progress: bool = True,
        inference_batch: int = 16,
        clean_pairs: bool = False,
        inter_features: str = "raw",
        lr_schedule: str = "constant",
        weight_averaging: float = 0.0,
        label_grouping: str = "pooled",
    ) -> Self: ...
    @classmethod
    def default_config(cls) -> dict[str, Any]: ...
    @property
    def config(self) -> dict[str, Any]: ...
    @property
    def featurizer(self) -> Featurizer: ...
    @property
    def input_shape(self) -> tuple[int, int, int]: ...
    def fit(self, cells: Sequence[Cell]) -> list[float]: ...
    def train(
        self,
        cells: Sequence[Cell],
        *,
        epochs: int | None = None,
        seed: int | None = None,
        mu: float = 0.0,
        global_parameters: Sequence[npt.ArrayLike] | None = None,
        learning_rate: float | None = None,
        trainable: str = "all",
    ) -> list[float]: ...
    def fine_tune(
        self, cells: Sequence[Cell], *, epochs: int, trainable: str = "head_only"
    ) -> list[float]: ...
    @overload
    def predict(
        self,
        cells: Sequence[Cell],
        references: Sequence[Cell] | None = None,
        *,
        k: int | None = None,
        selection: str | None = None,
        seed: int | None = None,
        coverage: None = None,
        calibration: None = None,
    ) -> _F64: ...
    @overload
    def predict(
        self,
        cells: Sequence[Cell],
        references: Sequence[Cell] | None = None,
        *,
        k: None = None,
        selection: None = None,
        seed: None = None,
        coverage: float,
        calibration: IntervalCalibration,
    ) -> Predictions: ...
    def predict_bounded(
        self,
        cells: Sequence[Cell],
        references: Sequence[Cell] | None = None,
        *,
        k: int | None = None,
        selection: str | None = None,
        seed: int | None = None,
    ) -> tuple[_F64, npt.NDArray[np.bool_]]: ...
    def calibrate(
        self,
        training: Sequence[Cell],
        calibration: Sequence[Cell],
        references: Sequence[Cell] | None = None,
    ) -> IntervalCalibration: ...
    def cross_calibrate(
        self, training: Sequence[Cell], *, folds: int | None = None
    ) -> IntervalCalibration: ...
    def set_public_statistics(self, public: Sequence[Cell]) -> None: ...
    def start_private(
        self, public: Sequence[Cell], *, public_pretraining: bool | None = None
    ) -> None: ...
    def train_private(
        self,
        cells: Sequence[Cell],
        public: Sequence[Cell],
        *,
        epsilon: float | None = None,
        noise_multiplier: float | None = None,
        clipping_norm: float | None = None,
        delta: float | None = None,
        noise_seed: int | None = None,
        epochs: int | None = None,
        seed: int | None = None,
        learning_rate_scale: float | None = None,
    ) -> dict[str, Any]: ...
    def get_parameters(self) -> list[_F32]: ...
    def set_parameters(self, parameters: Sequence[npt.ArrayLike]) -> None: ...
    @property
    def parameter_names(self) -> list[str]: ...
    @property
    def num_parameters(self) -> int: ...
    @property
    def label_transform(self) -> tuple[float, float] | None: ...
    def set_label_transform(self, mean: float, std: float) -> None: ...
    def fleet_statistics(self, cells: Sequence[Cell]) -> _F64: ...
    LABEL_STATISTICS_LEN: ClassVar[int]
    def set_label_statistics(self, total: Sequence[float]) -> None: ...
    def set_shared_statistics(self, total: Sequence[float]) -> None: ...
    def local_statistics(self, cells: Sequence[Cell]) -> tuple[_F64, _F64]: ...
    def set_statistics(self, labels: Sequence[float], inputs: Sequence[float]) -> None: ...
    @property
    def input_scales(self) -> tuple[_F32, _F32] | None: ...
    def set_input_scales(self, branch_a: Sequence[float], branch_b: Sequence[float]) -> None: ...
    def input_statistics(self, cells: Sequence[Cell]) -> _F64: ...
    def set_input_statistics(self, statistics: Sequence[float]) -> None: ...
    def save(self, path: _Path) -> None: ...
    @classmethod
    def load(cls, path: _Path) -> BatLiNet: ...
    def to_bytes(self) -> bytes: ...
    @classmethod
    def from_bytes(cls, data: bytes) -> BatLiNet: ...
    def __reduce__(self) -> tuple[Any, tuple[bytes]]: ...

class LinearPredictions(NamedTuple):
    life: _F64
    lower: _F64
    upper: _F64
    out_of_distribution: npt.NDArray[np.bool_]

@final
class LinearModel:
    @classmethod
    def fit(cls, cells: Sequence[Cell]) -> LinearModel: ...
    def predict(self, cells: Sequence[Cell]) -> _F64: ...
    def predict_bounded(self, cells: Sequence[Cell]) -> tuple[_F64, npt.NDArray[np.bool_]]: ...
    def predict_intervals(
        self,
        cells: Sequence[Cell],
        calibration: Sequence[Cell],
        *,
        coverage: float | None = None,
        fitted: bool = True,
    ) -> LinearPredictions: ...
    @property
    def feature_set(self) -> str: ...
    @property
    def lambda_(self) -> float: ...
    def to_json(self) -> str: ...
    @classmethod
    def from_json(cls, text: str) -> LinearModel: ...
    def __eq__(self, value: object, /) -> bool: ...
    def __ne__(self, value: object, /) -> bool: ...
    def __reduce__(self) -> tuple[Any, tuple[str]]: ...

@final
class LinearFleet:
    def predict(self, cells: Sequence[Cell]) -> _F64: ...
    def predict_intervals(
        self, cells: Sequence[Cell], train: Sequence[Cell], *, coverage: float | None = None
    ) -> LinearPredictions: ...
    @property
    def local(self) -> LinearModel: ...
    @property
    def personalized(self) -> LinearModel: ...
    @property
    def shared(self) -> LinearModel: ...
    @property
    def global_model(self) -> LinearModel: ...
    @property
    def choices(self) -> list[dict[str, Any]]: ...
    @property
    def errors(self) -> tuple[float, float]: ...

@final
class LinearFederation:
    @property
    def global_model(self) -> LinearModel: ...
    @property
    def fleets(self) -> list[LinearFleet]: ...
    @property
    def privacy(self) -> dict[str, Any] | None: ...

@final
class IntervalCalibration:
    def __len__(self) -> int: ...
    @property
    def scale(self) -> float: ...
    @property
    def max_distance(self) -> float: ...
    @property
    def by_chemistry(self) -> bool: ...
    @property
    def pooled(self) -> bool: ...
    def with_by_chemistry(self, on: bool) -> IntervalCalibration: ...
    def to_json(self) -> str: ...
    @classmethod
    def from_json(cls, text: str) -> IntervalCalibration: ...
    def __reduce__(self) -> tuple[Any, tuple[str]]: ...

@final
class Predictions:
    def __len__(self) -> int: ...
    @property
    def life(self) -> _F64: ...
    @property
    def lower(self) -> _F64: ...
    @property
    def upper(self) -> _F64: ...
    @property
    def spread(self) -> _F64: ...
    @property
    def reference_low(self) -> _F64: ...
    @property
    def reference_high(self) -> _F64: ...
    @property
    def training_distance(self) -> _F64: ...
    @property
    def reference_distance(self) -> _F64: ...
    @property
    def bounded(self) -> npt.NDArray[np.bool_]: ...
    @property
    def outside_label_range(self) -> npt.NDArray[np.bool_]: ...
    @property
    def out_of_distribution(self) -> npt.NDArray[np.bool_]: ...

@final
class GatedModel:
    @classmethod
    def fit(cls, cells: Sequence[Cell], model: BatLiNet, members: int = ...) -> GatedModel: ...
    def save(self, path: _Path) -> None: ...
    @classmethod
    def load(cls, path: _Path) -> GatedModel: ...
    def predict(self, cells: Sequence[Cell]) -> _F64: ...
    def extrapolates(self, cells: Sequence[Cell]) -> npt.NDArray[np.bool_]: ...
    @property
    def label_range(self) -> tuple[float, float]: ...
    @property
    def members(self) -> int: ...

@final
class HybridModel:
    @classmethod
    def fit(cls, cells: Sequence[Cell], model: BatLiNet) -> HybridModel: ...
    def save(self, path: _Path) -> None: ...
    @classmethod
    def load(cls, path: _Path) -> HybridModel: ...
    def predict(self, cells: Sequence[Cell]) -> _F64: ...
    @property
    def linear(self) -> LinearModel: ...

@final
class LinearSteps:
    def __new__(
        cls,
        fleets: int,
        *,
        secure_aggregation: bool = True,
        per_chemistry_choice: bool = False,
        choice_margin: float | None = None,
        epsilon: float | None = None,
        noise_seed: int | None = None,
    ) -> Self: ...
    @property
    def share_len(self) -> int: ...
    def errors_len(self, total: Sequence[float] | _F64) -> int: ...
    def share(self, cells: Sequence[Cell]) -> _F64: ...
    def errors(self, cells: Sequence[Cell], total: Sequence[float] | _F64) -> _F64: ...
    def fleet(
        self, cells: Sequence[Cell], total: Sequence[float] | _F64, errors: Sequence[float] | _F64
    ) -> LinearFleet: ...
    def global_model(
        self, total: Sequence[float] | _F64, errors: Sequence[float] | _F64
    ) -> tuple[LinearModel, float]: ...
    @property
    def privacy(self) -> dict[str, Any] | None: ...

def federate_linear(
    fleets: Sequence[Sequence[Cell]],
    *,
    secure_aggregation: bool = True,
    per_chemistry_choice: bool = False,
    choice_margin: float | None = None,
    seed: int = 0,
    epsilon: float | None = None,
    noise_seed: int | None = None,
) -> LinearFederation: ...

@final
class VarianceModel:
    @classmethod
    def fit(
        cls,
        cells: Sequence[Cell],
        *,
        early_cycle: int = 10,
        late_cycle: int = 100,
        current_threshold_a: float = 0.1,
    ) -> VarianceModel: ...
    def predict(self, cells: Sequence[Cell]) -> _F64: ...
    def feature(self, cell: Cell) -> float: ...
    @property
    def intercept(self) -> float: ...
    @property
    def slope(self) -> float: ...
    @property
    def early_cycle(self) -> int: ...
    @property
    def late_cycle(self) -> int: ...
    def to_json(self) -> str: ...
    @classmethod
    def from_json(cls, text: str) -> VarianceModel: ...
    def __eq__(self, value: object, /) -> bool: ...
    def __ne__(self, value: object, /) -> bool: ...
    def __reduce__(self) -> tuple[Any, tuple[str]]: ...

def set_memory_policy(policy: Literal["retain", "system"]) -> None: ...
def memory_policy() -> Literal["retain", "system"]: ...

# aggregation ---------------------------------------------------------------------------

class _Aggregator:
    def aggregate(
        self,
        updates: Sequence[Sequence[npt.ArrayLike]],
        weights: Sequence[float],
        *,
        current: Sequence[npt.ArrayLike] | None = None,
    ) -> list[_F32]: ...
    @property
    def name(self) -> str: ...
    def to_json(self) -> str: ...
    @classmethod
    def from_json(cls, text: str) -> Self: ...
    def __reduce__(self) -> tuple[Any, tuple[str]]: ...

@final
class FedAvg(_Aggregator):
    def __new__(cls, *, max_delta_norm: float | None = None) -> Self: ...

@final
class FedProx(_Aggregator):
    def __new__(cls, mu: float, *, max_delta_norm: float | None = None) -> Self: ...
    @property
    def mu(self) -> float: ...

class _ServerOptimizer(_Aggregator):
    def __new__(
        cls,
        initial_parameters: Sequence[npt.ArrayLike] | None = None,
        *,
        eta: float | None = None,
        beta1: float | None = None,
        beta2: float | None = None,
        tau: float | None = None,
        max_delta_norm: float | None = None,
    ) -> Self: ...

@final
class FedAdam(_ServerOptimizer): ...

@final
class FedYogi(_ServerOptimizer): ...

@final
class FedAdagrad(_ServerOptimizer): ...

@final
class FedMedian(_Aggregator):
    def __new__(cls, *, max_delta_norm: float | None = None) -> Self: ...

@final
class FedTrimmedAvg(_Aggregator):
    def __new__(cls, beta: float | None = None, *, max_delta_norm: float | None = None) -> Self: ...
    @property
    def beta(self) -> float: ...

def partition_updates(
    updates: Sequence[Sequence[npt.ArrayLike]],
    current: Sequence[npt.ArrayLike],
    *,
    max_delta_norm: float | None = None,
) -> tuple[list[int], dict[int, str]]: ...
def aggregator_for(
    config: dict[str, Any] | None = None,
    *,
    initial_parameters: Sequence[npt.ArrayLike] | None = None,
) -> FedAvg | FedProx | FedAdam | FedYogi | FedAdagrad | FedMedian | FedTrimmedAvg: ...

# differential privacy (battery_fl.dp) --------------------------------------------------

def clip(update: _Update, max_norm: float) -> Any: ...
def l2_norm(update: _Update) -> float: ...
def add_noise(update: _Update, std: float, *, seed: int | None = None) -> Any: ...

@final
class GaussianNoise:
    def __new__(cls, seed: int | None = None) -> Self: ...
    def add(self, update: _Update, std: float) -> Any: ...
    def sample(self, std: float) -> float: ...
    @property
    def calls(self) -> int: ...

@final
class ServerDp:
    def __new__(
        cls,
        noise_multiplier: float,
        clipping_norm: float,
        *,
        mode: str | None = None,
        target_delta: float | None = None,
        max_epsilon: float | None = None,
        seed: int | None = None,
        secure_aggregation: bool = False,
        adaptive: Mapping[str, Any] | None = None,
    ) -> Self: ...
    def client_noise(
        self, sampled: int, *, min_survivors: int | None = None
    ) -> tuple[float, float]: ...
    def release_updates(
        self,
        deltas: Sequence[Sequence[npt.ArrayLike]],
        sampled: int,
        *,
        min_survivors: int | None = None,
    ) -> list[_F32]: ...
    def release(
        self,
        mean: Sequence[npt.ArrayLike],
        arrived: int,
        sampled: int,
        *,
        min_survivors: int | None = None,
    ) -> list[_F32]: ...
    @property
    def clipping_norm(self) -> float: ...
    @property
    def epsilon(self) -> float | None: ...
    @property
    def rounds(self) -> int: ...

@final
class RoundNoise:
    def __new__(
        cls,
        mode: str,
        noise_multiplier: float,
        clipping_norm: float,
        num_clients: int,
        *,
        min_survivors: int | None = None,
    ) -> Self: ...
    def effective_noise_multiplier(self, survivors: int) -> float: ...
    @property
    def sum_std(self) -> float: ...
    @property
    def client_std(self) -> float: ...
    @property
    def server_sum_std(self) -> float: ...
    @property
    def server_mean_std(self) -> float: ...

def check_mode(mode: str, *, secure_aggregation: bool) -> None: ...

@final
class DpFloor:
    def __new__(
        cls, clipping_norm: float, noise_multiplier: float, *, noise_shares: int = 1
    ) -> Self: ...
    def check(self, clipping_norm: float | None, noise_std: float) -> None: ...
    def min_noise_std(self, clipping_norm: float) -> float: ...

@final
class RdpAccountant:
    def __new__(cls, *, max_epsilon: float | None = None, delta: float | None = None) -> Self: ...
    def step(self, noise_multiplier: float, sample_rate: float, steps: int = 1) -> None: ...
    def epsilon(self, delta: float) -> float: ...
    def epsilon_after(
        self, noise_multiplier: float, sample_rate: float, steps: int, delta: float
    ) -> float: ...
    @property
    def steps(self) -> int: ...
    def to_json(self) -> str: ...
    @classmethod
    def from_json(cls, text: str) -> RdpAccountant: ...
    def __reduce__(self) -> tuple[Any, tuple[str]]: ...

# secure aggregation (battery_fl.secagg) ------------------------------------------------

@final
class SecAggResult:
    @property
    def round(self) -> int: ...
    @property
    def survivors(self) -> list[int]: ...
    @property
    def mean(self) -> _F32: ...
    @property
    def sum(self) -> _F32: ...
    @property
    def total_weight(self) -> float: ...
    @property
    def encoded_sum(self) -> npt.NDArray[np.uint64]: ...

@final
class SecAggServer:
    def __new__(
        cls,
        clients: Sequence[int],
        dim: int,
        *,
        round: int = 1,
        threshold: int | None = None,
        neighbours: int | None = None,
        clipping_range: float | None = None,
        target_range: int | None = None,
        modulus_bits: int | None = None,
        max_weight: float | None = None,
        num_clients: int | None = None,
        seed: bytes | None = None,
        pki: Mapping[int, bytes] | None = None,
        run: int = 0,
    ) -> Self: ...
    def setup(self) -> bytes: ...
    @property
    def stage(self) -> str: ...
    @property
    def u1(self) -> list[int]: ...
    @property
    def u2(self) -> list[int]: ...
    @property
    def u3(self) -> list[int]: ...
    def receive_keys(self, message: bytes, *, sender: int) -> None: ...
    def finish_advertise(self) -> dict[int, bytes]: ...
    def receive_shares(self, message: bytes, *, sender: int) -> None: ...
    def finish_share_keys(self) -> dict[int, bytes]: ...
    def receive_masked_input(self, message: bytes, *, sender: int) -> None: ...
    def finish_masked_input(self) -> dict[int, bytes]: ...
    def start_consistency_check(self) -> dict[int, bytes]: ...
    def receive_consistency(self, message: bytes, *, sender: int) -> None: ...
    def finish_consistency_check(self) -> dict[int, bytes]: ...
    def receive_unmask(self, message: bytes, *, sender: int) -> None: ...
    def finish(self) -> SecAggResult: ...

@final
class SecAggClient:
    def __new__(
        cls,
        client_id: int,
        setup: bytes,
        *,
        seed: bytes | None = None,
        identity_seed: bytes | None = None,
        pki: Mapping[int, bytes] | None = None,
        min_clients: int | None = None,
        min_threshold: int | None = None,
    ) -> Self: ...
    @property
    def client_id(self) -> int: ...
    @property
    def round(self) -> int: ...
    def advertise_keys(self) -> bytes: ...
    def share_keys(self, directory: bytes) -> bytes: ...
    def masked_input(self, forwarded: bytes, delta: npt.ArrayLike, weight: float) -> bytes: ...
    def consistency_check(self, check: bytes) -> bytes: ...
    def unmask(self, request: bytes) -> bytes: ...

def verifying_key(identity_seed: bytes) -> bytes: ...

STATISTICS_BOUND: float

def statistics_protocol(
    parties: int, *, threshold: int | None = None, neighbours: int | None = None
) -> dict[str, Any]: ...
def encode_statistics(values: npt.ArrayLike) -> _F32: ...
def decode_statistics(encoded_sum: npt.ArrayLike, *, survivors: int, parties: int) -> _F64: ...
def protocol_threshold(
    num_clients: int, *, threshold: int | None = None, neighbours: int | None = None
) -> int: ...

@final
class NodeSession:
    @staticmethod
    def start(
        client_id: int,
        run: int,
        setup: bytes,
        *,
        seed: bytes | None = None,
        min_clients: int | None = None,
        min_threshold: int | None = None,
        max_weight: float | None = None,
    ) -> tuple[NodeSession, bytes]: ...
    def answered(self, stage: int, request: bytes) -> bytes | None: ...
    def share_keys(self, directory: bytes) -> bytes: ...
    def masked_input(
        self, forwarded: bytes, vector: npt.ArrayLike, weight: float | None = None
    ) -> bytes: ...
    def unmask(self, request: bytes) -> bytes: ...
    @property
    def round(self) -> int: ...
    @property
    def threshold(self) -> int: ...
    @property
    def finished(self) -> bool: ...
    def to_bytes(self) -> bytes: ...
    @staticmethod
    def from_bytes(data: bytes) -> NodeSession: ...

def simulate_round(
    inputs: Sequence[npt.ArrayLike],
    *,
    threshold: int,
    drop: Mapping[int, int] | None = None,
    neighbours: int | None = None,
    modulus_bits: int | None = None,
    seed: int | None = None,
    clipping_range: float | None = None,
    target_range: int | None = None,
) -> _F32: ...

# federation ----------------------------------------------------------------------------

@final
class Simulation:
    def __new__(
        cls,
        fleets: Sequence[tuple[str, Sequence[Cell], Sequence[Cell]]],
        *,
        model: BatLiNet,
        rounds: int | None = None,
        clients_per_round: int | None = None,
        local_epochs: int | None = None,
        strategy: str | None = None,
        proximal_mu: float | None = None,
        trimmed_beta: float | None = None,
        server_optimizer: Mapping[str, Any] | None = None,
        secure_aggregation: bool | Mapping[str, Any] | None = None,
        dp: Mapping[str, Any] | None = None,
        clustering: Mapping[str, Any] | None = None,
        max_delta_norm: float | None = None,
        seed: int | None = None,
        inference_references: int | None = None,
        personalization: str | None = None,
        ditto_lambda: float | None = None,
        personal_epochs: int | None = None,
        validation_fraction: float | None = None,
        calibration_holdout: bool | None = None,
        choice_margin: float | None = None,
        label_scope: str | None = None,
        record_privacy: Mapping[str, Any] | None = None,
        public: Sequence[Cell] | None = None,
        checkpoint: _Path | None = None,
    ) -> Self: ...
    @classmethod
    def default_config(cls) -> dict[str, Any]: ...
    @property
    def config(self) -> dict[str, Any]: ...
    def run_round(self) -> dict[str, Any]: ...
    def run(self) -> list[dict[str, Any]]: ...
    @property
    def round(self) -> int: ...
    @property
    def is_finished(self) -> bool: ...
    @property
    def history(self) -> list[dict[str, Any]]: ...
    def global_parameters(self) -> list[_F32]: ...
    def global_model(self) -> BatLiNet: ...
    def fleet_model(self, fleet_id: str) -> BatLiNet: ...
    def calibrate_fleets(self) -> dict[str, IntervalCalibration]: ...
    @property
    def label_transform(self) -> tuple[float, float]: ...
    @property
    def input_scales(self) -> tuple[_F32, _F32]: ...

@final
class FleetClient:
    """One fleet's side of a federated round (``Simulation`` runs one per fleet): local
    training with the FedProx term and the fleet's personal model; the personal state is
    bytes that stay with the fleet."""

    def __new__(
        cls,
        config: Mapping[str, Any],
        index: int,
        model: BatLiNet,
        train: Sequence[Cell],
        *,
        public: Sequence[Cell] | None = None,
    ) -> Self: ...
    @property
    def keeps_state(self) -> bool: ...
    @property
    def keeps_fleet_model(self) -> bool: ...
    def record_epsilon(self, state: bytes) -> float | None: ...
    def initial_state(self, model: BatLiNet) -> bytes:
        """The first personal state (with ``auto``/``auto_head``: the fleet's own models, trained
        alone)."""
    def train(
        self,
        model: BatLiNet,
        global_parameters: Sequence[npt.ArrayLike],
        state: bytes,
        server_round: int,
    ) -> tuple[list[_F32], int, bytes]:
        """Local training: ``(weights to send, cells trained on, new state)``."""
    def personal_model(
        self,
        model: BatLiNet,
        global_parameters: Sequence[npt.ArrayLike],
        state: bytes,
        server_round: int,
    ) -> tuple[BatLiNet, bytes]:
        """The model the fleet uses after ``server_round`` (with the label transform and
        input scales it reads with), and the new state."""
    def evaluate(
        self,
        model: BatLiNet,
        global_parameters: Sequence[npt.ArrayLike],
        state: bytes,
        test: Sequence[Cell],
        server_round: int,
    ) -> tuple[float, float, bytes]:
        """``(rmse, personalized_rmse, new state)`` on labelled ``test`` cells, as the
        Simulation scores a fleet."""
    def shared_model(self, model: BatLiNet, global_parameters: Sequence[npt.ArrayLike]) -> BatLiNet:
        """The global weights as this fleet reads them (its own label transform with
        ``label_scope="fleet"``)."""
    def current_model(self, model: BatLiNet, state: bytes) -> BatLiNet:
        """The model the fleet uses now (after an evaluated round)."""
    def calibration_histogram(self, model: BatLiNet, state: bytes) -> _F64:
        """Counts of its held-out cells' conformal scores, for the secure sum (``auto``,
        ``auto_head``)."""
    def pooled_calibration(
        self, model: BatLiNet, state: bytes, summed: _F64
    ) -> IntervalCalibration:
        """Its interval calibration given every fleet's histograms summed."""
    @property
    def fit_cells(self) -> int:
        """Cells the fleet federates on (with ``auto``/``auto_head``: those not held out)."""

def job_seed(seed: int, round: int, client: int) -> int: ...
def interval_summary(
    lower: npt.ArrayLike, upper: npt.ArrayLike, flagged: npt.ArrayLike, lives: npt.ArrayLike
) -> dict[str, Any]: ...
def pooled_interval_summary(summaries: Sequence[dict[str, Any]]) -> dict[str, Any]: ...
def check_federation_config(config: dict[str, Any], *, fleets: int) -> None: ...
def holds_out_validation_cells(config: dict[str, Any]) -> bool: ...
def select_clients(seed: int, server_round: int, fleets: int, per_round: int) -> list[int]: ...
def strategy_needs_only_the_sum(strategy: str) -> bool: ...

# synthetic (battery_fl.synthetic) ------------------------------------------------------

@final
class Fleet:
    @property
    def id(self) -> str: ...
    @property
    def climate(self) -> str: ...
    @property
    def ambient_temperature_c(self) -> float: ...
    @property
    def chemistries(self) -> list[str]: ...
    @property
    def cells(self) -> list[Cell]: ...
    def __len__(self) -> int: ...

PUBLIC_SEED: int
PUBLIC_FLEETS: int
PUBLIC_CELLS_PER_FLEET: int

def public_cells(
    *,
    fleets: int | None = None,
    cells_per_fleet: int | None = None,
    cycles: int = 100,
    points_per_cycle: int = 200,
) -> list[Cell]: ...
def generate_fleets(
    *,
    fleets: int = 5,
    cells_per_fleet: int = 20,
    seed: int = 42,
    cycles: int = 100,
    points_per_cycle: int = 200,
    noise: float = 1.0,
    variation: float = 1.0,
) -> list[Fleet]: ...
def generate_cell(
    chemistry: str = "LFP",
    *,
    cell_id: str = "cell",
    seed: int = 0,
    charge_c_rate: float = 1.0,
    discharge_c_rate: float = 1.0,
    temperature_c: float = 25.0,
    depth_of_discharge: float = 1.0,
    cycles: int = 100,
    points_per_cycle: int = 200,
    noise: float = 1.0,
    variation: float = 1.0,
) -> Cell: ...
