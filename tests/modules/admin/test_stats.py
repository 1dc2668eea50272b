"""The statistics overview equals what the rows say, whether its days are rolled up or live; the
rollup job is idempotent; bad ranges are refused by field."""

from __future__ import annotations

import itertools
from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy import delete, select

from tests.conftest import Api
from tests.fixtures.auth import Session, data, login_as, sms_login
from tests.fixtures.stats import at, build_history, exact_p95, expected_overview, histogram_p95
from wardrobe.core.db import unit_of_work
from wardrobe.models import (
    StatsDaily,
    StatsDailyActiveUser,
    StatsDailyRevenue,
    StatsDailyTasks,
    Task,
    stats_daily_performance,
)
from wardrobe.models.base import utcnow
from wardrobe.modules.admin.stats import jobs
from wardrobe.modules.admin.stats.figures import BOUNDS_MS, BUCKETS, bucket_of, p95_ms

URL = "/api/v1/admin/stats/overview"


async def _overview(api: Api, who: Session, start: date, end: date) -> dict[str, Any]:
    params = {"from": start.isoformat(), "to": end.isoformat(), "granularity": "day"}
    result: dict[str, Any] = data(await api.client.get(URL, params=params, headers=who.headers))
    return result


async def _expected(api: Api, start: date, end: date) -> dict[str, Any]:
    async with unit_of_work(api.infra.session_factory) as db:
        return await expected_overview(db, start, end)


async def _snapshot(api: Api) -> list[list[Any]]:
    tables = [m.__table__ for m in (StatsDaily, StatsDailyTasks, StatsDailyRevenue, StatsDailyActiveUser)]
    async with unit_of_work(api.infra.session_factory) as db:
        return [
            [tuple(row) for row in (await db.execute(select(table).order_by(*table.primary_key))).all()]
            for table in [*tables, stats_daily_performance]
        ]


def _ranges(today: date) -> list[tuple[date, date]]:
    return [
        (today - timedelta(days=6), today),  # rolled-up days and today
        (today - timedelta(days=5), today - timedelta(days=3)),  # rolled-up days only
        (today - timedelta(days=2), today - timedelta(days=1)),  # days the job leaves open
        (today, today),
        (today - timedelta(days=30), today + timedelta(days=3)),  # before the first row, after today
    ]


async def _assert_every_range(api: Api, operator: Session, today: date) -> None:
    for start, end in _ranges(today):
        assert await _overview(api, operator, start, end) == await _expected(api, start, end), (start, end)


async def test_overview_equals_the_rows_live_and_rolled_up(api: Api) -> None:
    operator = await login_as(api, "operator")
    today = utcnow().date()
    async with unit_of_work(api.infra.session_factory) as db:
        await build_history(db, today)
    overview = await _overview(api, operator, today - timedelta(days=6), today)
    assert overview["totals"]["tasks"] > 60
    assert overview["totals"]["refunds_fen"] > 0
    assert {p["provider"] for p in overview["performance"]} == {None, "runninghub", "hunyuan", "local"}
    await _assert_every_range(api, operator, today)  # nothing rolled up: all live

    now = utcnow()
    assert await jobs.roll_up_stats(api.infra.session_factory, now=now) == 6  # the closed days
    async with unit_of_work(api.infra.session_factory) as db:
        final = dict((await db.execute(select(StatsDaily.day, StatsDaily.final))).all())
    assert set(final) == {today - timedelta(days=n) for n in range(1, 7)}
    # A task still running keeps its day open; older days are final.
    assert final[today - timedelta(days=2)] is False
    assert all(final[today - timedelta(days=n)] for n in range(3, 7))
    await _assert_every_range(api, operator, today)

    before = await _snapshot(api)
    assert await jobs.roll_up_stats(api.infra.session_factory, now=now) == sum(not done for done in final.values())
    assert await _snapshot(api) == before
    await _assert_every_range(api, operator, today)


async def test_final_days_are_read_from_the_rollup_until_recomputed(api: Api) -> None:
    operator = await login_as(api, "operator")
    today = utcnow().date()
    day = today - timedelta(days=4)
    async with unit_of_work(api.infra.session_factory) as db:
        history = await build_history(db, today)
    await jobs.roll_up_stats(api.infra.session_factory)
    rolled = await _expected(api, day, day)
    late_user = await sms_login(api.client)
    async with unit_of_work(api.infra.session_factory) as db:
        late = Task(
            public_id="tstatslate",
            user_id=late_user.user["id"],
            feature_key="cutout",
            pipeline_schema_id=history.pipeline_id,
            status="failed",
            inputs={},
            quota_cost=1,
            request_hash="late",
            created_at=at(day, 1_000),
        )
        db.add(late)
    # The final day answers from its rollup (which the late row is not in) ...
    assert await _overview(api, operator, day, day) == rolled
    assert await _expected(api, day, day) != rolled
    # ... until its row is deleted, which makes the next run compute it again.
    async with unit_of_work(api.infra.session_factory) as db:
        await db.execute(delete(StatsDaily).where(StatsDaily.day == day))
    assert await jobs.roll_up_stats(api.infra.session_factory) >= 1
    assert await _overview(api, operator, day, day) == await _expected(api, day, day)
    assert (await _overview(api, operator, day, day))["totals"]["tasks"] == rolled["totals"]["tasks"] + 1


