"""The PEP 517 backend of `pip install .` (pep517/battery_fl_build.py) finds libtorch."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "pep517"))
import battery_fl_build as backend  # noqa: E402

from battery_fl import _libtorch  # noqa: E402


@pytest.fixture
def no_user_setting(monkeypatch):
    # set first, so that the teardown removes what the backend writes into os.environ
    for key in ("LIBTORCH", "LIBTORCH_USE_PYTORCH"):
        monkeypatch.setenv(key, "x")
        monkeypatch.delenv(key)


def test_finds_the_torch_the_module_will_load(no_user_setting):
    assert backend.find_torch() == _libtorch.torch_dir()
    assert backend._requires(["maturin>=1.9,<2"]) == ["maturin>=1.9,<2"], "no second torch"


def test_points_tch_at_it_unless_the_user_chose(no_user_setting, monkeypatch):
    monkeypatch.setenv("LIBTORCH_USE_PYTORCH", "1")  # as scripts/env.sh exports it
    backend._point_tch_at_torch()
    assert backend.os.environ["LIBTORCH"] == str(_libtorch.torch_dir())
    assert "LIBTORCH_USE_PYTORCH" not in backend.os.environ
    monkeypatch.setenv("LIBTORCH", "/opt/libtorch")
    backend._point_tch_at_torch()
    assert backend.os.environ["LIBTORCH"] == "/opt/libtorch"


def test_without_torch_asks_pip_for_it_and_refuses_to_build(no_user_setting, monkeypatch):
    monkeypatch.setattr(backend, "find_torch", lambda: None)
    assert backend._requires(["maturin>=1.9,<2"]) == ["maturin>=1.9,<2", "torch==2.13.0"]
    with pytest.raises(RuntimeError, match=r"pip install torch==2\.13\.0"):
        backend._point_tch_at_torch()


def test_a_torch_of_another_version_does_not_count(no_user_setting, monkeypatch, tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "libtorch_cpu.so").write_bytes(b"")
    (tmp_path / "version.py").write_text("__version__ = '2.12.0+cpu'\n")
    monkeypatch.setattr(backend.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(backend, "_target_torch", lambda: str(tmp_path))
    assert backend.find_torch() is None
    (tmp_path / "version.py").write_text("__version__ = '2.13.0+cpu'\n")
    assert backend.find_torch() == tmp_path
