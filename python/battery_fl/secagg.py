"""Secure aggregation (SecAgg+): the server learns only the sum of the clients' updates.

``SecAggServer`` and ``SecAggClient`` are the two sides of one round; every message between
them is ``bytes`` (a strict binary encoding), so any transport can carry them.
``simulate_round`` runs a whole round in process with simulated dropouts: ``drop`` maps a
client index to the stage at which it disappears (the constants below). The server's
``receive_*`` methods take ``sender=``, the client id the transport authenticated (never
the id written inside the message); ``SecAggServer(..., run=...)`` gives each run a fresh
id so that messages of one run cannot be replayed into another; ``SecAggClient(...,
min_clients=..., min_threshold=...)`` pins the smallest setup the client accepts.

>>> import numpy as np
>>> from battery_fl import secagg
>>> dim = 3
>>> server = secagg.SecAggServer([0, 1, 2], dim, threshold=2, max_weight=1.0, seed=bytes(32))
>>> clients = {i: secagg.SecAggClient(i, server.setup(), seed=bytes([i]) * 32) for i in range(3)}
>>> for i, c in clients.items():
...     server.receive_keys(c.advertise_keys(), sender=i)
>>> for i, d in server.finish_advertise().items():
...     server.receive_shares(clients[i].share_keys(d), sender=i)
>>> for i, f in server.finish_share_keys().items():
...     masked = clients[i].masked_input(f, np.full(dim, 0.25 * i), 1.0)
...     server.receive_masked_input(masked, sender=i)
>>> for i, r in server.finish_masked_input().items():
...     server.receive_unmask(clients[i].unmask(r), sender=i)
>>> result = server.finish()
>>> result.survivors, np.allclose(result.sum, 0.75, atol=1e-4)
([0, 1, 2], True)
"""

from battery_fl._core import (
    STATISTICS_BOUND,
    NodeSession,
    SecAggClient,
    SecAggResult,
    SecAggServer,
    decode_statistics,
    encode_statistics,
    protocol_threshold,
    simulate_round,
    statistics_protocol,
    verifying_key,
)
from battery_fl._core import secagg_default_config as default_config

#: Dropout stages for ``simulate_round(drop={client: stage})``.
ADVERTISE_KEYS, SHARE_KEYS, MASKED_INPUT, UNMASK = 0, 1, 2, 3

__all__ = [
    "ADVERTISE_KEYS",
    "MASKED_INPUT",
    "SHARE_KEYS",
    "UNMASK",
    "STATISTICS_BOUND",
    "NodeSession",
    "SecAggClient",
    "SecAggResult",
    "SecAggServer",
    "decode_statistics",
    "encode_statistics",
    "protocol_threshold",
    "simulate_round",
    "statistics_protocol",
    "default_config",
    "verifying_key",
]
