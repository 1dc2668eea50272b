"""The write side of the transactional outbox: how a module makes something happen after commit.

A module writes its message in its own transaction (``announce``); whichever process's relay
publishes that topic sends it once the transaction has committed (worker/outbox.py holds the
relay). Modules never reach the worker itself: this file is all they see of it. It lives in
``core`` rather than beside the relay because modules sit below the worker in the layers.

Two kinds of notice need more than a row:
- a *durable* one (a task's or an order's final state, pushed to clients) goes through a relay of
  this process when one publishes its topic, and is otherwise delivered here after commit;
- a *local* one (a task moved on) is only a hint to this process's listeners after commit: losing it
  loses nothing, the next change or a reload shows the state.
The :class:`Announcer` of a process routes both; the worker runtime tells it, when it starts, which
topics its relay publishes and who listens here.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from wardrobe.core.db import after_commit
from wardrobe.core.tracing import stamp
from wardrobe.models import OutboxMessage

# Run a task: {"task_id"}; published to the task queue by a relay.
TOPIC_RUN = "task.run"
# A push that must not be lost (a task's or an order's terminal state): {"task_id"} or {"order_id"}.
TOPIC_PUSH = "push"
# A task moved on (not terminal): {"task_id"}; a hint for this process's live clients only.
TOPIC_TASK_CHANGED = "task.changed"
# Every durable push is also offered to webhooks ({"task_id"} or {"order_id"}), written beside it in
# the same flush whatever this process relays: modules/webhooks decides what it means to whom.
TOPIC_WEBHOOK = "webhook.fan_out"


class Kickable(Protocol):
    def kick(self) -> None: ...


# The relays running in this process, woken by ``announce`` after a commit (they register
# themselves while they run).
_running: weakref.WeakSet[Any] = weakref.WeakSet()


def relay_started(relay: Kickable) -> None:
    _running.add(relay)


def relay_stopped(relay: Kickable) -> None:
    _running.discard(relay)


def add_message(session: AsyncSession, topic: str, payload: dict[str, Any], on_commit: Callable[[], None]) -> None:
    """Write a message in the caller's transaction; ``on_commit`` runs once it has committed. It
    carries the current trace id, bound again while it is published."""
    session.add(OutboxMessage(topic=topic, payload=payload, **stamp()))
    after_commit(session, on_commit)


def announce(session: AsyncSession, topic: str, payload: dict[str, Any]) -> None:
    """Write a message in the caller's transaction for whichever process's relay publishes
    ``topic``; this process's relays are woken once it commits, so it goes out at once."""
    add_message(session, topic, payload, kick_running_relays)


def kick_running_relays() -> None:
    for relay in list(_running):
        relay.kick()


Listener = Callable[[dict[str, Any]], None]


class Announcer:
    """One process's routing of durable and local notices (see the module's docstring)."""

    def __init__(self) -> None:
        self._relayed: Callable[[str], bool] = lambda _topic: False
        self._listeners: dict[str, Listener] = {}

    def route(self, *, relayed: Callable[[str], bool], listeners: dict[str, Listener]) -> None:
        """Set by the worker runtime when it starts: which topics this process's relay publishes
        now, and who hears each topic here."""
        self._relayed = relayed
        self._listeners = dict(listeners)

    def durable(self, session: AsyncSession, topic: str, payload: dict[str, Any]) -> None:
        """A notice that must survive this process dying between the commit and its delivery:
        through this process's relay when it publishes ``topic`` (any live relay then sends it),
        else straight to this process's listener after commit."""
        if topic == TOPIC_PUSH:
            announce(session, TOPIC_WEBHOOK, payload)
        if self._relayed(topic):
            announce(session, topic, payload)
        else:
            self.local(session, topic, payload)

    def local(self, session: AsyncSession, topic: str, payload: dict[str, Any]) -> None:
        """A hint for this process's listener of ``topic``, after commit; nothing if none listens."""
        listener = self._listeners.get(topic)
        if listener is not None:
            after_commit(session, functools.partial(listener, payload))
