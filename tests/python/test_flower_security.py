"""Attacks on the Flower deployment path, performed in process (battery_fl.flower.LocalGrid):
a curious server that replays protocol stages, a server that lowers a
node's DP settings, and the DP accounting of the strategy. Each test fails on the code before
the security fixes (issue: security defects in the shipped SecAgg and DP paths)."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

import battery_fl
from battery_fl import dp, secagg
from battery_fl.flower import BatteryFlStrategy, DpConfig, LocalGrid, SecAggWorkflow, secagg_mod
from battery_fl.flower.secagg import DONE_KEY, STATE_KEY, _Exchange

NODES = {101: 10, 202: 20, 303: 30}  # node id -> its own number of training cells
DIM = 64


def secret_update(node: int) -> np.ndarray:
    """The update a node wants to keep to itself."""
    return np.random.default_rng(node).normal(0.0, 0.05, DIM).astype(np.float32)


def make_app() -> ClientApp:
    """Nodes whose ``train`` returns ``global + secret update``, weighted by their own count."""
    app = ClientApp(mods=[secagg_mod])

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        node = int(context.node_id)
        (start,) = msg.content["arrays"].to_numpy_ndarrays()  # type: ignore[union-attr]
        if context.node_config.get("fail-training"):
            raise RuntimeError("training failed")
        arrays = ArrayRecord([start + secret_update(node)])
        metrics = MetricRecord({"num-examples": NODES[node]})
        return Message(RecordDict({"arrays": arrays, "metrics": metrics}), reply_to=msg)

    return app


def payload(config: dict[str, float] | None = None) -> RecordDict:
    return RecordDict(
        {"arrays": ArrayRecord([np.zeros(DIM, np.float32)]), "config": ConfigRecord(config or {})}
    )


def start_round(
    grid: LocalGrid, round_id: int
) -> tuple[secagg.SecAggServer, _Exchange, dict[int, bytes]]:
    """Stages 0 and 1 of a round over every node; returns the forwarded shares."""
    server = secagg.SecAggServer(
        list(NODES),
        DIM,
        run=int(grid.run.run_id),
        round=round_id,
        threshold=2,
        max_weight=100.0,
        seed=bytes(32),
    )
    exchange = _Exchange(
        grid, "train", round_id, {"round": round_id, "dim": DIM, "mode": "delta"}, 10.0
    )
    keys = exchange.run(secagg.ADVERTISE_KEYS, {v: server.setup() for v in NODES})
    exchange.feed(server.receive_keys, keys, "advertise_keys")
    shares = exchange.run(secagg.SHARE_KEYS, server.finish_advertise())
    exchange.feed(server.receive_shares, shares, "share_keys")
    return server, exchange, server.finish_share_keys()


def test_a_repeated_stage_cannot_unmask_a_node() -> None:
    """The attack: send stage 2 twice with the same masks and other parameters (formerly a
    zero weight); the difference of the two answers was the mask. Now the node answers a
    repeat with the same bytes (and refuses other bytes), so the difference is zero, and
    the round still decodes to the mean weighted by the nodes' own counts."""
    grid = LocalGrid(make_app(), {node: {} for node in NODES})
    server, exchange, forwarded = start_round(grid, 1)
    first = exchange.run(secagg.MASKED_INPUT, forwarded, payload())
    again = exchange.run(secagg.MASKED_INPUT, forwarded, payload({"weight": 0.0}))
    # byte-identical answers: their difference, which used to be the mask, is zero
    assert set(first) == set(NODES) and again == first
    victim = 101

    # a stage-2 request with other protocol bytes is refused, and the node is not changed by it
    tampered = dict(forwarded)
    tampered[victim] = forwarded[202]
    assert exchange.run(secagg.MASKED_INPUT, {victim: tampered[victim]}, payload()) == {}

    exchange.feed(server.receive_masked_input, first, "masked_input")
    revealed = exchange.run(secagg.UNMASK, server.finish_masked_input())
    assert victim not in revealed  # it forgot the round when it refused the tampered request
    # the two others still unmask the round (threshold 2): the mean weighted by own counts
    exchange.feed(server.receive_unmask, revealed, "unmask")
    result = server.finish()
    weights = np.array(list(NODES.values()), dtype=np.float64)
    want = sum(w * secret_update(n) for n, w in zip(NODES, weights, strict=True)) / weights.sum()
    assert np.allclose(result.mean, want, atol=1e-4)


def test_a_finished_round_is_not_started_again_and_secrets_are_forgotten() -> None:
    grid = LocalGrid(make_app(), {node: {} for node in NODES})
    server, exchange, forwarded = start_round(grid, 1)
    exchange.feed(
        server.receive_masked_input, exchange.run(secagg.MASKED_INPUT, forwarded, payload()), ""
    )
    exchange.feed(
        server.receive_unmask, exchange.run(secagg.UNMASK, server.finish_masked_input()), ""
    )
    assert server.finish().survivors == sorted(NODES)
    for context in grid.contexts.values():
        assert STATE_KEY not in context.state  # the round secret is gone
        assert list(context.state[DONE_KEY]["rounds"]) == [1]  # type: ignore[index]
    # the same round again: every node refuses stage 0
    again = secagg.SecAggServer(
        list(NODES), DIM, run=int(grid.run.run_id), round=1, threshold=2, seed=bytes(32)
    )
    assert exchange.run(secagg.ADVERTISE_KEYS, {v: again.setup() for v in NODES}) == {}
    # a round whose training fails on a node: that node forgets the round's secret at once
    grid = LocalGrid(make_app(), {101: {"fail-training": 1}, 202: {}, 303: {}})
    _, exchange, forwarded = start_round(grid, 2)
    replies = exchange.run(secagg.MASKED_INPUT, forwarded, payload())
    assert 101 not in replies and STATE_KEY not in grid.contexts[101].state


