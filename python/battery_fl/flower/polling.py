"""``send_and_receive`` that polls for replies every ``interval`` seconds.

Flower 1.41's deployed ``Grid.send_and_receive`` sleeps a fixed 3 s between pulls, which
adds up to 3 s to every exchange; a secure-aggregation round makes four. The Grid API's
``push_messages``/``pull_messages`` let the ServerApp poll faster (each pull is one small
request to the SuperLink on the same host or network).

>>> from flwr.app import Message, RecordDict
>>> from flwr.clientapp import ClientApp
>>> from battery_fl.flower.local import LocalGrid
>>> app = ClientApp()
>>> @app.query()
... def query(msg, context):
...     return Message(RecordDict(), reply_to=msg)
>>> grid = PollingGrid(LocalGrid(app, {5: {}}), interval=0.1)
>>> len(list(grid.send_and_receive([grid.create_message(RecordDict(), "query", 5, "")], timeout=5)))
1
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from flwr.app import Message, RecordDict
from flwr.proto.node_pb2 import NodeInfo  # type: ignore[attr-defined]
from flwr.serverapp import Grid
from flwr.supercore.run import Run

__all__ = ["PollingGrid", "send_and_receive"]

#: Seconds between pulls.
POLL_INTERVAL = 0.25


def send_and_receive(
    grid: Grid,
    messages: Iterable[Message],
    *,
    timeout: float | None,
    interval: float = POLL_INTERVAL,
) -> list[Message]:
    """Push ``messages`` and pull their replies every ``interval`` s until all are in or
    ``timeout`` s have passed (``None``: no limit), as ``Grid.send_and_receive`` does."""
    pending = set(grid.push_messages(messages))
    end = time.monotonic() + (timeout if timeout is not None else 0.0)
    replies: list[Message] = []
    while pending:
        got = list(grid.pull_messages(pending))
        replies += got
        pending.difference_update(m.metadata.reply_to_message_id for m in got)
        if not pending or (timeout is not None and time.monotonic() >= end):
            break
        time.sleep(interval)
    return replies


class PollingGrid(Grid):
    """Wraps a ``Grid``; only ``send_and_receive`` changes (:func:`send_and_receive`)."""

    def __init__(self, grid: Grid, interval: float = POLL_INTERVAL) -> None:
        self.grid, self.interval = grid, interval

    def set_run(self, run: Run) -> None:
        """As the wrapped grid."""
        self.grid.set_run(run)

    @property
    def run(self) -> Run:
        """As the wrapped grid."""
        return self.grid.run

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        """As the wrapped grid."""
        return self.grid.create_message(content, message_type, dst_node_id, group_id, ttl)

    def get_node_ids(self) -> Iterable[int]:
        """As the wrapped grid."""
        return self.grid.get_node_ids()

    def get_nodes(self) -> Iterable[NodeInfo]:
        """As the wrapped grid."""
        return self.grid.get_nodes()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        """As the wrapped grid."""
        return self.grid.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        """As the wrapped grid."""
        return self.grid.pull_messages(message_ids)

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        """Push, then pull every ``interval`` seconds."""
        return send_and_receive(self.grid, messages, timeout=timeout, interval=self.interval)
