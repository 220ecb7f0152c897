"""The featurizer: shapes and dtype, batching, the GIL, settings round trips."""

from __future__ import annotations

import inspect
import json
import pickle

import numpy as np
import pytest
from conftest import CYCLES, DATA, INTERP, gil_blocked_fraction

import battery_fl
from battery_fl import synthetic


def test_transform_shape_dtype_and_layout(
    cells: list[battery_fl.Cell], featurizer: battery_fl.Featurizer
) -> None:
    x = featurizer.transform(cells[0])
    assert x.shape == (6, CYCLES, INTERP) == featurizer.output_shape
    assert x.dtype == np.float32 and x.flags.c_contiguous
    assert x.base is not None  # the Rust buffer, moved into numpy without a copy
    assert np.isfinite(x).all() and np.abs(x[1]).max() > 2.0  # V(Qd) in volts
    assert featurizer.channel_names == ("V(Qc)", "V(Qd)", "I(Qc)", "I(Qd)", "dV(Q)", "R(Q)")
    np.testing.assert_allclose(featurizer.grid, np.linspace(0.0, 1.2, INTERP))


def test_transform_many_stacks_transform(
    cells: list[battery_fl.Cell], featurizer: battery_fl.Featurizer
) -> None:
    batch = featurizer.transform_many(cells[:5])
    assert batch.shape == (5, 6, CYCLES, INTERP) and batch.dtype == np.float32
    for i in range(5):
        np.testing.assert_array_equal(batch[i], featurizer.transform(cells[i]))
    assert featurizer.transform_many([]).shape == (0, 6, CYCLES, INTERP)


def test_branch_a_is_the_cleaned_intra_cell_difference(
    cells: list[battery_fl.Cell], featurizer: battery_fl.Featurizer
) -> None:
    a = featurizer.branch_a(cells[0])
    assert a.shape == (6, CYCLES, INTERP)
    base = featurizer.diff_base_cycle - featurizer.first_cycle
    assert np.all(a[:, base] == 0.0)  # the base cycle minus itself
    assert np.abs(a).max() < np.abs(featurizer.transform(cells[0])).max()


def test_discharge_only_cells_fill_only_v_of_qd() -> None:
    cell = battery_fl.load_cell(
        DATA / "matr_severson_qv" / "MATR_2017-05-12_EL150800460486.json.gz"
    )
    x = battery_fl.Featurizer(cycles=10, interp_dim=50, first_cycle=2).transform(cell)
    assert np.abs(x[1]).max() > 0 and all(np.all(x[c] == 0) for c in (0, 2, 3, 4, 5))


def test_settings_defaults_equality_and_pickle() -> None:
    default = battery_fl.Featurizer()
    # the Python defaults are the core's defaults (an empty JSON object takes them all)
    assert default == battery_fl.Featurizer.from_json("{}")
    assert default.output_shape == (6, 100, 1000)
    sig = inspect.signature(battery_fl.Featurizer)
    assert sig.parameters["cycles"].default == 100 and sig.parameters["q_max"].default == 1.2
    f = battery_fl.Featurizer(cycles=20, interp_dim=64, first_cycle=2, edge_points=5)
    assert json.loads(f.to_json())["clean"]["edge_points"] == 5
    assert battery_fl.Featurizer.from_json(f.to_json()) == f != default
    assert pickle.loads(pickle.dumps(f)) == f
    assert "cycles=20" in repr(f)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"cycles": 0}, "cycles"),
        ({"q_min": 2.0}, "q_min"),
        ({"current_threshold_a": -1.0}, "current_threshold_a"),
    ],
)
def test_bad_settings_raise_config_error(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(battery_fl.ConfigError) as info:
        battery_fl.Featurizer(**kwargs)
    assert info.value.field == field


def test_transform_many_releases_the_gil() -> None:
    cells = [
        c for f in synthetic.generate_fleets(fleets=2, cells_per_fleet=40, seed=9) for c in f.cells
    ]
    featurizer = battery_fl.Featurizer()
    assert gil_blocked_fraction(lambda: featurizer.transform_many(cells)) < 0.5
    big = [float(i % 7919) for i in range(1_000_000)]
    assert gil_blocked_fraction(lambda: sorted(big)) > 0.6  # the probe sees a GIL holder
