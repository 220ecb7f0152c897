"""Synthetic fleets and cells: seeded, valid, non-IID."""

from __future__ import annotations

import pytest

import battery_fl
from battery_fl import synthetic


def test_fleets_are_seeded_and_valid() -> None:
    fleets = synthetic.generate_fleets(
        fleets=3, cells_per_fleet=4, cycles=15, points_per_cycle=50, seed=2
    )
    assert [f.id for f in fleets] == ["fleet0", "fleet1", "fleet2"] and all(
        len(f) == 4 for f in fleets
    )
    again = synthetic.generate_fleets(
        fleets=3, cells_per_fleet=4, cycles=15, points_per_cycle=50, seed=2
    )
    other = synthetic.generate_fleets(
        fleets=3, cells_per_fleet=4, cycles=15, points_per_cycle=50, seed=3
    )
    assert [f.cells for f in fleets] == [f.cells for f in again]
    assert fleets[0].cells != other[0].cells
    cell = fleets[0].cells[0]
    cell.validate()
    assert len(cell) == 15 and cell.has_full_signals and cell.recorded_cycle_life > 15
    assert len(cell.cycles[0]) == 50
    assert fleets[0].chemistries[0] == cell.cathode == "LFP"
    assert {f.climate for f in fleets} and isinstance(fleets[0].ambient_temperature_c, float)
    assert "fleet0" in repr(fleets[0])


def test_cell_conditions_change_the_cell() -> None:
    gentle = synthetic.generate_cell(
        "NMC", cycles=5, charge_c_rate=0.5, seed=1, noise=0.0, variation=0.0
    )
    harsh = synthetic.generate_cell(
        "NMC", cycles=5, charge_c_rate=4.0, seed=1, noise=0.0, variation=0.0
    )
    assert gentle.recorded_cycle_life > harsh.recorded_cycle_life
    assert synthetic.generate_cell("nmc811", cycles=5).cathode == "NMC"


def test_bad_settings() -> None:
    with pytest.raises(battery_fl.ConfigError) as info:
        synthetic.generate_fleets(fleets=0)
    assert info.value.field == "fleets"
    with pytest.raises(battery_fl.ConfigError) as info:
        synthetic.generate_cell("LMO")
    assert info.value.field == "chemistry"
    with pytest.raises(battery_fl.ConfigError):
        synthetic.generate_cell("LFP", points_per_cycle=5)
