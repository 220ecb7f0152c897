"""Seeded synthetic fleets of cycled cells (LFP, NMC, NCA, LCO), for tests and examples.

Each fleet is dominated by one or two chemistries and has its own climate and usage, so
fleets are non-IID as real federated clients are. Generation is parallel and
bit-reproducible for a given seed.

>>> from battery_fl import synthetic
>>> fleets = synthetic.generate_fleets(fleets=3, cells_per_fleet=4, cycles=12, seed=0)
>>> [len(f) for f in fleets], fleets[0].chemistries[0]
([4, 4, 4], 'LFP')
"""

from battery_fl._core import (
    PUBLIC_CELLS_PER_FLEET,
    PUBLIC_FLEETS,
    PUBLIC_SEED,
    Fleet,
    generate_cell,
    generate_fleets,
    public_cells,
)

__all__ = [
    "PUBLIC_CELLS_PER_FLEET",
    "PUBLIC_FLEETS",
    "PUBLIC_SEED",
    "Fleet",
    "generate_cell",
    "generate_fleets",
    "public_cells",
]
