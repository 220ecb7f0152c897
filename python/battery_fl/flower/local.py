"""An in-process Flower ``Grid``: a ServerApp and ClientApp nodes in one Python process.

For tests and quick experiments without a SuperLink, SuperNodes or Ray (Flower's own
simulation needs ``flwr[simulation]``). Each message's content is copied on the way in and
out (as serialization would), every node keeps its own ``Context`` (node config and
persistent ``state``) and an exception in a node's ClientApp becomes an error reply, as a
deployed SuperNode reports it.

>>> from flwr.app import ConfigRecord, Message, RecordDict
>>> from flwr.clientapp import ClientApp
>>> echo = ClientApp()
>>> @echo.query()
... def query(msg, context):
...     return Message(RecordDict({"config": ConfigRecord({"node": context.node_config["name"]})}), reply_to=msg)
>>> grid = LocalGrid(echo, {11: {"name": "a"}, 22: {"name": "b"}})
>>> replies = grid.send_and_receive([grid.create_message(RecordDict(), "query", n, "1") for n in (11, 22)])
>>> [r.content["config"]["node"] for r in replies]
['a', 'b']
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterable, Mapping
from typing import Any

from flwr.app import Context, Message, RecordDict
from flwr.app.error import Error
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity

__all__ = ["CLIENT_APP_RAISED_EXCEPTION", "LocalGrid"]

#: Flower's error code for a ClientApp that raised.
CLIENT_APP_RAISED_EXCEPTION = 2
#: The node id Flower gives the SuperLink (the sender of the ServerApp's messages).
SUPERLINK_NODE_ID = 1


class LocalGrid(Grid):
    """A ``Grid`` whose nodes are ``client_app`` called in process, one per entry of
    ``node_configs`` (node id -> node config); ``run_config`` is every node's run config.
    ``send_and_receive`` delivers in order and ignores ``timeout`` (nothing is late).
    Like Flower's own in-process path, it sets this process's task identity (run
    ``run_id``, the SuperLink's node id) so that the ServerApp side can create messages."""

    def __init__(
        self,
        client_app: ClientApp,
        node_configs: Mapping[int, Mapping[str, Any]],
        run_config: Mapping[str, Any] | None = None,
        run_id: int = 1,
    ) -> None:
        self.client_app = client_app
        self.contexts = {
            int(node): Context(
                run_id=run_id,
                node_id=int(node),
                node_config=dict(config),
                state=RecordDict(),
                run_config=dict(run_config or {}),
            )
            for node, config in node_configs.items()
        }
        self._run = Run.create_empty(run_id)
        TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = (
            1,
            run_id,
            SUPERLINK_NODE_ID,
        )
        self._ids = itertools.count(1)
        self._pending: dict[str, Message] = {}

    def set_run(self, run: Run) -> None:
        """Set the run."""
        self._run = run

    @property
    def run(self) -> Run:
        """The run."""
        return self._run

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        """A new message to ``dst_node_id``."""
        return Message(content, dst_node_id, message_type, group_id=group_id, ttl=ttl)

    def get_node_ids(self) -> Iterable[int]:
        """The nodes' ids."""
        return list(self.contexts)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        """Deliver each message now; returns ids to pull the replies with."""
        ids = []
        for msg in messages:
            message_id = str(next(self._ids))
            self._pending[message_id] = self._deliver(msg, message_id)
            ids.append(message_id)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        """The replies to pushed messages (each once)."""
        return [self._pending.pop(i) for i in message_ids if i in self._pending]

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        """Deliver every message and return the replies."""
        return self.pull_messages(self.push_messages(messages))

    def _deliver(self, msg: Message, message_id: str) -> Message:
        context = self.contexts.get(int(msg.metadata.dst_node_id))
        metadata = copy.copy(msg.metadata)
        metadata.__dict__["_message_id"] = message_id  # as the SuperLink sets it (no setter)
        incoming = Message(metadata=metadata, content=copy.deepcopy(msg.content))  # type: ignore[call-overload]
        if context is None:
            return Message(Error(CLIENT_APP_RAISED_EXCEPTION, "unknown node"), reply_to=incoming)
        try:
            reply = self.client_app(incoming, context)
        except Exception as err:  # noqa: BLE001 - a node's failure is an error reply
            return Message(
                Error(CLIENT_APP_RAISED_EXCEPTION, f"{type(err).__name__}: {err}"),
                reply_to=incoming,
            )
        if reply.has_content():
            reply = Message(metadata=reply.metadata, content=copy.deepcopy(reply.content))  # type: ignore[call-overload]
        return reply
