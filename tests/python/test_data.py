"""Cells and cycles: construction from arrays, labels, cleaning, JSON and files."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from conftest import DATA

import battery_fl


def _cycle(n: int, fade: float = 0.001) -> battery_fl.Cycle:
    q = np.linspace(0.0, 1.0, 21)
    current = np.r_[np.full(10, 0.5), np.full(11, -1.0)]
    return battery_fl.Cycle(
        n,
        np.linspace(4.1, 3.0, 21),
        time_s=np.arange(21.0),
        current_a=current,
        charge_capacity_ah=q,
        discharge_capacity_ah=q * (1.0 - fade * n),
        temperature_c=np.full(21, 25.0),
    )


def test_cycle_from_arrays_and_lists() -> None:
    c = _cycle(3)
    assert (c.cycle, len(c)) == (3, 21)
    assert c.voltage_v.dtype == np.float64 and c.voltage_v[0] == 4.1
    np.testing.assert_array_equal(c.current_a, np.r_[np.full(10, 0.5), np.full(11, -1.0)])
    d = battery_fl.Cycle(1, [3.0, 2.0], discharge_capacity_ah=np.array([0, 1], dtype=np.int32))
    assert d.discharge_capacity_ah.dtype == np.float64 and d.time_s is None
    assert d == battery_fl.Cycle(1, np.array([3.0, 2.0]), discharge_capacity_ah=[0.0, 1.0])
    assert d != battery_fl.Cycle(2, [3.0, 2.0], discharge_capacity_ah=[0.0, 1.0])
    assert "Cycle(1" in repr(d)


def test_cell_from_arrays() -> None:
    cell = battery_fl.Cell(
        "c1", 1.0, [_cycle(n) for n in range(1, 6)], cycle_life=640, cathode="LFP", protocol="1C"
    )
    assert (cell.cell_id, len(cell), cell.nominal_capacity_ah) == ("c1", 5, 1.0)
    assert (cell.cathode, cell.protocol, cell.anode) == ("LFP", "1C", None)
    assert cell.recorded_cycle_life == 640 and cell.has_full_signals
    assert [c.cycle for c in cell.cycles] == [1, 2, 3, 4, 5]
    assert cell.cycles[2] == _cycle(3)
    cell.validate()


def test_cycle_life_recorded_and_computed() -> None:
    # capacity 1 - 0.05 n: 80 % of nominal 1.0 is first reached at cycle 4
    cycles = [_cycle(n, fade=0.05) for n in range(1, 8)]
    cell = battery_fl.Cell("fade", 1.0, cycles, cycle_life=999)
    assert cell.cycle_life() == 999  # the recorded label is preferred at eol 0.8
    assert cell.cycle_life(prefer_recorded=False) == 4
    assert cell.cycle_life(0.9) == 2
    assert cell.cycle_life(0.5) is None  # censored: never reached in the data
    assert cell.cycle_life(0.8, median_window=3, prefer_recorded=False) == 4
    with pytest.raises(battery_fl.ConfigError):
        cell.cycle_life(1.5)
    with pytest.raises(battery_fl.ConfigError):
        cell.cycle_life(median_window=2)


def test_clean_drops_implausible_cycles() -> None:
    bad = battery_fl.Cycle(2, [4.0, 3.5, 3.0], discharge_capacity_ah=[0.0, 5.0, 9.0])
    good = [
        battery_fl.Cycle(n, [4.0, 3.5, 3.0], discharge_capacity_ah=[0.0, 0.5, 0.9]) for n in (1, 3)
    ]
    dirty = battery_fl.Cell("x", 1.0, [good[0], bad, good[1]])  # valid, but implausible
    cleaned, dropped = dirty.clean()
    assert dropped == [2]
    assert [c.cycle for c in cleaned.cycles] == [1, 3] and len(dirty) == 3  # a copy
    assert dirty.clean(max_capacity_fraction=10.0)[1] == []
    with pytest.raises(battery_fl.ConfigError):
        dirty.clean(min_capacity_fraction=0.5)


def test_json_round_trip_pickle_and_files(tmp_path: Path, cells: list[battery_fl.Cell]) -> None:
    cell = cells[0]
    assert battery_fl.Cell.from_json(cell.to_json()) == cell
    assert pickle.loads(pickle.dumps(cell)) == cell
    assert cell != cells[1]
    for name in ("c.json", "c.json.gz"):
        cell.save(tmp_path / name)
        assert battery_fl.load_cell(tmp_path / name) == cell
        assert battery_fl.load_cell(str(tmp_path / name)) == cell
    assert (tmp_path / "c.json.gz").read_bytes()[:2] == b"\x1f\x8b"
    # a folder without index.json loads every cell file in name order
    cells[1].save(tmp_path / "b.json")
    assert [c.cell_id for c in battery_fl.load_cells(tmp_path)] == [cells[1].cell_id] + [
        cell.cell_id
    ] * 2


def test_real_cells_load_in_index_order() -> None:
    folder = DATA / "calce_cs2"
    cells = battery_fl.load_cells(folder)
    index = json.loads((folder / "index.json").read_text())
    assert [c.cell_id for c in cells] == [e["cell_id"] for e in index]
    cell = cells[0]
    assert cell.has_full_signals and cell.cathode == "LCO"
    assert cell.recorded_cycle_life == index[0]["cycle_life"]
    assert np.isfinite(cell.capacity_trajectory).sum() > 500
    matr = battery_fl.load_cell(
        DATA / "matr_severson_qv" / "MATR_2017-05-12_EL150800460486.json.gz"
    )
    assert not matr.has_full_signals and matr.cycles[0].current_a is None
    assert matr.cycles[0].cycle == 2 and len(matr.cycles[0]) == 1000


def test_fleets_load_from_an_index_with_a_fleet_key(tmp_path: Path) -> None:
    fleets = battery_fl.synthetic.generate_fleets(
        fleets=2, cells_per_fleet=6, cycles=12, points_per_cycle=40, seed=3
    )
    index = []
    for f in fleets:
        for i, cell in enumerate(f.cells):
            name = f"{cell.cell_id}.json.gz"
            cell.save(tmp_path / name)
            # the first fleet marks its test cells only (unnamed entries train)
            entry = {"cell_id": cell.cell_id, "file": name, "fleet": f"site-{f.id}"}
            if f.id == "fleet0" and i >= 4:
                entry["split"] = "test"
            index.append(entry)
    (tmp_path / "index.json").write_text(json.dumps(index))
    loaded = battery_fl.load_fleets(tmp_path, by="fleet")
    assert [(fid, len(train), len(test)) for fid, train, test in loaded] == [
        ("site-fleet0", 4, 2),
        ("site-fleet1", 4, 2),  # no split named: every third cell tests
    ]
    _, train, test = loaded[1]
    assert [c.cell_id for c in test] == [fleets[1].cells[2].cell_id, fleets[1].cells[5].cell_id]
    assert train[0] == fleets[1].cells[0]
    with pytest.raises(battery_fl.ConfigError, match="by"):
        battery_fl.load_fleets(tmp_path, by="site")
    # an index without the key: one protocol group, no federation
    with pytest.raises(battery_fl.DataError, match="fleets in the index"):
        battery_fl.load_fleets(tmp_path, by="protocol")
    with pytest.raises(battery_fl.DataError, match="batch_date"):
        battery_fl.load_fleets(tmp_path, by="batch")
    for bad in (0, -1):
        with pytest.raises(battery_fl.ConfigError, match="fleets"):
            battery_fl.load_fleets(tmp_path, by="protocol", fleets=bad)
    # a count cuts protocol groups: the fleet grouping refuses it instead of ignoring it
    with pytest.raises(battery_fl.ConfigError, match="fleets"):
        battery_fl.load_fleets(tmp_path, by="fleet", fleets=2)
