"""Load the libtorch of the installed ``torch`` package without importing ``torch``.

The native module ``battery_fl._core`` links ``libtorch_cpu.so`` and ``libc10.so`` by soname
and bundles neither. Importing the ``torch`` Python package would load them, but costs about
3 s (its Python modules, CUDA probing); loading the two shared libraries from the installed
package's ``lib`` folder costs about 0.3 s, and the dynamic loader then resolves the native
module's dependencies to those copies (it matches already loaded libraries by soname). A
later ``import torch`` loads the same files, so both packages share one libtorch.

The version is read from ``torch/version.py`` as text, so a wrong torch fails here with a
clear message instead of an unresolved symbol.
"""

from __future__ import annotations

import ctypes
import importlib.util
import re
from pathlib import Path

#: The libtorch version the native module is built against (tch 0.26).
TORCH_VERSION = "2.13.0"

# dependencies first: libtorch_cpu needs libc10 (its own RPATH finds the rest, e.g. libgomp and,
# in the CUDA wheel, the nvidia-* packages beside torch)
_LIBRARIES = ("libc10.so", "libtorch_cpu.so")


def torch_dir() -> Path:
    """The installed ``torch`` package's folder, found without importing it.

    Raises:
        ImportError: when no ``torch`` is installed, or not version ``TORCH_VERSION``.
    """
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            f"battery_fl needs torch=={TORCH_VERSION} installed (it loads its libtorch); "
            f"`pip install torch=={TORCH_VERSION}`"
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    version = _installed_version(folder)
    if version != TORCH_VERSION:
        raise ImportError(
            f"battery_fl is built against torch=={TORCH_VERSION}, but torch {version} is "
            f"installed at {folder}"
        )
    return folder


def _installed_version(folder: Path) -> str | None:
    try:
        text = (folder / "version.py").read_text()
    except OSError:
        return None
    found = re.search(r"^__version__\s*=\s*['\"]([^'\"+]+)", text, re.MULTILINE)
    return found.group(1) if found else None


def load() -> Path:
    """Load libtorch's shared libraries from the installed torch; returns their folder.

    Idempotent: the dynamic loader keeps one copy of each library per process. When a
    library's own dependencies cannot be found from its folder (a CUDA wheel whose nvidia-*
    packages sit in another site-packages), ``import torch`` loads them its own way instead.
    """
    lib = torch_dir() / "lib"
    for name in _LIBRARIES:
        try:
            ctypes.CDLL(str(lib / name), mode=ctypes.RTLD_GLOBAL)
        except OSError:
            import torch  # noqa: F401  (slower, but finds every dependency torch knows of)

            break
    return lib
