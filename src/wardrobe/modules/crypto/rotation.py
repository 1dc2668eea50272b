"""Re-wrapping stored data keys under the current master key (``wardrobe crypto rotate``).

Only the wrapped key and its ``key_ref`` change; nonce and ciphertext stay (the data key is the
same). Rows are read in batches by id, re-wrapped outside any transaction (KMS calls hold no row
locks), then written with a compare-and-set on the old wrapped key: a row changed meanwhile is left
for the next run. Readers see either the old pair or the new one, both of which open, so the
service keeps running throughout. Running it again moves only what is still on an old key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import InstrumentedAttribute

from wardrobe.core.db import unit_of_work
from wardrobe.modules.crypto.keys import KeyManager


@dataclass(frozen=True, slots=True)
class SealedColumns:
    """Where one kind of sealed value lives: its table's id, wrapped key and key reference
    columns, and the columns its encryption context is built from."""

    name: str
    id: InstrumentedAttribute[int]
    wrapped_key: InstrumentedAttribute[str]
    key_ref: InstrumentedAttribute[str]
    context_columns: Sequence[InstrumentedAttribute[Any]]
    context: Callable[[Sequence[Any]], Mapping[str, str]]


@dataclass(slots=True)
class RotationReport:
    name: str
    total: int = 0  # rows on an old key when the run started its scan
    rewrapped: int = 0
    changed_meanwhile: int = 0


async def rotate(
    session_factory: async_sessionmaker[AsyncSession],
    keys: KeyManager,
    columns: SealedColumns,
    *,
    batch_size: int = 200,
    progress: Callable[[int], None] | None = None,
) -> RotationReport:
    """Move every row of ``columns`` not under ``keys.current_key_ref()`` onto it."""
    current = keys.current_key_ref()
    report = RotationReport(columns.name)
    stale = columns.key_ref != current
    async with session_factory() as session:
        report.total = int(await session.scalar(select(func.count(columns.id)).where(stale)) or 0)
    after = 0
    while True:
        async with session_factory() as session:
            rows = (
                await session.execute(
                    select(columns.id, columns.wrapped_key, columns.key_ref, *columns.context_columns)
                    .where(stale, columns.id > after)
                    .order_by(columns.id)
                    .limit(batch_size)
                )
            ).all()
        if not rows:
            return report
        after = rows[-1][0]
        moved: list[tuple[int, str, str, str]] = []
        for row in rows:
            row_id, wrapped, key_ref, *context_values = row
            fresh = await keys.rewrap_data_key(wrapped, key_ref, columns.context(context_values))
            moved.append((row_id, wrapped, fresh.wrapped, fresh.key_ref))
        async with unit_of_work(session_factory) as session:
            for row_id, old, new, new_ref in moved:
                result = await session.execute(
                    update(columns.id.class_)
                    .where(columns.id == row_id, columns.wrapped_key == old)
                    .values({columns.wrapped_key.key: new, columns.key_ref.key: new_ref})
                    .execution_options(synchronize_session=False)
                )
                if getattr(result, "rowcount", 0) == 1:
                    report.rewrapped += 1
                else:
                    report.changed_meanwhile += 1
        if progress is not None:
            progress(len(rows))
