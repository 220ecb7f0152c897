"""Differential privacy: clipping, Gaussian noise and an RDP accountant.

An update is one float32 array or a list of them (a model's parameters); ``clip``,
``add_noise`` and ``GaussianNoise.add`` return the same kind of thing and leave their input
untouched. Noise comes from a ChaCha20 CSPRNG keyed from the OS (or from a seed, for tests
and simulations). ``RdpAccountant`` composes rounds of the Poisson-subsampled Gaussian
mechanism and agrees with Google's ``dp-accounting``.

>>> import numpy as np
>>> from battery_fl import dp
>>> update = [np.array([3.0, 0.0]), np.array([4.0])]
>>> clipped = dp.clip(update, max_norm=1.0)
>>> round(dp.l2_norm(clipped), 6)
1.0
>>> noisy = dp.add_noise(clipped, std=dp.RoundNoise("central", 1.0, 1.0, 10).server_mean_std, seed=0)
>>> acc = dp.RdpAccountant(max_epsilon=10.0)
>>> acc.step(noise_multiplier=1.0, sample_rate=0.5, steps=3)
>>> 0 < acc.epsilon(1e-5) < 10
True
"""

from battery_fl._core import (
    DpFloor,
    GaussianNoise,
    RdpAccountant,
    RoundNoise,
    ServerDp,
    add_noise,
    check_mode,
    clip,
    l2_norm,
)
from battery_fl._core import dp_default_adaptive_config as default_adaptive_config
from battery_fl._core import dp_default_config as default_config
from battery_fl._core import dp_default_record_config as default_record_config

__all__ = [
    "DpFloor",
    "GaussianNoise",
    "RdpAccountant",
    "RoundNoise",
    "ServerDp",
    "add_noise",
    "check_mode",
    "clip",
    "default_adaptive_config",
    "default_config",
    "default_record_config",
    "l2_norm",
]
