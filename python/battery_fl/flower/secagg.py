"""Our SecAgg+ over Flower's Message/Grid API: a ServerApp workflow and a ClientApp mod.

This is *not* Flower's ``SecAggPlusWorkflow``/``secaggplus_mod`` (whose masks come from a
32-bit-seeded Mersenne Twister): both sides run the Rust protocol of
:mod:`battery_fl.secagg` (X25519, ChaCha20 masks, Shamir shares, AEAD), and Flower only carries
its messages, as bytes. One secure aggregation takes four ``send_and_receive`` exchanges with
the same message type and ``group_id``:

====== ================================= ==================================================
stage  server sends                       node replies
====== ================================= ==================================================
0      setup                              its two public keys (advertise keys)
1      its neighbours' keys               encrypted Shamir shares for its neighbours
2      forwarded shares + the payload     the masked input (the mod runs the wrapped
       (e.g. ``arrays`` + ``config``)     handler, e.g. ``train``, and masks its result)
3      who survived / who dropped         the shares needed to unmask
====== ================================= ==================================================

A node that disappears in any stage (an error reply, or no reply before the timeout) is left
out: dropped before stage 2 it is simply not in the sum (the protocol never lists a node that
sent no shares as dropped, unlike Flower's, which loses the round then); dropped after it,
its masks are removed with its neighbours' shares. Fewer than ``threshold`` live neighbours
raises :class:`battery_fl.SecAggError`.

What the server learns: the weighted mean (``mode="delta"``) or the sum (``mode="sum"``)
of the survivors' vectors, and who survived; never a single node's vector or weight. A
ClientApp process lives for one message, so the mod keeps the node's round state (a
:class:`battery_fl.secagg.NodeSession`: the round secret and the answers it gave) in
``Context.state`` on the node; every stage is answered at most once. The server checks
that each protocol message comes from the node that sent it (``src_node_id``), and the
transport's run id is bound into every key, ciphertext and signature.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.serverapp import Grid

import battery_fl
from battery_fl import secagg
from battery_fl.flower.polling import send_and_receive
from battery_fl.flower.settings import config_error

__all__ = [
    "DONE_KEY",
    "MESSAGE_KEY",
    "REQUEST_KEY",
    "STATE_KEY",
    "STATS_BOUND",
    "WEIGHT_METRIC",
    "SecAggWorkflow",
    "dropout_mod",
    "secagg_mod",
]

#: ConfigRecord in every protocol message: ``stage``, ``round``, ``dim``, ``mode``, ...
REQUEST_KEY = "bfl-secagg"
#: ArrayRecord holding the protocol message (bytes as one uint8 array).
MESSAGE_KEY = "bfl-secagg-message"
#: ConfigRecord in a node's ``Context.state``: its secret and the messages to replay.
STATE_KEY = "bfl-secagg-state"
#: ConfigRecord in a node's ``Context.state``: the rounds of this run it finished.
DONE_KEY = "bfl-secagg-done"
#: The handler metric a node masks its update with (its own sample count).
WEIGHT_METRIC = "num-examples"
#: Public bound on every summed statistic (``mode="sum"``): the core's, as in the in-process
#: federation.
STATS_BOUND = secagg.STATISTICS_BOUND

_log = logging.getLogger("flwr")
#: ``Context.state`` entry present only while :func:`secagg_mod` masks the wrapped handler's
#: reply (stage 2): ``round`` and ``threshold``, the fewest survivors whose sum the server can
#: decode. A handler that adds distributed noise sizes it for them; without the entry its
#: reply leaves the node unmasked and needs all the noise.
MASKING_KEY = "bfl-secagg-masking"
#: The core's secure-aggregation defaults (``SecAggConfig``).
_SECAGG = secagg.default_config()
_CallNext = Callable[[Message, Context], Message]


def _pack(data: bytes) -> ArrayRecord:
    return ArrayRecord([np.frombuffer(data, dtype=np.uint8).copy()])


def _unpack(content: RecordDict) -> bytes:
    record = content.get(MESSAGE_KEY)
    if not isinstance(record, ArrayRecord):
        raise _error("message", "no secure-aggregation message in the content")
    (array,) = record.to_numpy_ndarrays()
    return bytes(array.astype(np.uint8, copy=False).tobytes())


def _error(stage: str, reason: str) -> battery_fl.SecAggError:
    err = battery_fl.SecAggError(f"secure aggregation failed in stage {stage}: {reason}")
    err.kind = "sec_agg"
    err.stage = stage  # type: ignore[attr-defined]
    return err


# --------------------------------------------------------------------------- client side


def _flat(arrays: list[np.ndarray]) -> np.ndarray:
    if not arrays:
        return np.zeros(0, dtype=np.float64)
    return np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in arrays])


def _input_vector(
    payload: RecordDict, reply: RecordDict, mode: str
) -> tuple[np.ndarray, float | None]:
    """The vector the node masks in stage 2, from the wrapped handler's reply, and the weight
    it masks it with: its own ``num-examples`` (the handler's own count, never a value from
    the server's request), or ``None`` (the full weight W, equal for every node) for DP
    rounds and secure sums."""
    out = reply.get("arrays")
    if not isinstance(out, ArrayRecord):
        raise _error("masked_input", "the handler's reply has no ArrayRecord `arrays`")
    values = _flat(out.to_numpy_ndarrays())
    if mode == "delta":
        start = payload.get("arrays")
        if not isinstance(start, ArrayRecord):
            raise _error("masked_input", "delta mode needs the global `arrays` in the payload")
        config = payload.get("config")
        clipping = config.get("dp-clipping-norm", 0.0) if isinstance(config, ConfigRecord) else 0.0
        dp_round = float(clipping) > 0  # type: ignore[arg-type]
        metrics = reply.get("metrics")
        weight: float | None = None
        if not dp_round:
            if metrics is None or WEIGHT_METRIC not in metrics:  # type: ignore[operator]
                raise _error("masked_input", f"the handler's reply has no metric `{WEIGHT_METRIC}`")
            weight = float(metrics[WEIGHT_METRIC])  # type: ignore[index,arg-type]
        return (values - _flat(start.to_numpy_ndarrays())).astype(np.float32), weight
    # sum mode: the core encodes float64 statistics (and refuses values beyond the bound)
    return secagg.encode_statistics(values), None


def _node_int(context: Context, key: str) -> int | None:
    value = context.node_config.get(key)
    return None if value is None or value == "" else int(value)  # type: ignore[arg-type]


def _forget(context: Context, round_id: int) -> None:
    """Drop the node's round secret and close the round: it ended or failed, and is never
    started again in this run (a restarted round would mask a second input)."""
    if STATE_KEY in context.state:
        del context.state[STATE_KEY]
    done = _done_rounds(context)
    if round_id not in done:
        context.state[DONE_KEY] = ConfigRecord({"rounds": [*done, round_id]})


def _done_rounds(context: Context) -> list[int]:
    record = context.state.get(DONE_KEY)
    return [int(r) for r in record["rounds"]] if isinstance(record, ConfigRecord) else []  # type: ignore[union-attr]


def _start(context: Context, incoming: bytes, round_id: int) -> tuple[secagg.NodeSession, bytes]:
    """Stage 0: a new session, unless this round of the run is over on this node."""
    if round_id in _done_rounds(context):
        raise _error(
            str(secagg.ADVERTISE_KEYS), f"round {round_id} of this run is over on this node"
        )
    max_weight = context.node_config.get("secagg-max-weight")
    session, out = secagg.NodeSession.start(
        int(context.node_id),
        int(context.run_id),
        incoming,
        seed=os.urandom(32),
        min_clients=_node_int(context, "secagg-min-clients"),
        min_threshold=_node_int(context, "secagg-min-threshold"),
        max_weight=None if max_weight in (None, "") else float(max_weight),  # type: ignore[arg-type]
    )
    return session, bytes(out)


def _answer(
    msg: Message, context: Context, call_next: _CallNext, request: ConfigRecord
) -> Message | bytes:
    """This node's reply bytes for one stage (or the handler's error reply in stage 2)."""
    stage, round_id = int(request["stage"]), int(request["round"])  # type: ignore[arg-type]
    incoming = _unpack(msg.content)
    state = context.state.get(STATE_KEY)
    stored = state if isinstance(state, ConfigRecord) and int(state["round"]) == round_id else None  # type: ignore[arg-type]
    if stored is None:
        if stage != secagg.ADVERTISE_KEYS:
            raise _error(str(stage), f"no keys of round {round_id} on this node")
        if isinstance(state, ConfigRecord):  # an earlier round never ended: it is over now
            _forget(context, int(state["round"]))  # type: ignore[arg-type]
        session, out = _start(context, incoming, round_id)
    else:
        session = secagg.NodeSession.from_bytes(bytes(stored["session"]))  # type: ignore[arg-type]
        cached = session.answered(stage, incoming)
        if cached is not None:
            return bytes(cached)
        if stage == secagg.SHARE_KEYS:
            out = session.share_keys(incoming)
        elif stage == secagg.MASKED_INPUT:
            payload = RecordDict(
                {k: v for k, v in msg.content.items() if k not in (REQUEST_KEY, MESSAGE_KEY)}
            )
            msg.content = payload
            # the handler may size distributed noise for this round's threshold: only while
            # this mod masks its reply, in the node's own state (no message can set it)
            context.state[MASKING_KEY] = ConfigRecord(
                {"round": round_id, "threshold": session.threshold}
            )
            try:
                reply = call_next(msg, context)
            finally:
                del context.state[MASKING_KEY]
            if reply.has_error():
                return reply
            vector, weight = _input_vector(
                payload, reply.content, str(request.get("mode", "delta"))
            )
            out = session.masked_input(incoming, vector, weight)
        elif stage == secagg.UNMASK:
            out = session.unmask(incoming)
            _forget(context, round_id)
            return bytes(out)
        else:
            raise _error(str(stage), "unknown stage")
    context.state[STATE_KEY] = ConfigRecord({"round": round_id, "session": session.to_bytes()})
    return bytes(out)


def secagg_mod(msg: Message, context: Context, call_next: _CallNext) -> Message:
    """ClientApp mod running this node's side of our SecAgg+ (see the module docs).

    Messages without the ``bfl-secagg`` record pass through untouched, so the mod can sit in
    every ClientApp. In stage 2 it strips the protocol records, calls the wrapped handler
    and masks what it returns: ``arrays`` minus the payload's ``arrays`` (``mode="delta"``,
    weight = the handler's own ``num-examples``, capped at the node's ``secagg-max-weight``;
    equal weights in DP rounds) or ``arrays`` as is (``mode="sum"``). Only the masked
    vector leaves the node (not the handler's metrics).

    The round's state is a :class:`battery_fl.secagg.NodeSession` in ``Context.state``:
    each stage is answered at most once (a byte-identical repeat gets the same reply, any
    other request is refused), the round secret is dropped when the round ends or anything
    fails, and a round that ended or failed is never started again in this run. The node's own config
    may pin ``secagg-min-clients`` and ``secagg-min-threshold`` (it refuses a setup below
    them) and ``secagg-max-weight``.
    """
    if not msg.has_content() or REQUEST_KEY not in msg.content:
        return call_next(msg, context)
    request = msg.content[REQUEST_KEY]
    if not isinstance(request, ConfigRecord):
        raise _error("request", f"`{REQUEST_KEY}` is not a ConfigRecord")
    round_id = int(request["round"])  # type: ignore[arg-type]
    try:
        out = _answer(msg, context, call_next, request)
    except Exception:
        _forget(context, round_id)
        raise
    if isinstance(out, Message):  # the handler failed: the round is over for this node
        _forget(context, round_id)
        return out
    return Message(RecordDict({MESSAGE_KEY: _pack(out)}), reply_to=msg)


def dropout_mod(msg: Message, context: Context, call_next: _CallNext) -> Message:
    """Fault injection for tests and drills: a node whose node config has
    ``secagg-drop = "ROUND:STAGE"`` raises :class:`battery_fl.SecAggError` when it gets that
    secure-aggregation stage of that round (as if it had crashed). Put it before
    :func:`secagg_mod` in the mod list; without the key it does nothing."""
    rule = context.node_config.get("secagg-drop")
    if rule and msg.has_content() and REQUEST_KEY in msg.content:
        request = msg.content[REQUEST_KEY]
        round_id, _, stage = str(rule).partition(":")
        if (str(request["round"]), str(request["stage"])) == (round_id.strip(), stage.strip()):  # type: ignore[index]
            raise _error(str(stage), f"node {context.node_id} dropped out (simulated)")
    return call_next(msg, context)


# --------------------------------------------------------------------------- server side


@dataclass(frozen=True)
class SecAggWorkflow:
    """The server side of our SecAgg+ on a Flower ``Grid``: :meth:`aggregate` runs one secure
    aggregation over the given nodes. ``threshold`` (default ⌈2k/3⌉) and ``neighbours`` (odd;
    default: complete graph) shape the protocol; ``clipping_range``, ``target_range`` and
    ``modulus_bits`` the fixed-point encoding; ``max_weight`` is the public bound W on a
    node's weight (resolution ≈ 2c·W/(T·w)); these four default to the core's
    (``battery_fl.secagg.default_config()``); ``timeout`` bounds each stage (seconds).

    >>> wf = SecAggWorkflow(threshold=2, max_weight=12.0)
    >>> wf.protocol(3, 10)["modulus_bits"], wf.sum_protocol(3)["target_range"] == 2**52
    (32, True)
    """

    threshold: int | None = None
    neighbours: int | None = None
    clipping_range: float = _SECAGG["clipping_range"]
    target_range: int = _SECAGG["target_range"]
    modulus_bits: int = _SECAGG["modulus_bits"]
    max_weight: float = _SECAGG["max_weight"]
    timeout: float = 120.0

    def protocol(self, n: int, dim: int) -> dict[str, Any]:
        """SecAggServer settings for ``n`` nodes (weighted deltas)."""
        return {
            "threshold": self.threshold,
            "neighbours": self.neighbours if self.neighbours and self.neighbours < n else None,
            "clipping_range": self.clipping_range,
            "target_range": self.target_range,
            "modulus_bits": self.modulus_bits,
            "max_weight": self.max_weight,
        }

    def min_survivors(self, n: int) -> int:
        """The fewest nodes a round over ``n`` nodes can end with (the Shamir threshold):
        distributed DP sizes each node's noise for it."""
        return int(
            secagg.protocol_threshold(n, threshold=self.threshold, neighbours=self.neighbours)
        )

    def sum_protocol(self, n: int) -> dict[str, Any]:
        """SecAggServer settings for summing statistics over ``n`` nodes: the core's
        (:func:`battery_fl.secagg.statistics_protocol`: 64-bit modulus, values within
        ±:data:`STATS_BOUND`, the finest grid that cannot wrap), with this workflow's
        ``threshold`` and ``neighbours``."""
        return secagg.statistics_protocol(n, threshold=self.threshold, neighbours=self.neighbours)

    def aggregate(
        self,
        grid: Grid,
        node_ids: list[int],
        payload: RecordDict,
        *,
        message_type: str,
        round_id: int,
        dim: int,
        mode: str = "delta",
    ) -> secagg.SecAggResult:
        """One secure aggregation of what the nodes' handler for ``message_type`` returns
        for ``payload``: with ``mode="delta"`` the weighted mean of ``arrays - payload
        arrays`` (flat float32 of length ``dim``; each node weighs its update with its own
        ``num-examples``, capped at ``max_weight``, or all equally in DP rounds: the server
        does not choose weights); with ``mode="sum"`` the float64 sum of ``arrays``
        (``dim`` values, each within ±:data:`STATS_BOUND`) in ``result.sum``. Raises
        :class:`battery_fl.SecAggError` when too few nodes are left."""
        if mode not in ("delta", "sum"):
            raise config_error("mode", f"{mode!r} is not delta/sum")
        n = len(node_ids)
        if mode == "delta":
            settings, wire_dim = self.protocol(n, dim), dim
        else:
            settings, wire_dim = self.sum_protocol(n), 2 * dim
        run = int(grid.run.run_id)
        server = secagg.SecAggServer(
            node_ids,
            wire_dim,
            run=run,
            round=round_id,
            seed=os.urandom(32),
            **settings,  # type: ignore[arg-type]
        )
        request = {"round": round_id, "dim": wire_dim, "mode": mode}
        exchange = _Exchange(grid, message_type, round_id, request, self.timeout)
        keys = exchange.run(secagg.ADVERTISE_KEYS, {v: server.setup() for v in node_ids})
        exchange.feed(server.receive_keys, keys, "advertise_keys")
        shares = exchange.run(secagg.SHARE_KEYS, server.finish_advertise())
        exchange.feed(server.receive_shares, shares, "share_keys")
        masked = exchange.run(secagg.MASKED_INPUT, server.finish_share_keys(), payload)
        exchange.feed(server.receive_masked_input, masked, "masked_input")
        revealed = exchange.run(secagg.UNMASK, server.finish_masked_input())
        exchange.feed(server.receive_unmask, revealed, "unmask")
        result = server.finish()
        _log.info(
            "secure aggregation round %d: %d of %d nodes in the aggregate",
            round_id,
            len(result.survivors),
            n,
        )
        return result

    def secure_sum(
        self,
        grid: Grid,
        node_ids: list[int],
        payload: RecordDict,
        *,
        message_type: str,
        round_id: int,
        dim: int,
    ) -> tuple[np.ndarray, list[int]]:
        """The float64 sum of the nodes' ``arrays`` replies (``mode="sum"``) and the survivors."""
        result = self.aggregate(
            grid,
            node_ids,
            payload,
            message_type=message_type,
            round_id=round_id,
            dim=dim,
            mode="sum",
        )
        # the core decodes the exact integer sum in float64 and checks every survivor's weight
        total = secagg.decode_statistics(
            result.encoded_sum, survivors=len(result.survivors), parties=len(node_ids)
        )
        return total, result.survivors


class _Exchange:
    """One stage's ``send_and_receive``: node -> protocol bytes out, node -> bytes back."""

    def __init__(
        self,
        grid: Grid,
        message_type: str,
        round_id: int,
        request: Mapping[str, object],
        timeout: float,
    ) -> None:
        self.grid, self.message_type, self.round_id = grid, message_type, round_id
        self.request, self.timeout = dict(request), timeout

    def run(
        self, stage: int, outgoing: Mapping[int, bytes], payload: RecordDict | None = None
    ) -> dict[int, bytes]:
        messages = []
        for node, data in outgoing.items():
            content = RecordDict(dict(payload.items()) if payload is not None else {})
            content[REQUEST_KEY] = ConfigRecord({**self.request, "stage": stage})  # type: ignore[dict-item]
            content[MESSAGE_KEY] = _pack(bytes(data))
            messages.append(
                Message(
                    content,
                    dst_node_id=int(node),
                    message_type=self.message_type,
                    group_id=str(self.round_id),
                )
            )
        replies: dict[int, bytes] = {}
        for reply in send_and_receive(self.grid, messages, timeout=self.timeout):
            node = int(reply.metadata.src_node_id)
            if reply.has_error():
                _log.info(
                    "secure aggregation stage %d: node %d dropped (%s)",
                    stage,
                    node,
                    reply.error.reason,
                )
                continue
            try:
                replies[node] = _unpack(reply.content)
            except battery_fl.SecAggError as err:
                _log.info(
                    "secure aggregation stage %d: node %d sent no message (%s)", stage, node, err
                )
        missing = set(outgoing) - set(replies)
        if missing:
            _log.info("secure aggregation stage %d: no reply from %d node(s)", stage, len(missing))
        return replies

    @staticmethod
    def feed(receive: Callable[..., None], replies: Mapping[int, bytes], stage: str) -> None:
        """Hand each reply to the server with its transport sender; a malformed or forged
        one (another node's id inside) drops its node."""
        for node, data in replies.items():
            try:
                receive(data, sender=node)
            except battery_fl.BatteryFlError as err:
                _log.warning("secure aggregation %s: rejected node %d (%s)", stage, node, err)
