"""Genome fingerprints: what a cell is, and how far apart two cells are."""

from __future__ import annotations

import pickle

import numpy as np
from conftest import DATA

import battery_fl
from battery_fl import synthetic


def test_distance_is_a_symmetric_dissimilarity(cells: list[battery_fl.Cell]) -> None:
    fps = [battery_fl.GenomeFingerprint.from_cell(c) for c in cells[:6]]
    for a in fps:
        assert a.distance(a) == 0.0
        for b in fps:
            assert a.distance(b) == b.distance(a) >= 0.0
    lfp = battery_fl.GenomeFingerprint.from_cell(synthetic.generate_cell("LFP", cycles=12, seed=1))
    lfp2 = battery_fl.GenomeFingerprint.from_cell(synthetic.generate_cell("LFP", cycles=12, seed=2))
    nmc = battery_fl.GenomeFingerprint.from_cell(synthetic.generate_cell("NMC", cycles=12, seed=1))
    assert lfp.distance(lfp2) < lfp.distance(nmc)  # same chemistry is nearer


def test_attributes(cells: list[battery_fl.Cell]) -> None:
    cell = synthetic.generate_cell("NMC", cell_id="n1", cycles=12, seed=3)
    fp = battery_fl.GenomeFingerprint.from_cell(cell)
    assert (fp.cell_id, fp.cathode, fp.anode) == ("n1", "NMC", "graphite")
    assert fp.nominal_capacity_ah == cell.nominal_capacity_ah
    assert fp.voltage_window == (cell.voltage_min_v, cell.voltage_max_v)
    assert abs(sum(fp.composition.values()) - 1.0) < 0.2 and fp.purity_ppm
    assert fp.v_of_q.shape == (64,) and fp.dqdv.shape == (48,)
    assert fp.peaks and all(2.0 <= v <= 4.4 for v, _ in fp.peaks)
    assert 0.8 < fp.capacity_ratio < 1.2


def test_discharge_only_real_cell_and_round_trips() -> None:
    matr = battery_fl.load_cell(
        DATA / "matr_severson_qv" / "MATR_2017-05-12_EL150800460486.json.gz"
    )
    fp = battery_fl.GenomeFingerprint.from_cell(matr)
    assert fp.cathode == "LFP" and np.isfinite(fp.v_of_q).all()
    assert battery_fl.GenomeFingerprint.from_json(fp.to_json()) == fp
    assert pickle.loads(pickle.dumps(fp)) == fp
    assert "LFP" in repr(fp)
