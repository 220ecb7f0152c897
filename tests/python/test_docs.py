"""Every docstring example runs (the docstrings live in the Rust bindings and the Python
package), and every public object is documented."""

from __future__ import annotations

import doctest
import inspect
from typing import Any

import pytest

import battery_fl
from battery_fl import _core, dp, secagg, synthetic

MODULES = (battery_fl, dp, secagg, synthetic)


def _public(obj: Any) -> list[tuple[str, Any]]:
    return [(n, getattr(obj, n)) for n in dir(obj) if not n.startswith("_")]


def _doctests() -> list[doctest.DocTest]:
    finder = doctest.DocTestFinder(exclude_empty=True)
    found: dict[str, doctest.DocTest] = {}
    for module in MODULES:
        for test in finder.find(module, module.__name__):
            found.setdefault(test.name, test)
    for name, obj in _public(_core):
        targets = (
            [(name, obj)] + [(f"{name}.{a}", v) for a, v in vars(obj).items()]
            if inspect.isclass(obj)
            else [(name, obj)]
        )
        for qual, target in targets:
            if ">>>" in (getattr(target, "__doc__", None) or ""):
                for test in finder.find(target, f"battery_fl._core.{qual}", module=False, globs={}):
                    found.setdefault(test.name, test)
    return [t for t in found.values() if t.examples]


DOCTESTS = _doctests()


def test_there_are_examples_for_every_module() -> None:
    names = " ".join(t.name for t in DOCTESTS)
    for expected in (
        "Cell",
        "Featurizer",
        "GenomeFingerprint",
        "BatLiNet",
        "VarianceModel",
        "FedAvg",
        "FedAdam",
        "FedTrimmedAvg",
        "clip",
        "RdpAccountant",
        "simulate_round",
        "Simulation",
        "generate_fleets",
        "battery_fl.dp",
        "battery_fl.secagg",
        "battery_fl.synthetic",
    ):
        assert expected in names, expected


@pytest.mark.parametrize("test", DOCTESTS, ids=[t.name for t in DOCTESTS])
def test_docstring_examples(test: doctest.DocTest) -> None:
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    result = runner.run(test, out=lambda s: print(s, end=""))
    assert result.failed == 0, test.name


def test_public_objects_are_documented() -> None:
    for module in MODULES:
        assert module.__doc__
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if inspect.isclass(obj) or callable(obj):
                assert obj.__doc__ and len(obj.__doc__) > 20, f"{module.__name__}.{name}"
