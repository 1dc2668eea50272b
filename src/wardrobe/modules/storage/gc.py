"""Orphan cleanup: delete ``uploads/`` and ``results/`` objects nothing references any more.

An object is kept if it is younger than the grace period (an upload the user has not used yet, a
result being written) or if anything in the database names it: a task's inputs or outputs, a
step's outputs, the user's avatar. Objects are listed in key order, which groups them by owner
(``uploads/{user}/...``), so each user's references are read once per pass, not per object.

Deletion is in batches of at most ``DELETE_BATCH`` (what one S3 DeleteObjects call takes). Just
before a batch is deleted its owners' references are read again: a task created meanwhile that
names an old upload keeps it. What is left is a window of one batch between that re-read and the
delete, in which a brand-new task naming a weeks-old upload would lose it; such a task fails with
``input_missing`` and is refunded, which is why the grace period is days, not minutes.

``tmp/`` is not swept here: the lifecycle rule (a day) and the end of each task take care of it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from wardrobe.core.db import unit_of_work
from wardrobe.core.metrics import STORAGE_GC
from wardrobe.models import Task, TaskStep, User, VerifiedUpload
from wardrobe.models.base import utcnow
from wardrobe.modules.storage import keys
from wardrobe.modules.storage.backend import ObjectInfo, ObjectStorage

DELETE_BATCH = 1000
SWEPT = (f"{keys.UPLOADS}/", f"{keys.RESULTS}/")


@dataclass(slots=True)
class GcReport:
    dry_run: bool
    scanned: int = 0
    kept_young: int = 0
    kept_referenced: int = 0
    deleted: int = 0  # or, in a dry run, what would be
    bytes_reclaimed: int = 0
    delete_calls: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def object_keys_in(value: Any) -> Iterator[str]:
    """Every object key a stored JSON value names: ``{"object_key": ...}`` entries and plain strings
    that are keys of ours (task inputs hold upload keys as strings)."""
    if isinstance(value, str):
        if value.startswith((*SWEPT, f"{keys.TMP}/")) and keys.is_valid_key(value):
            yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from object_keys_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from object_keys_in(item)


async def referenced_by(session: AsyncSession, user_id: int) -> set[str]:
    """The keys a user's tasks, steps and profile name."""
    found: set[str] = set()
    for inputs, outputs in (
        await session.execute(select(Task.inputs, Task.outputs).where(Task.user_id == user_id))
    ).all():
        found.update(object_keys_in(inputs))
        found.update(object_keys_in(outputs))
    steps = select(TaskStep.outputs).join(Task, Task.id == TaskStep.task_id).where(Task.user_id == user_id)
    for outputs in (await session.scalars(steps)).all():
        found.update(object_keys_in(outputs))
    avatar = await session.scalar(select(User.avatar_url).where(User.id == user_id))
    if avatar:
        found.update(key for key in keys_in_url(avatar))
    return found


def keys_in_url(url: str) -> Iterable[str]:
    """An avatar is stored as our download URL or as a bare key."""
    path = url.split("?", 1)[0]
    marker = "/storage/objects/"
    candidate = path.split(marker, 1)[1] if marker in path else path
    return object_keys_in(candidate)


References = Callable[[int], Awaitable[set[str]]]
Forget = Callable[[list[str]], Awaitable[None]]


def database_forget(sessions: async_sessionmaker[AsyncSession]) -> Forget:
    """Deleted uploads are no longer verified uploads: their rows go with them."""

    async def forget(deleted: list[str]) -> None:
        async with unit_of_work(sessions) as session:
            await session.execute(delete(VerifiedUpload).where(VerifiedUpload.object_key.in_(deleted)))

    return forget


def database_references(sessions: async_sessionmaker[AsyncSession]) -> References:
    """Where the references are: the database."""

    async def read(user_id: int) -> set[str]:
        async with sessions() as session:
            return await referenced_by(session, user_id)

    return read


class _References:
    """Each owner's references, read once per pass and again right before a delete."""

    def __init__(self, read: References) -> None:
        self._read = read
        self._user: int | None = None
        self._keys: set[str] = set()

    async def of(self, user_id: int, *, fresh: bool = False) -> set[str]:
        if fresh or user_id != self._user:
            self._keys = await self._read(user_id)
            self._user = user_id
        return self._keys


async def collect_garbage(
    storage: ObjectStorage,
    references_of: References,
    *,
    grace: timedelta,
    dry_run: bool = False,
    now: datetime | None = None,
    on_object: Callable[[ObjectInfo], None] | None = None,
    forget: Forget | None = None,
) -> GcReport:
    """One pass over ``uploads/`` and ``results/``; ``on_object`` is told of every object scanned
    (the command's progress bar)."""
    report = GcReport(dry_run=dry_run)
    cutoff = (now or utcnow()) - grace
    references = _References(references_of)
    batch: list[ObjectInfo] = []

    async def flush() -> None:
        if not batch:
            return
        # Read the owners' references again: a task created since the first read keeps its input.
        still_orphans: list[ObjectInfo] = []
        fresh: dict[int, set[str]] = {}
        for info in batch:
            owner = keys.owner_of(info.key)
            if owner is None:  # pragma: no cover - only owned keys are batched
                continue
            if owner not in fresh:
                fresh[owner] = set(await references.of(owner, fresh=True))
            if info.key in fresh[owner]:
                report.kept_referenced += 1
            else:
                still_orphans.append(info)
        batch.clear()
        if not still_orphans:
            return
        if not dry_run:
            await storage.delete_many(info.key for info in still_orphans)
            report.delete_calls += 1
            if forget is not None:
                await forget([info.key for info in still_orphans])
            STORAGE_GC.labels("objects").inc(len(still_orphans))
            STORAGE_GC.labels("bytes").inc(sum(info.size for info in still_orphans))
        report.deleted += len(still_orphans)
        report.bytes_reclaimed += sum(info.size for info in still_orphans)

    for prefix in SWEPT:
        start_after: str | None = None
        while True:
            page = await storage.list(prefix, DELETE_BATCH, start_after=start_after)
            if not page:
                break
            start_after = page[-1].key
            for info in page:
                report.scanned += 1
                if on_object is not None:
                    on_object(info)
                owner = keys.owner_of(info.key)
                if owner is None:
                    continue  # not a key of ours (a stray object): never touched
                if info.created > cutoff:
                    report.kept_young += 1
                    continue
                if info.key in await references.of(owner):
                    report.kept_referenced += 1
                    continue
                batch.append(info)
                if len(batch) >= DELETE_BATCH:
                    await flush()
        await flush()
    return report
