"""The installed package imports and reports the crate version."""

import re
import tomllib
from pathlib import Path

import battery_fl


def test_version_matches_the_workspace() -> None:
    cargo = tomllib.loads((Path(__file__).parents[2] / "Cargo.toml").read_text())
    assert battery_fl.__version__ == cargo["workspace"]["package"]["version"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", battery_fl.__version__)
