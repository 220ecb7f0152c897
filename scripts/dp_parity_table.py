"""Print a markdown table of epsilon: our RDP accountant (dp_epsilon example) vs dp-accounting.

Usage: .venv/bin/python scripts/dp_parity_table.py [path/to/dp_epsilon]
(build the binary first: cargo build -p battery-fl-core --example dp_epsilon)
"""

import logging
import subprocess
import sys
from pathlib import Path

from dp_accounting import dp_event
from dp_accounting.rdp import rdp_privacy_accountant

logging.getLogger("absl").setLevel(logging.ERROR)
ROOT = Path(__file__).resolve().parents[1]
BIN = (
    Path(sys.argv[1])
    if len(sys.argv) > 1
    else ROOT / "target" / "debug" / "examples" / "dp_epsilon"
)
sys.path.insert(0, str(ROOT / "tests" / "python"))
from test_dp_accountant_parity import CASES  # noqa: E402  (one list of cases for test and table)

print("| z | q | T | delta | ours eps (order) | dp-accounting eps (order) | rel. diff |")
print("|---|---|---|---|---|---|---|")
for z, q, t, d in CASES:
    args = [
        "--noise-multiplier",
        repr(z),
        "--sample-rate",
        repr(q),
        "--rounds",
        str(t),
        "--delta",
        repr(d),
    ]
    lines = subprocess.run(
        [str(BIN), *args], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    eps = float(lines[-1].split("=")[-1])
    order = float(lines[-2].split("=")[-1])
    acc = rdp_privacy_accountant.RdpAccountant()
    acc.compose(
        dp_event.SelfComposedDpEvent(
            dp_event.PoissonSampledDpEvent(q, dp_event.GaussianDpEvent(z)), t
        )
    )
    ref, ref_order = acc.get_epsilon_and_optimal_order(d)
    print(
        f"| {z} | {q} | {t} | {d:g} | {eps:.6f} ({order:g}) | {ref:.6f} ({ref_order:g}) | {abs(eps - ref) / ref:.1e} |"
    )