async def test_the_job_rolls_up_the_newest_days_first_and_at_most_its_share(api: Api) -> None:
    today = utcnow().date()
    async with unit_of_work(api.infra.session_factory) as db:
        await build_history(db, today)
    assert await jobs.roll_up_stats(api.infra.session_factory, max_days=2) == 2
    async with unit_of_work(api.infra.session_factory) as db:
        final = dict((await db.execute(select(StatsDaily.day, StatsDaily.final))).all())
    assert set(final) == {today - timedelta(days=1), today - timedelta(days=2)}
    open_days = sum(not done for done in final.values())
    assert open_days >= 1  # the day with a running task
    assert await jobs.roll_up_stats(api.infra.session_factory) == 4 + open_days  # the rest, the open ones again
    assert await jobs.roll_up_stats(api.infra.session_factory) == open_days


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "2026-12-10", "to": "2026-12-09"}, "to"),
        ({"from": "2025-12-01", "to": "2026-12-02"}, "to"),  # 367 days
        ({"from": "2026-12-01", "to": "2026-12-02", "granularity": "week"}, "granularity"),
        ({"from": "2026-02-30", "to": "2026-03-02"}, "from"),
        ({"from": "1700000000", "to": "2026-03-02"}, "from"),
        ({"to": "2026-03-02"}, "from"),
        ({"from": "2026-03-02"}, "to"),
        ({"from": "1999-12-31", "to": "2000-01-02"}, "from"),
    ],
)
async def test_bad_ranges_are_refused_by_field(api: Api, params: dict[str, str], field: str) -> None:
    operator = await login_as(api, "operator")
    resp = await api.client.get(URL, params=params, headers=operator.headers)
    assert resp.status_code == 422, resp.text
    body = resp.json()
    assert body["code"] == "VALIDATION_FAILED"
    assert [item["field"] for item in body["data"]] == [field]


async def test_a_range_of_366_days_is_accepted_and_users_are_refused(api: Api) -> None:
    operator = await login_as(api, "operator")
    overview = await _overview(api, operator, date(2024, 1, 1), date(2024, 12, 31))  # a leap year
    assert len(overview["series"]) == 366
    assert overview["totals"]["tasks"] == 0
    user = await sms_login(api.client)
    resp = await api.client.get(URL, params={"from": "2024-01-01", "to": "2024-01-02"}, headers=user.headers)
    assert (resp.status_code, resp.json()["code"]) == (403, "PERMISSION_DENIED")


def test_the_histogram_p95_is_the_bucket_bound_never_below_and_within_26_percent() -> None:
    assert len(BOUNDS_MS) + 1 == BUCKETS
    assert (BOUNDS_MS[0], BOUNDS_MS[1], BOUNDS_MS[-1]) == (50, 62, 3_276_800)
    # A duration past one bound is reported as the next: less than 2^(1/3) (26 %) above it.
    assert all(b / (a + 1) < 2 ** (1 / 3) for a, b in itertools.pairwise(BOUNDS_MS))
    for sample in ([1_000] * 19 + [90_000], list(range(100, 20_100, 100)), [7], [10_000_000, 20], [63, 64, 65]):
        histogram = [0] * BUCKETS
        for ms in sample:
            histogram[bucket_of(ms)] += 1
        reported = p95_ms(histogram, max(sample))
        assert reported == histogram_p95(sample)
        assert reported is not None
        assert exact_p95(sample) <= reported <= exact_p95(sample) * 1.26 or reported == max(sample)
    assert p95_ms([0] * BUCKETS, None) is None


async def test_the_database_buckets_durations_exactly_as_the_bounds_say(api: Api) -> None:
    """Every bound and its neighbours, through the SQL of the backend (a formula on MariaDB, a
    search on SQLite), land in the bucket figures.bucket_of gives them."""
    from tests.fixtures.stats import History, task_row
    from wardrobe.models import PipelineSchema, User
    from wardrobe.modules.admin.stats import repository

    day = utcnow().date() - timedelta(days=1)
    durations = sorted({0, 1, 4_000_000, *(b + d for b in BOUNDS_MS for d in (-1, 0, 1))})
    async with unit_of_work(api.infra.session_factory) as db:
        pipeline = PipelineSchema(key="buckets", version=1, definition={"steps": []})
        user = User(invite_code="stbuckets")
        db.add_all([pipeline, user])
        await db.flush()
        history = History(day, pipeline.id)
        for n, ms in enumerate(durations):
            started = at(day, 1_000 * n)
            db.add(
                task_row(
                    history, user.id, "cutout", "succeeded", started, started, started + timedelta(milliseconds=ms)
                )
            )
    async with unit_of_work(api.infra.session_factory) as db:
        figures = (await repository.live_figures(db, day, day))[day]
    expected = [0] * BUCKETS
    for ms in durations:
        expected[bucket_of(ms)] += 1
    perf = figures.performance[("cutout", "")]
    assert perf.durations == expected
    assert (perf.tasks, perf.max_ms) == (len(durations), 4_000_000)
