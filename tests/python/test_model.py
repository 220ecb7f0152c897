"""BatLiNet and the variance baseline: training, prediction, weights, files, pickling."""

from __future__ import annotations

import inspect
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import safetensors.numpy
import safetensors.torch
import torch
from conftest import CYCLES, INTERP, gil_blocked_fraction

import battery_fl
from battery_fl import synthetic


def test_defaults_match_the_core() -> None:
    core = battery_fl.BatLiNet.default_config()
    params = inspect.signature(battery_fl.BatLiNet).parameters
    compared = 0
    for name, default in core.items():
        if name in params and params[name].default is not None:
            assert params[name].default == default, name
            compared += 1
    assert compared >= 15
    assert core["input_channels"] == [0, 1, 2, 3, 4, 5]


def test_construction(model_kwargs: dict[str, Any]) -> None:
    model = battery_fl.BatLiNet(**model_kwargs, input_channels=[1, 4], selection="genome")
    assert model.input_shape == (2, CYCLES, INTERP)
    assert model.config["selection"] == "genome" and model.config["input_channels"] == [1, 4]
    assert model.featurizer == model_kwargs["featurizer"]
    assert model.label_transform is None and model.input_scales is None
    names = model.parameter_names
    assert names == sorted(names) and "head.weight" in names
    params = model.get_parameters()
    assert [p.dtype for p in params] == [np.float32] * len(names)
    assert sum(p.size for p in params) == model.num_parameters
    with pytest.raises(battery_fl.ConfigError) as info:
        battery_fl.BatLiNet(**model_kwargs, input_channels=[6])
    assert info.value.field == "input_channels"
    with pytest.raises(battery_fl.ConfigError):
        battery_fl.BatLiNet(device="tpu")


def test_training_schedule_settings(model_kwargs: dict[str, Any]) -> None:
    model = battery_fl.BatLiNet(**model_kwargs, lr_schedule="cosine", weight_averaging=0.25)
    assert (model.config["lr_schedule"], model.config["weight_averaging"]) == ("cosine", 0.25)
    for bad, field in [
        ({"lr_schedule": "step"}, "lr_schedule"),
        ({"weight_averaging": 1.0}, "weight_averaging"),
    ]:
        with pytest.raises(battery_fl.ConfigError) as info:
            battery_fl.BatLiNet(**model_kwargs, **bad)
        assert info.value.field == field


def test_fit_predict(fitted: battery_fl.BatLiNet, cells: list[battery_fl.Cell]) -> None:
    assert fitted.label_transform is not None
    a, b = fitted.input_scales  # type: ignore[misc]
    assert a.shape == b.shape == (6,) and (a > 0).all()
    targets, refs = cells[12:], cells[:12]
    lives = fitted.predict(targets, references=refs, k=4)
    assert lives.shape == (len(targets),) and lives.dtype == np.float64
    assert np.isfinite(lives).all() and (lives > 0).all()
    # seeded reference draws: the same seed gives the same prediction, another seed not
    np.testing.assert_array_equal(lives, fitted.predict(targets, refs, k=4))
    assert not np.array_equal(lives, fitted.predict(targets, refs, k=4, seed=99))
    genome = fitted.predict(targets, refs, k=4, selection="genome")
    np.testing.assert_array_equal(
        genome, fitted.predict(targets, refs, k=4, selection="genome", seed=99)
    )
    with pytest.raises(battery_fl.DataError):  # two branches need references
        fitted.predict(targets)
    with pytest.raises(battery_fl.ConfigError):
        fitted.predict(targets, refs, selection="closest")


def test_fit_is_seeded_and_learns(
    cells: list[battery_fl.Cell], model_kwargs: dict[str, Any]
) -> None:
    kw = {**model_kwargs, "epochs": 8}
    m1, m2 = battery_fl.BatLiNet(**kw), battery_fl.BatLiNet(**kw)
    losses = m1.fit(cells[:12])
    assert losses == m2.fit(cells[:12]) and len(losses) == 8
    assert losses[-1] < losses[0]
    for p, q in zip(m1.get_parameters(), m2.get_parameters(), strict=True):
        np.testing.assert_array_equal(p, q)


def test_single_branch_needs_no_references(
    cells: list[battery_fl.Cell], model_kwargs: dict[str, Any]
) -> None:
    cnn = battery_fl.BatLiNet(**model_kwargs, single_branch=True, train_references=0)
    cnn.fit(cells[:12])
    assert cnn.predict(cells[12:]).shape == (6,)


def test_parameters_round_trip(
    fitted: battery_fl.BatLiNet, cells: list[battery_fl.Cell], model_kwargs: dict[str, Any]
) -> None:
    other = battery_fl.BatLiNet(**{**model_kwargs, "seed": 7})
    mean, std = fitted.label_transform  # type: ignore[misc]
    other.set_label_transform(mean, std)
    a, b = fitted.input_scales  # type: ignore[misc]
    other.set_input_scales(a.tolist(), b.tolist())
    refs = cells[:12]
    assert not np.array_equal(other.predict(cells[12:], refs), fitted.predict(cells[12:], refs))
    other.set_parameters(fitted.get_parameters())
    np.testing.assert_array_equal(other.predict(cells[12:], refs), fitted.predict(cells[12:], refs))
    params = fitted.get_parameters()
    with pytest.raises(battery_fl.DataError):
        other.set_parameters(params[:-1])
    with pytest.raises(battery_fl.BatteryFlError):
        other.set_parameters([np.zeros(3)] * len(params))
    with pytest.raises(battery_fl.ConfigError):
        other.set_input_scales([0.0] * 6, [1.0] * 6)


