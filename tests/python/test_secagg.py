"""Secure aggregation: the recovered sum equals the plain sum within quantization, with
dropouts at every stage, through bytes messages between client and server objects."""

from __future__ import annotations

import numpy as np
import pytest

import battery_fl
from battery_fl import secagg

N, DIM = 6, 40
RNG = np.random.default_rng(3)
INPUTS = [RNG.uniform(-1.0, 1.0, DIM).astype(np.float32) for _ in range(N)]
# each survivor's value is quantized to 2c/T; 6 of them stay well inside this
TOL = 6 * 2 * 8.0 / 2**22


def _plain_sum(survivors: list[int]) -> np.ndarray:
    return np.sum([INPUTS[i].astype(np.float64) for i in survivors], axis=0)


def test_simulate_round_recovers_the_sum() -> None:
    total = secagg.simulate_round(INPUTS, threshold=4, seed=1)
    assert total.shape == (DIM,) and total.dtype == np.float32
    np.testing.assert_allclose(total, _plain_sum(list(range(N))), atol=TOL)
    np.testing.assert_array_equal(total, secagg.simulate_round(INPUTS, threshold=4, seed=1))
    sparse = secagg.simulate_round(INPUTS, threshold=3, neighbours=5, modulus_bits=64, seed=2)
    np.testing.assert_allclose(sparse, _plain_sum(list(range(N))), atol=TOL)
    # OS randomness by default: still the same sum
    np.testing.assert_allclose(secagg.simulate_round(INPUTS, threshold=4), total, atol=2 * TOL)


@pytest.mark.parametrize(
    "stage", [secagg.ADVERTISE_KEYS, secagg.SHARE_KEYS, secagg.MASKED_INPUT, secagg.UNMASK]
)
def test_dropouts_at_every_stage(stage: int) -> None:
    total = secagg.simulate_round(INPUTS, threshold=4, drop={1: stage, 4: stage}, seed=3)
    # clients that leave before sending their masked input are not in the sum; later ones are
    survivors = list(range(N)) if stage == secagg.UNMASK else [0, 2, 3, 5]
    np.testing.assert_allclose(total, _plain_sum(survivors), atol=TOL)


def test_too_many_dropouts_and_bad_arguments() -> None:
    with pytest.raises(battery_fl.SecAggError) as info:
        secagg.simulate_round(INPUTS, threshold=4, drop={0: 2, 1: 2, 2: 2}, seed=1)
    assert info.value.kind == "below_threshold"
    with pytest.raises(battery_fl.ConfigError):
        secagg.simulate_round(INPUTS, threshold=4, drop={0: 4})
    with pytest.raises(battery_fl.ConfigError) as info:
        secagg.simulate_round(INPUTS, threshold=1)
    assert info.value.field == "threshold"
    with pytest.raises(battery_fl.DataError):
        secagg.simulate_round([np.zeros(3), np.zeros(3), np.zeros(4)], threshold=2)


def _run(drop_at: dict[int, str] | None = None, pki: bool = False, weight: float = 1.0):
    """Drive one round through the client and server objects, passing bytes only."""
    drop_at = drop_at or {}
    ids = list(range(10, 10 + N))
    keys = {i: secagg.verifying_key(bytes([i]) * 32) for i in ids} if pki else None
    server = secagg.SecAggServer(
        ids, DIM, round=7, threshold=4, max_weight=1.0, seed=bytes(32), pki=keys, run=3
    )
    setup = server.setup()
    clients = {
        i: secagg.SecAggClient(
            i,
            setup,
            seed=bytes([100 + i]) * 32,
            identity_seed=bytes([i]) * 32 if pki else None,
            pki=keys,
        )
        for i in ids
    }
    assert (
        clients[10].client_id == 10 and clients[10].round == 7 and server.stage == "advertise_keys"
    )

    def alive(i: int, stage: str) -> bool:
        order = ["advertise_keys", "share_keys", "masked_input", "unmask"]
        return i not in drop_at or order.index(drop_at[i]) > order.index(stage)

    for i, c in clients.items():
        if alive(i, "advertise_keys"):
            server.receive_keys(c.advertise_keys(), sender=i)
    for i, directory in server.finish_advertise().items():
        if alive(i, "share_keys"):
            server.receive_shares(clients[i].share_keys(directory), sender=i)
    for i, forwarded in server.finish_share_keys().items():
        if alive(i, "masked_input"):
            masked = clients[i].masked_input(forwarded, INPUTS[i - 10], weight)
            server.receive_masked_input(masked, sender=i)
    if pki:
        for i, check in server.start_consistency_check().items():
            server.receive_consistency(clients[i].consistency_check(check), sender=i)
        requests = server.finish_consistency_check()
    else:
        requests = server.finish_masked_input()
    for i, request in requests.items():
        if alive(i, "unmask"):
            server.receive_unmask(clients[i].unmask(request), sender=i)
    return server, server.finish()


