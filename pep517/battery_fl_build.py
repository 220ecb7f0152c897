"""PEP 517 build backend for ``pip install .``: maturin, told where libtorch is.

The native module links libtorch through ``tch``, whose build script needs libtorch's headers
and libraries. They come from a ``torch==2.13.0`` wheel, found in this order:

1. the user's own libtorch: ``LIBTORCH`` in the environment wins (``LIBTORCH_USE_PYTORCH``,
   which makes tch ask a ``python`` on PATH, is dropped: under pip's isolation that python
   cannot see the environment's torch; the same torch is found below);
2. a torch importable by the build (``--no-build-isolation``, or one pip installed into the
   isolated build environment);
3. the torch of the environment being installed into, as its interpreter sees it without
   pip's isolation (pip hides that environment's packages from an isolated build). The
   module will load exactly that torch at run time, so linking against it is right, and it
   spares pip installing a second 4.7 GB torch into the build environment. Only when neither
   has torch 2.13.0 does ``get_requires_for_build_*`` ask pip for it.

The folder is handed to tch's build script as ``LIBTORCH`` (headers in ``include/``,
libraries in ``lib/``: the layout of the torch wheel). Everything else is maturin's.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import maturin

TORCH_REQUIREMENT = "torch==2.13.0"
TORCH_VERSION = TORCH_REQUIREMENT.split("==")[1]

# maturin's hooks that need no libtorch, unchanged
build_sdist = maturin.build_sdist
get_requires_for_build_sdist = maturin.get_requires_for_build_sdist
prepare_metadata_for_build_wheel = maturin.prepare_metadata_for_build_wheel
prepare_metadata_for_build_editable = maturin.prepare_metadata_for_build_editable


def _version(torch: Path) -> str | None:
    try:
        text = (torch / "version.py").read_text()
    except OSError:
        return None
    found = re.search(r"^__version__\s*=\s*['\"]([^'\"+]+)", text, re.MULTILINE)
    return found.group(1) if found else None


def _target_torch() -> str | None:
    # the interpreter as the user runs it: without pip's isolation (its PYTHONPATH overlay
    # and PYTHONNOUSERSITE), so .pth files and the user site count as they will at run time
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONNOUSERSITE")}
    query = (
        "import importlib.util as u; s = u.find_spec('torch'); "
        "print(next(iter(s.submodule_search_locations)) if s and s.submodule_search_locations else '')"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", query], env=env, capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return done.stdout.strip() or None


def find_torch() -> Path | None:
    """The folder of an installed torch 2.13.0 with libtorch in it, if any."""
    here = importlib.util.find_spec("torch")
    candidates = (
        [next(iter(here.submodule_search_locations))]
        if here and here.submodule_search_locations
        else []
    )
    target = _target_torch()
    if target:
        candidates.append(target)
    for folder in map(Path, candidates):
        if (folder / "lib" / "libtorch_cpu.so").exists() and _version(folder) == TORCH_VERSION:
            return folder
    return None


def _user_chose() -> bool:
    return "LIBTORCH" in os.environ


def _requires(base: list[str]) -> list[str]:
    return base if _user_chose() or find_torch() else [*base, TORCH_REQUIREMENT]


def _point_tch_at_torch() -> None:
    if _user_chose():
        return
    os.environ.pop("LIBTORCH_USE_PYTORCH", None)  # tch reads it whenever it is set
    torch = find_torch()
    if torch is None:
        raise RuntimeError(
            f"battery_fl builds against libtorch from {TORCH_REQUIREMENT}, found in no "
            f"site-packages of {sys.executable}: `pip install {TORCH_REQUIREMENT}` first, "
            "or set LIBTORCH to a libtorch 2.13.0 folder"
        )
    os.environ["LIBTORCH"] = str(torch)
    print(f"battery_fl build: libtorch from {torch}", file=sys.stderr)


def get_requires_for_build_wheel(config_settings: Mapping[str, Any] | None = None) -> list[str]:
    return _requires(maturin.get_requires_for_build_wheel(config_settings))


def get_requires_for_build_editable(
    config_settings: Mapping[str, Any] | None = None,
) -> list[str]:
    return _requires(maturin.get_requires_for_build_editable(config_settings))


def build_wheel(
    wheel_directory: str,
    config_settings: Mapping[str, Any] | None = None,
    metadata_directory: str | None = None,
) -> str:
    _point_tch_at_torch()
    return maturin.build_wheel(wheel_directory, config_settings, metadata_directory)


def build_editable(
    wheel_directory: str,
    config_settings: Mapping[str, Any] | None = None,
    metadata_directory: str | None = None,
) -> str:
    _point_tch_at_torch()
    return maturin.build_editable(wheel_directory, config_settings, metadata_directory)
