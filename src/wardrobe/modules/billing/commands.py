"""``wardrobe plans load FILE.yaml [--dry-run]`` and ``wardrobe plans list``: the catalogue of plans
kept in a file an operator reviews, loaded all or nothing.

The file holds ``plans:``, a list of plans in the shape the admin API takes (``PlanWrite``). Each
entry creates the plan with its sku, or sets every field of the existing one to the entry's value
(a field left out takes its default: ``is_active: true``, no features, every channel, …). Plans
the file does not name are left as they are: retire one with ``is_active: false``. Every change is
audited with no actor and the reason ``loaded from <file name>``; if any entry is invalid, nothing
is written.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from wardrobe.core.cache import Cache
from wardrobe.core.db import unit_of_work
from wardrobe.core.errors import AppError
from wardrobe.modules.billing import plans, repository
from wardrobe.modules.billing.schemas import PlanWrite

plans_app = typer.Typer(help="Plans and prices: load the catalogue from YAML, list it", no_args_is_help=True)
MAX_FILE_BYTES = 1_000_000
MAX_PLANS = 500


class PlanFileError(Exception):
    """The file cannot be loaded; ``problems`` says why, one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Loaded:
    sku: str
    action: str  # created | updated | unchanged
    changed: list[str] = field(default_factory=list)


class _DryRun(Exception):
    """Raised inside the unit of work of a dry run, so that it rolls back."""


