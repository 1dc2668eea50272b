"""How the peers deliver a vendor's notification: a POST retried on the vendor's delay schedule
until the receiver's answer counts as accepted, each try recorded for the tests.

What differs per vendor is passed in: the POST itself (form, JSON…), what counts as accepted
(Alipay: the body ``success``; WeChat Pay: 200 or 204; RunningHub: any 2xx) and how the wait
between tries ends (the scheduled delay, or a test's nudge). ``Changes`` wakes waiters in any event
loop, so tests await "attempt n" or "delivered" instead of sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

A = TypeVar("A")  # one try's outcome, as the vendor's peer records it


class Changes:
    """Wakes coroutines waiting in any event loop when the peer's state changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def fire(self) -> None:
        with self._lock:
            waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            with contextlib.suppress(RuntimeError):  # that loop has closed: nobody waits there
                loop.call_soon_threadsafe(_resolve, future)

    async def wait_for(self, predicate: Callable[[], bool], within: float | None) -> None:
        async def until() -> None:
            loop = asyncio.get_running_loop()
            while not predicate():
                future: asyncio.Future[None] = loop.create_future()
                with self._lock:
                    self._waiters.append((loop, future))
                if predicate():  # changed between the check and the registration
                    return
                await future

        await asyncio.wait_for(until(), within)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def post_until_accepted(
    post: Callable[[int], Awaitable[A]],
    *,
    accepted: Callable[[A], bool],
    retries: int,
    delays: Sequence[float] | None,
    pause: Callable[[float | None], Awaitable[None]],
    record: Callable[[A, bool, bool], Awaitable[None]],
) -> None:
    """``post`` (tries numbered from 1) until ``accepted``, at most ``retries`` times more.

    ``record(attempt, accepted, last)`` follows every try; then, unless that try was accepted or
    the last, ``pause`` waits ``delays[n - 1]`` after try ``n`` (``delays`` None: ``pause(None)``,
    i.e. until a test nudges). The peers check that there is one delay per retry when they are
    set up, so a bad schedule fails the test that made it rather than a delivery later.
    """
    tries = retries + 1
    for number in range(1, tries + 1):
        attempt = await post(number)
        ok = accepted(attempt)
        await record(attempt, ok, number == tries)
        if ok or number == tries:
            return
        await pause(None if delays is None else delays[number - 1])


class RetriedDelivery(Generic[A]):
    """One notification's tries as the tests see them: ``attempts``, then ``delivered`` or
    ``gave_up`` (with ``error`` when the delivery itself failed). A subclass runs ``_tries``
    (usually ``post_until_accepted`` with ``_record``) through ``_run``."""

    def __init__(self, changes: Changes) -> None:
        self.attempts: list[A] = []
        self.delivered = False
        self.gave_up = False
        self.error: Exception | None = None
        self._changes = changes

    @property
    def finished(self) -> bool:
        return self.delivered or self.gave_up

    async def wait_attempts(self, count: int, within: float = 30.0) -> list[A]:
        await self._changes.wait_for(lambda: len(self.attempts) >= count or self.finished, within)
        if len(self.attempts) < count:
            raise AssertionError(f"delivery finished after {len(self.attempts)} attempts, wanted {count}")
        return self.attempts[:count]

    async def _tries(self) -> None:
        raise NotImplementedError

    async def _run(self) -> None:
        try:
            await self._tries()
        except Exception as exc:  # an observer's assertion, say: end the delivery, keep it for the test
            self.error = exc
            self.gave_up = True
            self._changes.fire()

    async def _record(self, attempt: A, accepted: bool, last: bool) -> None:
        self.attempts.append(attempt)
        if accepted:
            self.delivered = True
        elif last:
            self.gave_up = True
        self._changes.fire()