def test_client_and_server_objects_over_bytes() -> None:
    server, result = _run({12: "share_keys", 15: "unmask"})
    assert result.round == 7 and server.stage == "done"
    assert (
        server.u1 == list(range(10, 16)) and 12 not in server.u2 and server.u3 == result.survivors
    )
    assert result.survivors == [10, 11, 13, 14, 15]
    want = _plain_sum([0, 1, 3, 4, 5])
    np.testing.assert_allclose(result.sum, want, atol=TOL)
    np.testing.assert_allclose(result.mean, want / 5, atol=TOL)
    assert result.total_weight == pytest.approx(5.0)
    assert result.encoded_sum.dtype == np.uint64 and result.encoded_sum.shape == (DIM + 1,)


def test_weighted_mean_and_pki_mode() -> None:
    _, result = _run(weight=0.5, pki=True)
    np.testing.assert_allclose(result.mean, _plain_sum(list(range(N))) / N, atol=TOL)
    np.testing.assert_allclose(result.sum, _plain_sum(list(range(N))) * 0.5, atol=TOL)
    assert result.total_weight == pytest.approx(0.5 * N)


def test_protocol_violations_raise_secagg_error() -> None:
    server = secagg.SecAggServer(list(range(N)), DIM, threshold=4, seed=bytes(32))
    clients = [secagg.SecAggClient(i, server.setup()) for i in range(N)]
    keys = [c.advertise_keys() for c in clients]
    server.receive_keys(keys[0], sender=0)
    with pytest.raises(battery_fl.SecAggError):
        server.receive_keys(keys[0], sender=0)  # duplicate
    with pytest.raises(battery_fl.SecAggError):
        server.finish_share_keys()  # wrong stage
    with pytest.raises(TypeError):
        server.receive_keys(keys[1])  # type: ignore[call-arg]  # sender is required
    for i, k in enumerate(keys[1:], start=1):
        server.receive_keys(k, sender=i)
    directories = server.finish_advertise()
    shares = clients[0].share_keys(directories[0])
    tampered = bytearray(shares)
    tampered[-1] ^= 1
    server.receive_shares(bytes(tampered), sender=0)  # the server only forwards ciphertexts ...
    for i in range(1, N):
        server.receive_shares(clients[i].share_keys(directories[i]), sender=i)
    forwarded = server.finish_share_keys()
    rejected = []  # ... and the recipient of the flipped ciphertext (only it) rejects it
    for i in range(N):
        try:
            masked = clients[i].masked_input(forwarded[i], INPUTS[i], 1.0)
            server.receive_masked_input(masked, sender=i)
        except battery_fl.SecAggError as err:
            rejected.append((i, err.stage))
    assert len(rejected) == 1 and rejected[0][0] != 0 and rejected[0][1] == "masked_input"
    with pytest.raises(battery_fl.SecAggError):
        server.receive_masked_input(b"SA+\x02junk", sender=1)
    with pytest.raises(battery_fl.ConfigError):
        secagg.SecAggClient(0, server.setup(), seed=b"short")
    with pytest.raises(battery_fl.ConfigError):
        secagg.SecAggClient(0, server.setup(), identity_seed=bytes(32))  # without a pki


def test_a_node_cannot_send_in_another_nodes_name() -> None:
    server = secagg.SecAggServer(list(range(N)), DIM, threshold=4, max_weight=1.0, seed=bytes(32))
    clients = [secagg.SecAggClient(i, server.setup(), seed=bytes([i + 1]) * 32) for i in range(N)]
    impostor = secagg.SecAggClient(2, server.setup(), seed=bytes([99]) * 32)
    with pytest.raises(battery_fl.SecAggError) as info:
        server.receive_keys(impostor.advertise_keys(), sender=1)  # node 1 writing as node 2
    assert info.value.stage == "advertise_keys"
    for i, c in enumerate(clients):
        server.receive_keys(c.advertise_keys(), sender=i)
    directories = server.finish_advertise()
    assert server.u1 == list(range(N))  # node 2's genuine keys were accepted
    for i, d in directories.items():
        server.receive_shares(clients[i].share_keys(d), sender=i)
    forwarded = server.finish_share_keys()
    masked = {i: clients[i].masked_input(forwarded[i], INPUTS[i], 1.0) for i in range(N)}
    with pytest.raises(battery_fl.SecAggError):
        server.receive_masked_input(masked[2], sender=1)
    assert server.u3 == []
    for i, m in masked.items():
        server.receive_masked_input(m, sender=i)
    for i, r in server.finish_masked_input().items():
        server.receive_unmask(clients[i].unmask(r), sender=i)
    result = server.finish()
    assert result.survivors == list(range(N))
    np.testing.assert_allclose(result.mean, _plain_sum(list(range(N))) / N, atol=TOL)