def test_train_with_fedprox_and_fine_tune(
    fitted: battery_fl.BatLiNet, cells: list[battery_fl.Cell]
) -> None:
    start = fitted.get_parameters()
    free, prox = (
        battery_fl.BatLiNet.from_bytes(fitted.to_bytes()),
        battery_fl.BatLiNet.from_bytes(fitted.to_bytes()),
    )
    free.train(cells[12:], epochs=3, seed=4, learning_rate=0.01)
    prox.train(cells[12:], epochs=3, seed=4, learning_rate=0.01, mu=100.0, global_parameters=start)

    def drift(m: battery_fl.BatLiNet) -> float:
        return float(
            sum(np.sum((p - q) ** 2) for p, q in zip(m.get_parameters(), start, strict=True))
        )

    assert 0 < drift(prox) < drift(free)  # the proximal term pulls towards the global model
    tuned = battery_fl.BatLiNet.from_bytes(fitted.to_bytes())
    assert len(tuned.fine_tune(cells[12:], epochs=2)) == 2
    names = tuned.parameter_names
    for name, p, q in zip(names, tuned.get_parameters(), start, strict=True):
        assert np.array_equal(p, q) != name.startswith("head."), name  # only the head moved
    with pytest.raises(battery_fl.ConfigError):
        tuned.fine_tune(cells[12:], epochs=1, trainable="all")
    with pytest.raises(battery_fl.ConfigError):
        tuned.train(cells[12:], trainable="everything")


def test_save_load_bytes_and_pickle(
    tmp_path: Path, fitted: battery_fl.BatLiNet, cells: list[battery_fl.Cell]
) -> None:
    refs = cells[:12]
    want = fitted.predict(cells[12:], refs)
    fitted.save(tmp_path / "model")
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == [
        "model.json",
        "model.safetensors",
    ]
    for copy in (
        battery_fl.BatLiNet.load(tmp_path / "model"),
        battery_fl.BatLiNet.from_bytes(fitted.to_bytes()),
        pickle.loads(pickle.dumps(fitted)),
    ):
        np.testing.assert_array_equal(copy.predict(cells[12:], refs), want)
        assert copy.config == fitted.config and copy.label_transform == fitted.label_transform
    with pytest.raises(battery_fl.DataError):
        battery_fl.BatLiNet.load(tmp_path / "missing")


def test_pytorch_users_open_the_weights_with_safetensors(
    tmp_path: Path, fitted: battery_fl.BatLiNet
) -> None:
    fitted.save(tmp_path)
    names, params = fitted.parameter_names, fitted.get_parameters()
    arrays = safetensors.numpy.load_file(tmp_path / "model.safetensors")
    assert sorted(arrays) == names
    for name, p in zip(names, params, strict=True):
        assert arrays[name].dtype == np.float32 and arrays[name].shape == p.shape
        np.testing.assert_array_equal(arrays[name], p)
    tensors = safetensors.torch.load_file(tmp_path / "model.safetensors")
    for name, p in zip(names, params, strict=True):
        assert tensors[name].dtype == torch.float32 and tuple(tensors[name].shape) == p.shape
        assert torch.equal(tensors[name], torch.from_numpy(p))
    # and the other way round: weights written by PyTorch load into the model
    torch_weights = {n: t * 0.5 for n, t in tensors.items()}
    safetensors.torch.save_file(
        torch_weights, tmp_path / "model.safetensors", metadata={"format": "pt"}
    )
    halved = battery_fl.BatLiNet.load(tmp_path)
    for p, q in zip(halved.get_parameters(), params, strict=True):
        np.testing.assert_array_equal(p, q * 0.5)


def test_training_releases_the_gil(
    cells: list[battery_fl.Cell], model_kwargs: dict[str, Any]
) -> None:
    model = battery_fl.BatLiNet(**{**model_kwargs, "epochs": 15, "conv_channels": 8})
    assert gil_blocked_fraction(lambda: model.fit(cells)) < 0.5


def test_variance_model() -> None:
    cells = [
        synthetic.generate_cell(
            "LFP", cell_id=f"c{i}", charge_c_rate=1.0 + 0.4 * i, seed=i, points_per_cycle=60
        )
        for i in range(8)
    ]
    model = battery_fl.VarianceModel.fit(cells)
    assert model.slope < 0 and (model.early_cycle, model.late_cycle) == (10, 100)
    lives = model.predict(cells)
    assert lives.shape == (8,) and (lives > 0).all()
    x = model.feature(cells[0])
    assert lives[0] == pytest.approx(10 ** (model.intercept + model.slope * x))
    truth = np.array([c.cycle_life() for c in cells], dtype=float)
    assert np.corrcoef(np.log(lives), np.log(truth))[0, 1] > 0.5
    assert battery_fl.VarianceModel.from_json(model.to_json()) == model
    assert pickle.loads(pickle.dumps(model)) == model
    with pytest.raises(battery_fl.DataError):
        battery_fl.VarianceModel.fit(cells[:1])
