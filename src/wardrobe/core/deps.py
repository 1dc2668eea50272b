"""The parts request code takes, as ``Annotated`` dependencies.

A process's parts are built once (``wardrobe.wiring``) and registered here by type, so a route asks
for exactly what it uses (``session: SessionDep, cache: CacheDep``) and never for the whole record.
A lookup by type keeps this module below everything else: ``core`` cannot name the record that
``wiring`` builds, and a module's own parts (payments, storage, providers) are declared as
dependencies in that module with :func:`part`, typed as precisely as the ones here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any, TypeVar, cast

from fastapi import Depends, Request
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from wardrobe.core.cache import Cache
from wardrobe.core.db import finish
from wardrobe.core.edge_limits import EdgeLimits
from wardrobe.core.outbox import Announcer
from wardrobe.core.ratelimit import RateLimiter
from wardrobe.core.security import TokenCodec
from wardrobe.settings import Settings

T = TypeVar("T")


class Parts:
    """The parts of one process, each registered under the type request code asks for.

    A part is registered as a function that reads it from the process's record, not as the value
    itself: swapping a part on that record (a probe's test breaking the database on purpose, a
    reconfigured client) reaches every later request."""

    def __init__(self) -> None:
        self._by_type: dict[object, Callable[[], object]] = {}

    def provide(self, kind: object, read: Callable[[], object]) -> None:
        if kind in self._by_type:
            raise ValueError(f"{kind!r} is registered twice")
        self._by_type[kind] = read

    def get(self, kind: type[T]) -> T:
        read = self._by_type.get(kind)
        if read is None:
            raise LookupError(f"no part of type {kind!r} in this process")
        return cast(T, read())


def parts_of(request: Request) -> Parts:
    found: Parts = request.app.state.parts
    return found


def part(kind: Any, *, backed: bool = True) -> Callable[[Request], Awaitable[Any]]:
    """A dependency that answers the process's part registered as ``kind``.

    A ``backed`` part talks to a service that can be down (the database, Redis, a vendor): the
    returned function then carries ``part``, by which the API contract (core/contract.py) marks
    every route that reaches one as able to answer 503."""

    # Async on purpose: FastAPI runs a plain ``def`` dependency in its thread pool, a thread hop per
    # part per request for what is a dictionary lookup.
    async def dependency(request: Request) -> Any:
        return parts_of(request).get(kind)

    dependency.__name__ = f"part_{getattr(kind, '__name__', 'value')}"
    if backed:
        setattr(dependency, "part", kind)  # noqa: B010 - an attribute of a function object
    return dependency


SessionFactory = async_sessionmaker[AsyncSession]
_session_factory = part(async_sessionmaker)


async def get_session(
    factory: Annotated[SessionFactory, Depends(_session_factory)],
) -> AsyncIterator[AsyncSession]:
    """The request's session: committed when the handler returns, rolled back if it raises.
    ``scope="function"`` makes the commit happen before the response is sent."""
    async with factory() as session:
        try:
            yield session
            await finish(session)
        except BaseException:
            await session.rollback()
            raise


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
# For the few writes that must survive the request's own rollback (a counted wrong guess).
SessionFactoryDep = Annotated[SessionFactory, Depends(_session_factory)]
SettingsDep = Annotated[Settings, Depends(part(Settings, backed=False))]
CacheDep = Annotated[Cache, Depends(part(Cache))]
LimiterDep = Annotated[RateLimiter, Depends(part(RateLimiter))]
TokensDep = Annotated[TokenCodec, Depends(part(TokenCodec))]
# None in the embedded default, which runs without Redis.
RedisDep = Annotated[Redis | None, Depends(part(Redis))]
DbEngineDep = Annotated[AsyncEngine, Depends(part(AsyncEngine))]
EdgeLimitsDep = Annotated[EdgeLimits, Depends(part(EdgeLimits, backed=False))]
# The outbox's router of this process's notices (core/outbox.py).
AnnouncerDep = Annotated[Announcer, Depends(part(Announcer, backed=False))]
