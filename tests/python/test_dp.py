"""Differential privacy: clipping, noise, round scales and the RDP accountant."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

import battery_fl
from battery_fl import dp


def test_clip_scales_down_to_the_bound_and_keeps_direction() -> None:
    update = [np.array([3.0, 0.0], dtype=np.float32), np.array([[4.0]], dtype=np.float32)]
    clipped = dp.clip(update, 2.0)
    assert isinstance(clipped, list) and [c.shape for c in clipped] == [(2,), (1, 1)]
    assert dp.l2_norm(clipped) <= 2.0 and dp.l2_norm(clipped) == pytest.approx(2.0, rel=1e-6)
    np.testing.assert_allclose(clipped[0], [1.2, 0.0], rtol=1e-6)
    assert update[0][0] == 3.0  # the input is untouched
    small = np.array([0.1, 0.2], dtype=np.float32)
    np.testing.assert_array_equal(dp.clip(small, 1.0), small)  # within the bound: bit for bit
    assert dp.l2_norm(np.array([3.0, 4.0])) == 5.0
    with pytest.raises(battery_fl.ConfigError):
        dp.clip(small, 0.0)


def test_noise_is_seeded_gaussian() -> None:
    zeros = np.zeros(20_000, dtype=np.float32)
    a = dp.add_noise(zeros, 0.5, seed=1)
    np.testing.assert_array_equal(a, dp.add_noise(zeros, 0.5, seed=1))
    assert not np.array_equal(a, dp.add_noise(zeros, 0.5, seed=2))
    assert not np.array_equal(dp.add_noise(zeros, 0.5), dp.add_noise(zeros, 0.5))  # OS-keyed
    assert abs(a.mean()) < 0.02 and a.std() == pytest.approx(0.5, rel=0.03)
    listed = dp.add_noise([zeros[:3], zeros[:2]], 1.0, seed=1)
    assert [x.shape for x in listed] == [(3,), (2,)]
    np.testing.assert_array_equal(dp.add_noise(zeros, 0.0, seed=3), zeros)
    with pytest.raises(battery_fl.ConfigError):
        dp.add_noise(zeros, -1.0)


def test_gaussian_noise_source_draws_a_fresh_stream_per_call() -> None:
    g, h = dp.GaussianNoise(seed=5), dp.GaussianNoise(seed=5)
    x = np.zeros(100)
    first, second = g.add(x, 1.0), g.add(x, 1.0)
    assert not np.array_equal(first, second) and g.calls == 2
    np.testing.assert_array_equal(first, h.add(x, 1.0))
    assert isinstance(g.sample(2.0), float) and g.calls == 3
    assert "secret" in repr(g)


def test_round_noise_scales() -> None:
    central = dp.RoundNoise("central", 1.5, 2.0, 4)
    assert (
        central.sum_std,
        central.client_std,
        central.server_sum_std,
        central.server_mean_std,
    ) == (3.0, 0.0, 3.0, 0.75)
    assert dp.RoundNoise("local", 1.5, 2.0, 4).client_std == 3.0
    assert dp.RoundNoise("distributed", 1.5, 2.0, 4).client_std == pytest.approx(1.5)
    with pytest.raises(battery_fl.ConfigError):
        dp.RoundNoise("everywhere", 1.0, 1.0, 1)
    with pytest.raises(battery_fl.ConfigError):
        dp.RoundNoise("central", 1.0, 1.0, 0)


def test_accountant_anchors_budget_and_pickle() -> None:
    acc = dp.RdpAccountant()
    assert acc.epsilon(1e-5) == 0.0
    acc.step(noise_multiplier=1.0, sample_rate=1.0, steps=1)
    assert acc.epsilon(1e-5) == pytest.approx(4.7285, rel=1e-4)  # dp-accounting's value
    ahead = acc.epsilon_after(1.0, 1.0, 2, 1e-5)
    assert ahead == pytest.approx(9.0100, rel=1e-4) and acc.steps == 1
    acc.step(1.0, 1.0, 2)
    assert acc.epsilon(1e-5) == pytest.approx(ahead) and acc.steps == 3
    copy = pickle.loads(pickle.dumps(acc))
    assert copy.epsilon(1e-5) == acc.epsilon(1e-5) and copy.steps == 3
    # subsampling amplifies privacy
    sub = dp.RdpAccountant()
    sub.step(1.0, 0.1, 3)
    assert sub.epsilon(1e-5) < acc.epsilon(1e-5)
    budget = dp.RdpAccountant(max_epsilon=8.0)
    budget.step(1.0, 1.0)
    budget.step(1.0, 1.0)
    with pytest.raises(battery_fl.PrivacyError):
        budget.step(1.0, 1.0)
    assert math.isfinite(budget.epsilon(1e-5)) and budget.steps == 2
    with pytest.raises(battery_fl.ConfigError):
        acc.step(noise_multiplier=0.0, sample_rate=1.0)
    with pytest.raises(battery_fl.ConfigError):
        dp.RdpAccountant(max_epsilon=-1.0)
