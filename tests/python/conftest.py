"""Shared fixtures: small seeded synthetic fleets and a tiny BatLiNet, so the whole Python
suite runs in about a minute."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import battery_fl
from battery_fl import synthetic

# flwr imports typer, which warns about click 8.3's API under `-W error`; battery_fl.flower
# imports flwr with that warning filtered, so a Flower test module run alone (which imports
# flwr first) finds it imported already
with contextlib.suppress(ImportError):  # (without the [flower] extra there is nothing to do)
    import battery_fl.flower  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
# the real cells: the repository's own data/ folder unless BFL_DATA_DIR names another one
DATA = Path(os.environ.get("BFL_DATA_DIR", ROOT / "data"))

CYCLES = 12
INTERP = 16


def pytest_configure(config: pytest.Config) -> None:
    """Fail the session up front, naming the folder, when the real data is missing."""
    if not DATA.is_dir():
        raise pytest.UsageError(
            f"real-data folder {DATA} not found: the tests read the repository's data/ folder, "
            "and the BFL_DATA_DIR environment variable overrides it"
        )


@pytest.fixture(scope="session")
def fleets() -> list[synthetic.Fleet]:
    return synthetic.generate_fleets(
        fleets=3, cells_per_fleet=6, cycles=CYCLES, points_per_cycle=60, seed=5
    )


@pytest.fixture(scope="session")
def cells(fleets: list[synthetic.Fleet]) -> list[battery_fl.Cell]:
    return [c for f in fleets for c in f.cells]


@pytest.fixture(scope="session")
def featurizer() -> battery_fl.Featurizer:
    return battery_fl.Featurizer(cycles=CYCLES, interp_dim=INTERP)


@pytest.fixture(scope="session")
def model_kwargs(featurizer: battery_fl.Featurizer) -> dict[str, Any]:
    return dict(
        featurizer=featurizer, conv_channels=4, batch_size=8, epochs=3, progress=False, seed=0
    )


@pytest.fixture(scope="session")
def fitted(cells: list[battery_fl.Cell], model_kwargs: dict[str, Any]) -> battery_fl.BatLiNet:
    """A tiny model fitted on the first 12 cells (do not mutate: shared by the session)."""
    model = battery_fl.BatLiNet(**model_kwargs)
    model.fit(cells[:12])
    return model


def gil_blocked_fraction(fn: Callable[[], object]) -> float:
    """Run ``fn`` in a thread while this thread wakes up every 2 ms; return the longest gap
    between wake-ups as a fraction of ``fn``'s run time. About 1 when ``fn`` holds the GIL throughout,
    small when it releases it (give ``fn`` a few hundred ms of work)."""
    ready, go, done = threading.Event(), threading.Event(), threading.Event()
    took = [0.0]

    def work() -> None:
        ready.set()
        go.wait()
        t0 = time.perf_counter()
        try:
            fn()
        finally:
            took[0] = time.perf_counter() - t0
            done.set()

    thread = threading.Thread(target=work)
    thread.start()
    ready.wait()
    last = time.perf_counter()
    worst = 0.0
    go.set()
    while not done.wait(0.002):  # wakes every 2 ms, and needs the GIL to go on
        now = time.perf_counter()
        worst, last = max(worst, now - last), now
    thread.join()
    return worst / took[0]
