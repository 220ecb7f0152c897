"""The exception hierarchy: each class is raised by the failure it stands for, with the core
error's kind and identifying fields as attributes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import battery_fl
from battery_fl import dp, secagg

CLASSES = {
    "DataError": ValueError,
    "ConfigError": ValueError,
    "ModelError": RuntimeError,
    "AggregationError": ValueError,
    "PrivacyError": ValueError,
    "SecAggError": ValueError,
}


def test_hierarchy() -> None:
    assert issubclass(battery_fl.BatteryFlError, Exception)
    assert battery_fl.BatteryFlError.__module__ == "battery_fl"
    for name, builtin in CLASSES.items():
        cls = getattr(battery_fl, name)
        assert cls.__module__ == "battery_fl" and cls.__name__ == name
        assert issubclass(cls, battery_fl.BatteryFlError) and issubclass(cls, builtin)
        assert cls.__doc__
    # the classes are distinct: catching one does not catch another
    assert len({getattr(battery_fl, n) for n in CLASSES}) == len(CLASSES)
    assert not issubclass(battery_fl.ModelError, ValueError)


def test_data_error_invalid_data_names_cell_cycle_and_field() -> None:
    cycle = battery_fl.Cycle(7, [4.0, 3.5, 3.0], discharge_capacity_ah=[0.0, 0.5])
    with pytest.raises(battery_fl.DataError) as info:
        battery_fl.Cell("bad-cell", 1.1, [cycle])
    err = info.value
    assert isinstance(err, ValueError)
    assert (err.kind, err.cell_id, err.cycle, err.field) == (
        "invalid_data",
        "bad-cell",
        7,
        "discharge_capacity_ah",
    )
    assert "bad-cell" in str(err)


def test_data_error_io_keeps_the_os_error_as_cause(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json.gz"
    with pytest.raises(battery_fl.DataError) as info:
        battery_fl.load_cell(missing)
    assert info.value.kind == "io"
    assert info.value.path == str(missing)
    assert isinstance(info.value.__cause__, FileNotFoundError)


def test_data_error_parse_and_shape(tmp_path: Path) -> None:
    with pytest.raises(battery_fl.DataError) as info:
        battery_fl.Cell.from_json("{not json")
    assert info.value.kind == "parse"
    garbage = tmp_path / "x.json"
    garbage.write_text('{"cell_id": "x"}')
    with pytest.raises(battery_fl.DataError, match="nominal_capacity_ah") as info:
        battery_fl.load_cell(garbage)
    assert info.value.kind == "parse" and info.value.path == str(garbage)


def test_config_error_names_the_field() -> None:
    with pytest.raises(battery_fl.ConfigError) as info:
        battery_fl.Featurizer(interp_dim=1)
    assert (info.value.kind, info.value.field) == ("invalid_config", "interp_dim")
    with pytest.raises(battery_fl.ConfigError) as info:
        battery_fl.BatLiNet(selection="closest")
    assert info.value.field == "selection"
    with pytest.raises(ValueError):
        battery_fl.FedTrimmedAvg(0.7)


def test_model_error(cells: list[battery_fl.Cell], model_kwargs: dict[str, Any]) -> None:
    unfitted = battery_fl.BatLiNet(**model_kwargs)
    with pytest.raises(battery_fl.ModelError, match="fit it first") as info:
        unfitted.predict(cells[:2], references=cells[2:6])
    assert isinstance(info.value, RuntimeError) and info.value.kind == "model"
    with pytest.raises(battery_fl.ModelError):
        battery_fl.BatLiNet.from_bytes(b"not a model")


def test_aggregation_error_names_the_client() -> None:
    ok, bad = [np.zeros(3)], [np.zeros(4)]
    with pytest.raises(battery_fl.AggregationError) as info:
        battery_fl.FedAvg().aggregate([ok, ok, bad], [1, 1, 1])
    assert (info.value.kind, info.value.client_id) == ("rejected_update", "2")
    with pytest.raises(battery_fl.AggregationError) as info:
        battery_fl.FedAvg().aggregate([], [])
    assert info.value.kind == "aggregation"


def test_privacy_errors() -> None:
    with pytest.raises(battery_fl.PrivacyError) as info:
        dp.clip(np.array([1.0, np.nan]), 1.0)
    assert info.value.kind == "privacy"
    acc = dp.RdpAccountant(max_epsilon=5.0)
    acc.step(noise_multiplier=1.0, sample_rate=1.0, steps=1)
    with pytest.raises(battery_fl.PrivacyError) as info:
        acc.step(noise_multiplier=1.0, sample_rate=1.0, steps=1)
    err = info.value
    assert err.kind == "budget_exhausted" and err.max_epsilon == 5.0 and err.epsilon > 5.0
    assert acc.steps == 1  # the refused step changed nothing


def test_secagg_errors() -> None:
    inputs = [np.zeros(2, dtype=np.float32)] * 4
    with pytest.raises(battery_fl.SecAggError) as info:
        secagg.simulate_round(inputs, threshold=3, drop={0: 1, 1: 1}, seed=1)
    assert info.value.kind == "below_threshold" and info.value.needed == 3
    with pytest.raises(battery_fl.SecAggError) as info:
        secagg.SecAggClient(0, b"garbage")
    assert (info.value.kind, info.value.stage) == ("sec_agg", "decode")
