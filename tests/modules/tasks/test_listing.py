"""`GET /api/v1/tasks`, the lean one-query path: pages, filters, the view of each task, and the same
session rules as every other authenticated route."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select, update

from tests.conftest import Api
from tests.fixtures.auth import Session, data, login_as, sms_login
from tests.fixtures.tasks import give_quota, make_feature, step
from wardrobe.core.db import unit_of_work
from wardrobe.core.errors import AppError, ErrorCode
from wardrobe.models import AuthSession, Task, TaskStep, User
from wardrobe.modules.tasks import listing


@pytest.fixture
async def queued_api(api_factory: Any) -> Api:
    # Nobody runs the tasks: their states are set by the tests.
    api: Api = await api_factory(worker_in_process=False, free_grant_quota=0)
    admin = await login_as(api, "admin")
    for key in ("alpha", "beta"):
        steps = [
            step("prepare", provider="instant", action="passthrough"),
            step("render", provider="instant", action="passthrough"),
        ]
        await make_feature(api, admin, key, steps, {"r": "$steps.render.key"})
    return api


async def _create(api: Api, user: Session, feature: str, key: str) -> str:
    body = {"feature": feature, "inputs": {"key": key}}
    task = data(await api.client.post("/api/v1/tasks", json=body, headers=user.headers), 202)
    return str(task["id"])


async def _list(api: Api, user: Session, **params: Any) -> dict[str, Any]:
    page: dict[str, Any] = data(await api.client.get("/api/v1/tasks", params=params, headers=user.headers))
    return page


async def test_pages_newest_first_with_filters_and_only_my_tasks(queued_api: Api) -> None:
    api = queued_api
    me, other = await sms_login(api.client), await sms_login(api.client)
    await give_quota(api, me.user["id"], 10)
    await give_quota(api, other.user["id"], 1)
    mine = [await _create(api, me, "alpha" if i % 3 else "beta", f"k{i}") for i in range(10)]
    theirs = await _create(api, other, "alpha", "x")

    seen: list[str] = []
    cursor = None
    for _ in range(10):
        page = await _list(api, me, limit=3, **({"cursor": cursor} if cursor else {}))
        assert len(page["items"]) <= 3
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == mine[::-1]
    assert theirs not in seen

    betas = await _list(api, me, feature="beta")
    assert [i["id"] for i in betas["items"]] == [t for n, t in enumerate(mine) if n % 3 == 0][::-1]
    assert betas["next_cursor"] is None

    async with unit_of_work(api.infra.session_factory) as db:
        await db.execute(update(Task).where(Task.public_id == mine[4]).values(status="running", progress=50))
        task_id = await db.scalar(select(Task.id).where(Task.public_id == mine[4]))
        db.add(TaskStep(task_id=task_id, step_id="prepare", status="succeeded", outputs={}))
        db.add(TaskStep(task_id=task_id, step_id="render", status="running", outputs={}))
    running = await _list(api, me, status="running")
    assert [(i["id"], i["progress"]) for i in running["items"]] == [(mine[4], 50)]
    assert running["items"][0]["steps"] == [
        {"id": "prepare", "status": "succeeded"},
        {"id": "render", "status": "running"},
    ]
    queued = await _list(api, me, status="queued", limit=100)
    assert len(queued["items"]) == 9
    assert queued["items"][0]["steps"] == [
        {"id": "prepare", "status": "pending"},
        {"id": "render", "status": "pending"},
    ]

    assert await _list(api, other, status="running") == {"items": [], "next_cursor": None}
    newcomer = await sms_login(api.client)
    assert await _list(api, newcomer) == {"items": [], "next_cursor": None}


async def test_outputs_are_signed_and_internal_errors_stay_inside(queued_api: Api) -> None:
    api = queued_api
    me = await sms_login(api.client)
    await give_quota(api, me.user["id"], 2)
    done, broken = await _create(api, me, "alpha", "a"), await _create(api, me, "alpha", "b")
    outputs = [
        {"name": "image", "object_key": "results/ab/cd/out.png", "content_type": "image/png"},
        {"name": "score", "value": 0.5},
    ]
    async with unit_of_work(api.infra.session_factory) as db:
        await db.execute(update(Task).where(Task.public_id == done).values(status="succeeded", outputs=outputs))
        await db.execute(
            update(Task).where(Task.public_id == broken).values(status="failed", error_code="vendor_said_QUEUE_MAXED")
        )
    items = {i["id"]: i for i in (await _list(api, me))["items"]}
    image, score = items[done]["outputs"]
    assert image["name"] == "image"
    assert image["content_type"] == "image/png"
    assert "results/ab/cd/out.png" in image["url"]
    assert "signature=" in image["url"]
    assert score == {"name": "score", "value": 0.5}
    assert items[broken]["error"]["code"] == "processing_failed"
    assert "QUEUE_MAXED" not in str(items[broken])  # (not a number: timestamps are full of them)
    # The list and the single-task route show a task the same way.
    single = data(await api.client.get(f"/api/v1/tasks/{done}", headers=me.headers))
    assert {k: v for k, v in single.items() if k != "outputs"} == {
        k: v for k, v in items[done].items() if k != "outputs"
    }


async def test_same_session_rules_as_every_route(queued_api: Api) -> None:
    api = queued_api

    async def code(headers: dict[str, str]) -> tuple[int, str]:
        resp = await api.client.get("/api/v1/tasks", headers=headers)
        return resp.status_code, resp.json()["code"]

    assert await code({}) == (401, "AUTH_REQUIRED")
    assert await code({"Authorization": "Bearer not-a-token"}) == (401, "AUTH_TOKEN_INVALID")

    revoked = await sms_login(api.client)
    data(await api.client.post("/api/v1/auth/logout", headers=revoked.headers))
    assert await code(revoked.headers) == (401, "AUTH_SESSION_REVOKED")

    disabled = await sms_login(api.client)
    async with unit_of_work(api.infra.session_factory) as db:
        await db.execute(update(User).where(User.id == disabled.user["id"]).values(status="disabled"))
    assert (await code(disabled.headers))[1] == "ACCOUNT_DISABLED"

    victim, intruder = await sms_login(api.client), await sms_login(api.client)
    async with unit_of_work(api.infra.session_factory) as db:
        victim_sid = await db.scalar(
            select(AuthSession.id).where(AuthSession.user_id == victim.user["id"]).order_by(AuthSession.created_at)
        )
    tokens = api.infra.tokens
    forged = tokens.issue_access(intruder.user["id"], "user", str(victim_sid))
    assert await code({"Authorization": f"Bearer {forged}"}) == (401, "AUTH_TOKEN_INVALID")
    unknown = tokens.issue_access(victim.user["id"], "user", "0" * 32)
    assert await code({"Authorization": f"Bearer {unknown}"}) == (401, "AUTH_TOKEN_INVALID")
    expired = tokens.issue_access(victim.user["id"], "user", str(victim_sid), now=0)
    assert await code({"Authorization": f"Bearer {expired}"}) == (401, "AUTH_TOKEN_EXPIRED")
    assert await code(victim.headers) == (200, "OK")


def _unsigned(page: dict[str, Any]) -> dict[str, Any]:
    """A page with its output URLs cut before the signature (which carries the signing time)."""
    for item in page["items"]:
        for output in item["outputs"]:
            if "url" in output:
                output["url"] = output["url"].split("?")[0]
    return page


@pytest.mark.parametrize("backend", ["mariadb"], indirect=True)
async def test_the_driver_path_answers_as_the_portable_one(queued_api: Api) -> None:
    """On MariaDB the page is read on asyncmy's cursor; every filter, cursor and state must come
    out exactly as through SQLAlchemy (types included: aware datetimes, JSON, booleans)."""
    api = queued_api
    me = await sms_login(api.client)
    await give_quota(api, me.user["id"], 8)
    ids = [await _create(api, me, "alpha" if i % 2 else "beta", f"k{i}") for i in range(8)]
    async with unit_of_work(api.infra.session_factory) as db:
        task_id = {t.public_id: t.id for t in await db.scalars(select(Task).where(Task.public_id.in_(ids)))}
        out = [{"name": "image", "object_key": "results/ab/cd/out.png", "content_type": "image/png"}]
        await db.execute(update(Task).where(Task.public_id == ids[1]).values(status="succeeded", outputs=out))
        await db.execute(
            update(Task).where(Task.public_id == ids[2]).values(status="failed", error_code="bad_input", refunded=True)
        )
        await db.execute(update(Task).where(Task.public_id == ids[3]).values(status="running", progress=50))
        db.add(TaskStep(task_id=task_id[ids[3]], step_id="prepare", status="succeeded"))
        db.add(TaskStep(task_id=task_id[ids[3]], step_id="render", status="running"))
    claims = api.infra.tokens.decode_access(me.headers["Authorization"].split()[1])
    combos: list[dict[str, Any]] = [
        {"limit": 20, "before_id": None, "status": None, "feature": None},
        {"limit": 3, "before_id": None, "status": None, "feature": None},
        {"limit": 3, "before_id": task_id[ids[5]], "status": None, "feature": None},
        {"limit": 20, "before_id": None, "status": "succeeded", "feature": None},
        {"limit": 20, "before_id": None, "status": None, "feature": "beta"},
        {"limit": 20, "before_id": None, "status": "canceled", "feature": None},  # empty page
    ]
    for combo in combos:
        driver = await listing.list_page(api.infra.engine, api.infra.task_views, claims, **combo)
        portable = await listing.list_page(api.infra.engine, api.infra.task_views, claims, **combo, driver_path=False)
        assert _unsigned(driver) == _unsigned(portable), combo
    whole = await listing.list_page(
        api.infra.engine, api.infra.task_views, claims, limit=20, before_id=None, status=None, feature=None
    )
    by_id = {item["id"]: item for item in whole["items"]}
    assert [s["status"] for s in by_id[ids[3]]["steps"]] == ["succeeded", "running"]
    assert by_id[ids[2]]["refunded"] is True
    assert by_id[ids[1]]["outputs"][0]["url"].split("?")[0].endswith("results/ab/cd/out.png")
    assert by_id[ids[1]]["created_at"].tzinfo is not None
    # A revoked session is refused on the driver path too (the page comes back empty).
    data(await api.client.post("/api/v1/auth/logout", headers=me.headers))
    with pytest.raises(AppError) as refused:
        await listing.list_page(
            api.infra.engine, api.infra.task_views, claims, limit=20, before_id=None, status=None, feature=None
        )
    assert refused.value.code is ErrorCode.AUTH_SESSION_REVOKED