def parse_plans(text: str) -> list[PlanWrite]:
    """The plans of a YAML document, each validated as the admin API validates a new plan."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PlanFileError([f"not valid YAML: {exc}"]) from exc
    if not isinstance(document, dict) or set(document) != {"plans"} or not isinstance(document["plans"], list):
        raise PlanFileError(["the file must hold one key, `plans`, a list of plans"])
    entries: list[Any] = document["plans"]
    if len(entries) > MAX_PLANS:
        raise PlanFileError([f"at most {MAX_PLANS} plans"])
    problems: list[str] = []
    parsed: list[PlanWrite] = []
    for i, entry in enumerate(entries):
        try:
            parsed.append(PlanWrite.model_validate(entry))
        except ValidationError as exc:
            label = entry.get("sku") if isinstance(entry, dict) and isinstance(entry.get("sku"), str) else f"#{i + 1}"
            problems += [f"plans[{i}] ({label}) {_loc(err['loc'])}: {err['msg']}" for err in exc.errors()]
    seen: set[str] = set()
    for plan in parsed:
        if plan.sku in seen:
            problems.append(f"sku {plan.sku} appears twice")
        seen.add(plan.sku)
    if problems:
        raise PlanFileError(problems)
    return parsed


def _loc(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc) or "entry"


def read_plans(path: Path) -> list[PlanWrite]:
    """The plans of the YAML file at ``path`` (``parse_plans``)."""
    if path.stat().st_size > MAX_FILE_BYTES:
        raise PlanFileError([f"the file is larger than {MAX_FILE_BYTES} bytes"])
    return parse_plans(path.read_text(encoding="utf-8"))


async def load_plans(
    sessions: async_sessionmaker[AsyncSession],
    cache: Cache,
    entries: list[PlanWrite],
    *,
    source: str,
    dry_run: bool = False,
) -> list[Loaded]:
    """Create or update ``entries`` (read from the file named ``source``) in one transaction:
    nothing is written if any is refused (PlanFileError), or if ``dry_run``. Audited with the
    reason ``loaded from <source>``."""
    report: list[Loaded] = []
    try:
        async with unit_of_work(sessions) as session:
            report = await _apply(session, cache, entries, reason=f"loaded from {source}")
            if dry_run:
                raise _DryRun
    except _DryRun:
        pass
    return report


async def _apply(session: AsyncSession, cache: Cache, entries: list[PlanWrite], *, reason: str) -> list[Loaded]:
    existing = await repository.plans_by_sku(session, [e.sku for e in entries])
    report = []
    for entry in entries:
        try:
            if entry.sku not in existing:
                await plans.create_plan(session, cache, entry, actor_id=None, reason=reason)
                report.append(Loaded(entry.sku, "created"))
                continue
            values = {name: getattr(entry, name) for name in plans.FIELDS}
            _, changed = await plans.update_plan(session, cache, entry.sku, values, actor_id=None, reason=reason)
        except AppError as exc:  # raised in the unit of work: everything rolls back
            raise PlanFileError(_problems(entry.sku, exc)) from exc
        report.append(Loaded(entry.sku, "updated" if changed else "unchanged", sorted(changed)))
    return report


def _problems(sku: str, exc: AppError) -> list[str]:
    if isinstance(exc.data, list):
        return [f"{sku} {p.get('field')}: {p.get('message')}" for p in exc.data if isinstance(p, dict)]
    return [f"{sku}: {exc.code.name}"]


@plans_app.command("load")
def load_command(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="The plans YAML file")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check and report what would change; write nothing")
    ] = False,
) -> None:
    """Create or update plans by sku from a YAML file (see deploy/plans.example.yaml), all or nothing."""
    try:
        entries = read_plans(file)
        report = asyncio.run(
            run_with_database(
                lambda sessions, cache: load_plans(sessions, cache, entries, source=file.name, dry_run=dry_run)
            )
        )
    except PlanFileError as exc:
        for problem in exc.problems:
            typer.echo(f"error: {problem}", err=True)
        raise typer.Exit(1) from exc
    for loaded in report:
        detail = f" ({', '.join(loaded.changed)})" if loaded.changed else ""
        typer.echo(f"{loaded.sku}: {'would be ' if dry_run else ''}{loaded.action}{detail}")
    counts = {a: sum(1 for r in report if r.action == a) for a in ("created", "updated", "unchanged")}
    summary = ", ".join(f"{n} {a}" for a, n in counts.items())
    typer.echo(f"{'dry run, nothing written: ' if dry_run else ''}{summary}")


@plans_app.command("list")
def list_command() -> None:
    """Print every plan, inactive ones too, in display order."""

    async def rows(sessions: async_sessionmaker[AsyncSession], _: Cache) -> list[str]:
        async with unit_of_work(sessions) as session:
            return [_row(p) for p in await repository.all_plans(session)]

    for line in asyncio.run(run_with_database(rows)):
        typer.echo(line)


def _row(plan: Any) -> str:
    period = f"{plan.period_days}d" if plan.period_days else "-"
    window = f"{_day(plan.valid_from)}..{_day(plan.valid_to)}"
    state = "active" if plan.is_active else "inactive"
    channels = ",".join(plan.channels or []) or "all channels"
    features = ",".join(plan.features or []) or "-"
    return (
        f"{plan.sku}\t{plan.kind}\t{plan.name}\t¥{plan.price_fen / 100:.2f}\tquota {plan.quota}\t{period}\t"
        f"tier {plan.tier or '-'}\tfeatures {features}\t{channels}\t{window}\t{state}"
    )


def _day(value: Any) -> str:
    return value.date().isoformat() if value is not None else ""


async def run_with_database(work: Any) -> Any:
    """Run ``work(sessions, cache)`` with only what it needs: the database, and a cache whose
    invalidations reach every running process (through Redis) once the load commits."""
    from wardrobe.core.cache import Policy
    from wardrobe.core.db import create_engine, create_session_factory
    from wardrobe.core.redis import create_redis
    from wardrobe.settings import get_settings

    settings = get_settings()
    engine = create_engine(settings)
    redis = create_redis(settings)
    cache = Cache(redis, settings.redis_key_prefix, {plans.PLANS: Policy(ttl=settings.cache_ttl_seconds)})
    try:
        return await work(create_session_factory(engine), cache)
    finally:
        await cache.stop()  # waits for the invalidation to be published
        if redis is not None:
            await redis.aclose()
        await engine.dispose()
