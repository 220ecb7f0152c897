"""Secure aggregation (SecAgg+): the server learns only the sum of the clients' updates.

``SecAggServer`` and ``SecAggClient`` are the two sides of one round; every message between
them is ``bytes`` (a strict binary encoding), so any transport can carry them.
``simulate_round`` runs a whole round in process with simulated dropouts: ``drop`` maps a
client index to the stage at which it disappears (the constants below).

>>> import numpy as np
>>> from battery_fl import secagg
>>> dim = 3
>>> server = secagg.SecAggServer([0, 1, 2], dim, threshold=2, max_weight=1.0, seed=bytes(32))
>>> clients = {i: secagg.SecAggClient(i, server.setup(), seed=bytes([i]) * 32) for i in range(3)}
>>> for c in clients.values():
...     server.receive_keys(c.advertise_keys())
>>> for i, d in server.finish_advertise().items():
...     server.receive_shares(clients[i].share_keys(d))
>>> for i, f in server.finish_share_keys().items():
...     server.receive_masked_input(clients[i].masked_input(f, np.full(dim, 0.25 * i), 1.0))
>>> for i, r in server.finish_masked_input().items():
...     server.receive_unmask(clients[i].unmask(r))
>>> result = server.finish()
>>> result.survivors, np.allclose(result.sum, 0.75, atol=1e-4)
([0, 1, 2], True)
"""

from battery_fl._core import (
    SecAggClient,
    SecAggResult,
    SecAggServer,
    simulate_round,
    verifying_key,
)

#: Dropout stages for ``simulate_round(drop={client: stage})``.
ADVERTISE_KEYS, SHARE_KEYS, MASKED_INPUT, UNMASK = 0, 1, 2, 3

__all__ = [
    "ADVERTISE_KEYS",
    "MASKED_INPUT",
    "SHARE_KEYS",
    "UNMASK",
    "SecAggClient",
    "SecAggResult",
    "SecAggServer",
    "simulate_round",
    "verifying_key",
]
