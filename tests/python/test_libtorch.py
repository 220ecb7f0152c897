"""battery_fl loads libtorch from the installed torch package without importing torch."""

import subprocess
import sys
from pathlib import Path

import pytest

from battery_fl import _libtorch


def test_import_loads_libtorch_from_the_installed_torch_without_importing_it():
    probe = (
        "import sys, battery_fl; "
        "maps = open('/proc/self/maps').read(); "
        "print('torch' in sys.modules); "
        "print(sorted({l.split()[-1] for l in maps.splitlines() if 'libtorch_cpu' in l}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out[0] == "False"
    assert out[1] == repr([str((_libtorch.torch_dir() / "lib" / "libtorch_cpu.so").resolve())])


def test_torch_imported_after_battery_fl_shares_its_libtorch():
    probe = (
        "import battery_fl, torch; "
        "maps = open('/proc/self/maps').read(); "
        "print(len({l.split()[-1] for l in maps.splitlines() if 'libtorch_cpu' in l})); "
        "print(float(torch.ones(3).sum()))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["1", "3.0"]


def fake_torch(tmp_path: Path, version: str | None) -> Path:
    folder = tmp_path / "torch"
    folder.mkdir()
    (folder / "__init__.py").write_text("")
    if version is not None:
        (folder / "version.py").write_text(f"__version__ = '{version}+cpu'\n")
    return tmp_path


@pytest.mark.parametrize(("version", "says"), [("2.12.1", "torch 2.12.1"), (None, "torch None")])
def test_a_wrong_or_unversioned_torch_is_refused_by_name(tmp_path, monkeypatch, version, says):
    monkeypatch.delitem(sys.modules, "torch", raising=False)  # find_spec would return its spec
    monkeypatch.syspath_prepend(str(fake_torch(tmp_path, version)))
    with pytest.raises(ImportError, match=f"torch==2.13.0, but {says} is installed"):
        _libtorch.torch_dir()


def test_a_missing_torch_says_what_to_install(monkeypatch):
    monkeypatch.setattr(_libtorch.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match=r"pip install torch==2\.13\.0"):
        _libtorch.load()
