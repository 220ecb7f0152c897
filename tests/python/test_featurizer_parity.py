"""Parity of the Rust featurizer with the numpy/scipy reference on the CALCE cells.

Runs the `featurize` example binary (env BFL_FEATURIZE_BIN, else
target/release/examples/featurize, built on demand) and compares every entry with
scripts/reference_featurizer.py: max |rust - ref| / (1e-3 + |ref|) < 1e-3 per cell.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import reference_featurizer as ref  # noqa: E402
from conftest import DATA  # noqa: E402

CALCE = sorted((DATA / "calce_cs2").glob("CALCE_CS2_*.json.gz"))
TOL = 1e-3


def _binary() -> Path:
    env = os.environ.get("BFL_FEATURIZE_BIN")
    if env:
        return Path(env)
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    path = target / "release" / "examples" / "featurize"
    if not path.exists():
        subprocess.run(
            ["cargo", "build", "--release", "-p", "battery-fl-core", "--example", "featurize"],
            cwd=ROOT,
            check=True,
        )
    return path


@pytest.fixture(scope="module")
def rust_out(tmp_path_factory) -> Path:
    assert len(CALCE) == 4, f"expected 4 CALCE files under {DATA}"
    out = tmp_path_factory.mktemp("features")
    run = subprocess.run(
        [str(_binary()), "--threads", "2", "--out", str(out), *map(str, CALCE)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert run.stdout.strip().splitlines()[-1].startswith("featurized 4 cells in ")
    return out


def _rel_err(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        err = np.abs(a.astype(np.float64) - b) / (1e-3 + np.abs(b))
    same = a.astype(np.float64) == b  # equal infinities count as agreement
    return np.where(same, 0.0, err)


@pytest.mark.parametrize("path", CALCE, ids=lambda p: p.name.split(".")[0])
def test_rust_matches_reference(path: Path, rust_out: Path):
    cell = ref.load_cell(path)
    expected = ref.featurize(cell)
    got = np.load(rust_out / f"{cell['cell_id']}.npy")
    assert got.dtype == np.float32
    assert got.shape == expected.shape == (6, 100, 1000)
    err = _rel_err(got, expected)
    worst = np.unravel_index(np.argmax(err), err.shape)
    print(f"{cell['cell_id']}: max rel err {err.max():.3e} at {worst}")
    assert err.max() < TOL, (worst, got[worst], expected[worst])
    # the features are not trivially zero
    assert np.count_nonzero(got[0]) > 0.9 * got[0].size


def test_npy_header_is_v1(rust_out: Path):
    raw = next(rust_out.glob("*.npy")).read_bytes()
    assert raw[:8] == b"\x93NUMPY\x01\x00"
    header_len = int.from_bytes(raw[8:10], "little")
    assert (10 + header_len) % 64 == 0
    assert raw[10 + header_len - 1 : 10 + header_len] == b"\n"


MATR = [
    DATA / "matr_severson_qv" / f"MATR_{name}.json.gz"
    for name in (
        "2017-05-12_EL150800453113",  # clean
        "2017-05-12_EL150800460514",  # gross glitch at cycle 12 (Q up to tens of Ah)
        "2017-06-30_EL150800460526",  # many non-monotone (unsorted) cycles
    )
]


def test_discharge_only_matr_matches_reference(tmp_path: Path):
    files = [p for p in MATR if p.exists()]
    assert files, f"no MATR files under {DATA}"
    subprocess.run(
        [str(_binary()), "--threads", "1", "--out", str(tmp_path), *map(str, files)],
        capture_output=True,
        check=True,
    )
    for path in files:
        cell = ref.load_cell(path)
        expected = ref.featurize(cell)
        got = np.load(tmp_path / f"{cell['cell_id']}.npy")
        assert _rel_err(got, expected).max() < TOL, cell["cell_id"]
        # discharge only: V(Qd) is there, every other channel is exactly zero
        assert np.count_nonzero(got[1]) > 0
        assert not np.any(got[[0, 2, 3, 4, 5]])