def test_the_node_weight_is_its_own_and_capped_at_its_pinned_maximum() -> None:
    grid = LocalGrid(make_app(), {101: {"secagg-max-weight": 5.0}, 202: {}, 303: {}})
    server, exchange, forwarded = start_round(grid, 1)
    exchange.feed(
        server.receive_masked_input, exchange.run(secagg.MASKED_INPUT, forwarded, payload()), ""
    )
    exchange.feed(
        server.receive_unmask, exchange.run(secagg.UNMASK, server.finish_masked_input()), ""
    )
    result = server.finish()
    weights = {101: 5.0, 202: 20.0, 303: 30.0}
    want = sum(w * secret_update(n) for n, w in weights.items()) / sum(weights.values())
    assert np.allclose(result.mean, want, atol=1e-4)
    assert result.total_weight == pytest.approx(sum(weights.values()), rel=1e-3)


def test_a_node_refuses_a_setup_below_its_pinned_minimums() -> None:
    grid = LocalGrid(make_app(), {101: {"secagg-min-threshold": 3}, 202: {}, 303: {}})
    server = secagg.SecAggServer(
        list(NODES), DIM, run=int(grid.run.run_id), round=1, threshold=2, seed=bytes(32)
    )
    exchange = _Exchange(grid, "train", 1, {"round": 1, "dim": DIM, "mode": "delta"}, 10.0)
    keys = exchange.run(secagg.ADVERTISE_KEYS, {v: server.setup() for v in NODES})
    assert sorted(keys) == [202, 303]


def test_a_node_with_a_dp_floor_refuses_a_server_that_lowers_it() -> None:
    floor = {"dp-floor-clipping-norm": 1.0, "dp-floor-noise-multiplier": 1.0}
    app = battery_fl.flower.make_client_app()
    grid = LocalGrid(app, {1: floor})

    def train_with(config: dict[str, float]) -> str:
        msg = Message(payload(config), dst_node_id=1, message_type="train")
        (reply,) = grid.send_and_receive([msg])
        assert reply.has_error()
        return reply.error.reason or ""

    assert "PrivacyError" in train_with({})  # the server switched DP off
    assert "PrivacyError" in train_with({"dp-clipping-norm": 5.0, "dp-noise-std": 5.0})
    assert "PrivacyError" in train_with({"dp-clipping-norm": 1.0, "dp-noise-std": 0.1})
    # at the floor, the node goes on (and fails later only because this message has no model)
    assert "PrivacyError" not in train_with({"dp-clipping-norm": 1.0, "dp-noise-std": 1.0})


def test_dp_means_use_the_sampled_count_and_claim_no_amplification() -> None:
    """2 of 3 sampled nodes reply: the mean is their sum over 3 (a fixed denominator), and
    epsilon is accounted with sampling rate 1, though the server sampled 3 of 4 nodes."""
    app = make_app()
    grid = LocalGrid(app, {101: {}, 202: {}, 303: {"fail-training": 1}, 404: {"fail-training": 1}})
    config = DpConfig(noise_multiplier=1e-6, clipping_norm=100.0, seed=1)
    strategy = BatteryFlStrategy(
        battery_fl.FedAvg(), dp=config, fraction_train=0.75, min_available_nodes=4
    )
    arrays = ArrayRecord([np.zeros(DIM, np.float32)])
    messages = list(strategy.configure_train(1, arrays, ConfigRecord(), grid))
    assert len(messages) == 3
    replies = list(grid.send_and_receive(messages))
    ok = [int(r.metadata.src_node_id) for r in replies if not r.has_error()]
    new, _ = strategy.aggregate_train(1, replies)
    assert new is not None
    (got,) = new.to_numpy_ndarrays()
    want = sum(secret_update(n) for n in ok) / 3
    assert len(ok) < 3 and np.allclose(got, want, atol=3e-4)  # noise std zC/m = 3e-5
    acc = dp.RdpAccountant()
    acc.step(noise_multiplier=1e-6, sample_rate=1.0, steps=1)
    assert strategy.epsilon == pytest.approx(acc.epsilon(1e-5))


def test_distributed_dp_needs_secure_aggregation() -> None:
    with pytest.raises(battery_fl.ConfigError):
        BatteryFlStrategy(dp=DpConfig(1.0, 1.0, mode="distributed"))
    with pytest.raises(battery_fl.ConfigError):
        battery_fl.flower.FederationSettings(dp_clipping_norm=1.0, dp_mode="distributed")
    strategy = BatteryFlStrategy(
        dp=DpConfig(1.0, 1.0, mode="distributed"), secure_aggregation=SecAggWorkflow(threshold=4)
    )
    # noise sized for the 4 survivors the protocol accepts, not the 6 sampled
    assert strategy.server_dp is not None
    _, client_std = strategy.server_dp.client_noise(6, min_survivors=strategy._min_survivors(6))
    assert client_std == pytest.approx(1.0 / np.sqrt(4))
