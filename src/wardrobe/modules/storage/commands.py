"""``wardrobe storage gc [--dry-run]`` and ``wardrobe storage apply-lifecycle``."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from wardrobe.modules.storage.gc import GcReport

storage_app = typer.Typer(help="Object storage: orphan cleanup and lifecycle rules", no_args_is_help=True)


@storage_app.command("gc")
def gc_command(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report what would go; delete nothing")] = False,
    grace_days: Annotated[
        float | None, typer.Option(help="Keep objects younger than this (default WARDROBE_STORAGE_GC_GRACE_DAYS)")
    ] = None,
) -> None:
    """Delete uploads and results that nothing references, past the grace period."""
    report = asyncio.run(_gc(dry_run, grace_days))
    verb = "would delete" if dry_run else "deleted"
    typer.echo(
        f"scanned {report.scanned}; {verb} {report.deleted} objects, {report.bytes_reclaimed} bytes "
        f"in {report.delete_calls} calls; kept {report.kept_referenced} referenced, {report.kept_young} young"
    )


async def _gc(dry_run: bool, grace_days: float | None) -> GcReport:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from wardrobe.core.db import create_engine, create_session_factory
    from wardrobe.modules.storage import gc
    from wardrobe.modules.storage.deps import build_storage, close_storage
    from wardrobe.settings import get_settings

    # Only what the collection reads: the store and the database (not a whole process's parts).
    settings = get_settings()
    engine = create_engine(settings)
    sessions = create_session_factory(engine)
    storage = build_storage(settings)
    grace = timedelta(days=settings.storage_gc_grace_days if grace_days is None else grace_days)
    try:
        # The object count is unknown up front (listing is paged): the bar counts what was scanned.
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.completed} objects"),
            TimeElapsedColumn(),
            transient=False,
        ) as progress:
            task = progress.add_task("scanning uploads/ and results/", total=None)
            return await gc.collect_garbage(
                storage,
                gc.database_references(sessions),
                grace=grace,
                dry_run=dry_run,
                on_object=lambda _: progress.advance(task),
                forget=gc.database_forget(sessions),
            )
    finally:
        await close_storage(storage)
        await engine.dispose()


@storage_app.command("apply-lifecycle")
def apply_lifecycle_command() -> None:
    """Put the lifecycle rules on the bucket (tmp/ and unfinished multipart uploads expire after a
    day) and print them as the store reads them back. On local files: what the scheduler enforces."""
    import json

    rules = asyncio.run(_apply_lifecycle())
    typer.echo(json.dumps(rules, indent=2, ensure_ascii=False))


async def _apply_lifecycle() -> list[dict[str, object]]:
    from wardrobe.modules.storage import lifecycle
    from wardrobe.modules.storage.deps import build_storage, close_storage
    from wardrobe.settings import get_settings

    storage = build_storage(get_settings())
    try:
        return await lifecycle.apply(storage)
    finally:
        await close_storage(storage)
