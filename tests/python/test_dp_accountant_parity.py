"""The Rust RDP accountant agrees with Google's dp-accounting (RdpAccountant) within 1%.

Our numbers come from the `dp_epsilon` example binary (its last line ends with epsilon).
Set BFL_DP_EPSILON_BIN to use a prebuilt binary; otherwise the debug build is used and
built with cargo if missing.
"""

import logging
import math
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

dp_accounting = pytest.importorskip("dp_accounting")
from dp_accounting import dp_event  # noqa: E402
from dp_accounting.rdp import rdp_privacy_accountant  # noqa: E402

# dp-accounting logs (absl) each fractional order it gives up on; that is expected here.
logging.getLogger("absl").setLevel(logging.ERROR)

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BIN = ROOT / "target" / "debug" / "examples" / "dp_epsilon"

# (noise multiplier z, sampling rate q, rounds T, delta)
CASES = [
    (1.0, 1.0, 1, 1e-5),
    (1.0, 1.0, 3, 1e-5),
    (1.1, 0.01, 1000, 1e-5),
    (0.8, 0.05, 100, 1e-5),
    (2.0, 0.2, 50, 1e-5),
    (0.5, 0.1, 10, 1e-6),
    (4.0, 0.001, 10000, 1e-5),
    (1.3, 0.3, 7, 1e-3),
    (10.0, 1.0, 1, 1e-5),
    (0.7, 0.5, 20, 1e-5),
]


@pytest.fixture(scope="module")
def dp_epsilon_bin() -> Path:
    path = Path(os.environ.get("BFL_DP_EPSILON_BIN", DEFAULT_BIN))
    if not path.exists():
        subprocess.run(
            ["cargo", "build", "-p", "battery-fl-core", "--example", "dp_epsilon"],
            cwd=ROOT,
            check=True,
        )
    assert path.exists(), f"{path} was not built"
    return path


def ours(binary: Path, z: float, q: float, t: int, delta: float) -> tuple[float, float]:
    out = (
        subprocess.run(
            [
                str(binary),
                "--noise-multiplier",
                repr(z),
                "--sample-rate",
                repr(q),
                "--rounds",
                str(t),
                "--delta",
                repr(delta),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.strip()
        .splitlines()
    )
    order = float(next(line for line in out if "order" in line).split("=")[-1])
    return float(out[-1].split("=")[-1]), order


def theirs(z: float, q: float, t: int, delta: float) -> tuple[float, float]:
    acc = rdp_privacy_accountant.RdpAccountant()
    event = dp_event.PoissonSampledDpEvent(q, dp_event.GaussianDpEvent(z))
    acc.compose(dp_event.SelfComposedDpEvent(event, t))
    eps, order = acc.get_epsilon_and_optimal_order(delta)
    return float(eps), float(order)


@pytest.mark.parametrize(("z", "q", "t", "delta"), CASES)
def test_epsilon_matches_dp_accounting(
    dp_epsilon_bin: Path, z: float, q: float, t: int, delta: float
) -> None:
    eps, order = ours(dp_epsilon_bin, z, q, t, delta)
    ref, ref_order = theirs(z, q, t, delta)
    assert abs(eps - ref) <= 0.01 * ref, (
        f"ours {eps} (order {order}) vs dp-accounting {ref} (order {ref_order})"
    )


@pytest.mark.parametrize(
    ("z", "q", "t"), [(1.0, 0.1, 1), (1.1, 0.01, 1000), (0.5, 0.1, 10), (0.7, 0.5, 20)]
)
def test_rdp_per_order_matches_dp_accounting(
    dp_epsilon_bin: Path, z: float, q: float, t: int
) -> None:
    """Every order, including the low fractional ones both sides give up on (+inf)."""
    args = [
        "--noise-multiplier",
        repr(z),
        "--sample-rate",
        repr(q),
        "--rounds",
        str(t),
        "--delta",
        "1e-5",
        "--rdp",
    ]
    out = subprocess.run(
        [str(dp_epsilon_bin), *args], capture_output=True, text=True, check=True
    ).stdout
    rows = [line.split() for line in out.splitlines() if line.startswith("rdp ")]
    orders = rdp_privacy_accountant.DEFAULT_RDP_ORDERS
    assert [float(r[1]) for r in rows] == pytest.approx(orders)
    ref = t * rdp_privacy_accountant._compute_rdp_poisson_subsampled_gaussian(
        q, z, np.array(orders)
    )
    for (_, order, value), expected in zip(rows, ref, strict=True):
        if math.isinf(expected):
            assert float(value) == math.inf, f"order {order}"
        else:
            assert float(value) == pytest.approx(expected, rel=1e-6), f"order {order}"


def test_anchor_values(dp_epsilon_bin: Path) -> None:
    assert ours(dp_epsilon_bin, 1.0, 1.0, 1, 1e-5)[0] == pytest.approx(4.7285, rel=1e-4)
    assert ours(dp_epsilon_bin, 1.0, 1.0, 3, 1e-5)[0] == pytest.approx(9.0100, rel=1e-4)


def test_bad_arguments_fail_with_a_message(dp_epsilon_bin: Path) -> None:
    for args in (
        ["--noise-multiplier", "0", "--sample-rate", "1", "--rounds", "1", "--delta", "1e-5"],
        ["--sample-rate", "1"],
        ["--bogus", "1"],
    ):
        run = subprocess.run([str(dp_epsilon_bin), *args], capture_output=True, text=True)
        assert run.returncode != 0
        assert "error" in run.stderr and "usage" in run.stderr.lower()