def test_messages_of_another_run_are_refused() -> None:
    ids = list(range(N))
    run1 = secagg.SecAggServer(ids, DIM, threshold=4, seed=bytes(32), run=1)
    run2 = secagg.SecAggServer(ids, DIM, threshold=4, seed=bytes(32), run=2)
    # same round number and the same client seed in both runs
    old = secagg.SecAggClient(0, run1.setup(), seed=bytes([7]) * 32)
    with pytest.raises(battery_fl.SecAggError):
        run2.receive_keys(old.advertise_keys(), sender=0)
    new = secagg.SecAggClient(0, run2.setup(), seed=bytes([7]) * 32)
    run2.receive_keys(new.advertise_keys(), sender=0)


def test_client_policy_refuses_weak_setups() -> None:
    server = secagg.SecAggServer([0, 1, 2], DIM, threshold=2, seed=bytes(32))
    # n = 3, t = 2: the server and one colluder can isolate a client's input
    careful = secagg.SecAggClient(0, server.setup(), min_threshold=3)
    with pytest.raises(battery_fl.SecAggError) as info:
        careful.advertise_keys()
    assert info.value.stage == "advertise_keys"
    with pytest.raises(battery_fl.SecAggError):
        secagg.SecAggClient(0, server.setup(), min_clients=4).advertise_keys()
    secagg.SecAggClient(0, server.setup()).advertise_keys()  # the defaults accept it
    with pytest.raises(battery_fl.ConfigError):
        secagg.SecAggClient(0, server.setup(), min_threshold=1)


def _statistics_round(values: list[np.ndarray], weights: list[float], drop: int | None = None):
    """One secure sum of float64 statistics through the client and server objects, with the
    core's statistics protocol and encoding (as the Flower nodes run it)."""
    ids = list(range(len(values)))
    protocol = secagg.statistics_protocol(len(ids))
    server = secagg.SecAggServer(ids, 2 * len(values[0]), seed=bytes(32), **protocol)
    clients = {i: secagg.SecAggClient(i, server.setup(), seed=bytes([i + 1]) * 32) for i in ids}
    for i, c in clients.items():
        server.receive_keys(c.advertise_keys(), sender=i)
    for i, d in server.finish_advertise().items():
        server.receive_shares(clients[i].share_keys(d), sender=i)
    for i, f in server.finish_share_keys().items():
        if i != drop:
            encoded = secagg.encode_statistics(values[i])
            server.receive_masked_input(clients[i].masked_input(f, encoded, weights[i]), sender=i)
    for i, r in server.finish_masked_input().items():
        server.receive_unmask(clients[i].unmask(r), sender=i)
    return server.finish()


def test_statistics_sum_is_exact_in_float64_and_checks_the_weights() -> None:
    rng = np.random.default_rng(11)
    # statistics of very different sizes: counts, sums of squares, tiny input scales
    base = np.array([24.0, 1.5e7, 3.1e-4, -2.5e3])
    values = [base * (i + 1) + rng.normal(0, 1e-5, 4) for i in range(4)]
    grid = 2 * secagg.STATISTICS_BOUND / secagg.statistics_protocol(4)["target_range"]
    result = _statistics_round(values, [1.0] * 4, drop=2)
    assert result.survivors == [0, 1, 3]
    total = secagg.decode_statistics(result.encoded_sum, survivors=3, parties=4)
    want = values[0] + values[1] + values[3]
    assert total.dtype == np.float64
    # each survivor contributes at most one grid step per part (float32 alone would be off by
    # up to 4 at 4.5e7)
    np.testing.assert_allclose(total, want, rtol=0, atol=6 * grid)
    # a node that masks its statistics at another weight shifts nothing silently
    cheat = _statistics_round(values, [1.0, 1.0, 0.5, 1.0])
    with pytest.raises(battery_fl.SecAggError, match="weights"):
        secagg.decode_statistics(cheat.encoded_sum, survivors=4, parties=4)
    with pytest.raises(battery_fl.ConfigError):
        secagg.encode_statistics([1.0, 2 * secagg.STATISTICS_BOUND])
    with pytest.raises(battery_fl.ConfigError):
        secagg.statistics_protocol(2)


def test_binding_defaults_are_the_cores() -> None:
    """The secure-aggregation defaults a Python caller gets are the core's, not numbers
    written again in a binding: the Flower workflow's, and the encoding of a round run
    without them."""
    from battery_fl.flower import SecAggWorkflow

    core = secagg.default_config()
    wf = SecAggWorkflow()
    keys = ("clipping_range", "target_range", "modulus_bits", "max_weight")
    assert {k: getattr(wf, k) for k in keys} == {k: core[k] for k in keys}
    # a server built without them encodes as one built with the core's values
    inputs = [np.full(4, 0.25 * i, dtype=np.float32) for i in range(4)]
    explicit = {k: core[k] for k in ("clipping_range", "target_range", "modulus_bits")}
    np.testing.assert_array_equal(
        secagg.simulate_round(inputs, threshold=3, seed=1),
        secagg.simulate_round(inputs, threshold=3, seed=1, **explicit),
    )
