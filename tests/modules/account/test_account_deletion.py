"""Deleting an account: the proof it takes, what goes (tasks settled once, sessions, the person,
the files) and what stays (orders and the ledger, detached), and that the phone opens a new account."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from tests.conftest import Api
from tests.fixtures.auth import Session, data, login_as, sms_login
from tests.fixtures.gate import TcpGate
from tests.fixtures.tasks import OWN_PROCESSES, balance, internal_id, spawn_worker, stop_workers, wait_until, worker_env
from tests.modules.account.erasure_flows import (
    clear_cooldown,
    create,
    delete_account,
    delete_code,
    finished_thumbnail,
    held_feature,
    ledger_kinds,
    pending_rows,
    stored_keys,
    thumbnail_feature,
    upload_photo,
)
from tests.modules.auth.test_vendor_login import wechat_settings
from tests.modules.distributors.flows import apply, stored
from tests.modules.distributors.helpers import make_id_number
from tests.modules.storage.samples import noise
from tests.modules.storage.test_uploads_s3_e2e import s3_api, verified_upload
from wardrobe.core.db import unit_of_work
from wardrobe.models import AuditLog, AuthSession, LedgerEntry, PendingObjectDeletion, Task, User, VerifiedUpload
from wardrobe.models.base import utcnow
from wardrobe.modules.storage import pending_deletions
from wardrobe.worker.scheduler import delete_pending_objects


@pytest.fixture
async def erase_api(api_factory: Any, fault_vendor: Any, monkeypatch: pytest.MonkeyPatch) -> Api:
    monkeypatch.setenv("WARDROBE_TEST_FAULT_VENDOR_URL", fault_vendor.base_url)
    api: Api = await api_factory(
        extra_providers=["tests.providers.fault:build"],
        worker_in_process=True,
        task_heartbeat_seconds=0.1,
        task_lease_seconds=5,
        # One running task per user: the next one stays queued, so both kinds can be deleted.
        user_max_running_tasks=1,
    )
    admin = await login_as(api, "admin")
    await thumbnail_feature(api, admin)
    await held_feature(api, admin)
    return api


async def _user_row(api: Api, user_id: int) -> User:
    async with unit_of_work(api.infra.session_factory) as db:
        user = await db.get(User, user_id)
    assert user is not None
    return user


async def test_deletion_settles_every_task_once_erases_the_person_and_frees_the_phone(
    erase_api: Api, fault_vendor: Any
) -> None:
    api = erase_api
    user = await sms_login(api.client)
    uid = user.user["id"]
    profile = {"nickname": "Mei", "bio": "likes red", "region": "Hangzhou", "birthday": "1990-02-03"}
    data(await api.client.patch("/api/v1/users/me", json=profile, headers=user.headers))
    upload = await upload_photo(api, user)
    done = await finished_thumbnail(api, user, upload)
    fault_vendor.scenario("fault:run1", hold=True)
    running = await create(api, user, "hold", {"key": "run1"})

    async def at_vendor() -> bool:
        return bool(fault_vendor.in_flight_keys["fault:run1"] == 1)

    await wait_until(at_vendor)
    queued = await create(api, user, "hold", {"key": "later1"})
    assert queued["status"] == "queued"
    assert await balance(api, uid) == (9, 2, 9)  # 10 granted, 1 spent, 2 held
    assert await stored_keys(api, uid)  # the upload and the result
    invite_code = data(await api.client.get("/api/v1/users/me/invite", headers=user.headers))["invite_code"]

    code = await delete_code(api, user)
    body = data(await delete_account(api, user, code=code))
    assert (body["deleted"], body["tasks_canceled"], body["tasks_stopping"]) == (True, 1, 1)
    assert body["sessions_revoked"] >= 1

    # The running task stops through its lease holder and is refunded by it: once.
    await api.infra.runtime.wait_finished(await internal_id(api, running["id"]), 30)
    assert await balance(api, uid) == (9, 0, 9)
    assert await ledger_kinds(api, f"task:{running['id']}") == ["cancel", "reserve"]
    assert await ledger_kinds(api, f"task:{queued['id']}") == ["cancel", "reserve"]
    assert await ledger_kinds(api, f"task:{done['id']}") == ["confirm", "reserve"]
    async with unit_of_work(api.infra.session_factory) as db:
        statuses = dict((await db.execute(select(Task.public_id, Task.status).where(Task.user_id == uid))).all())
    assert statuses == {done["id"]: "succeeded", running["id"]: "canceled", queued["id"]: "canceled"}

    # Every token of the account fails at once.
    me = await api.client.get("/api/v1/users/me", headers=user.headers)
    assert (me.status_code, me.json()["code"]) == (401, "AUTH_SESSION_REVOKED")
    refreshed = await api.client.post("/api/v1/auth/refresh", json={"refresh_token": user.refresh})
    assert refreshed.status_code == 401

    # The person is gone; the tombstone keeps the money records.
    row = await _user_row(api, uid)
    assert row.status == "deleted"
    assert row.deleted_at is not None
    erased = (row.phone, row.nickname, row.bio, row.region, row.birthday, row.avatar_url, row.password_hash)
    assert erased == (None,) * 7
    assert row.invite_code.startswith("-")
    assert invite_code != row.invite_code
    async with unit_of_work(api.infra.session_factory) as db:
        ledger_rows = await db.scalar(select(func.count()).select_from(LedgerEntry).where(LedgerEntry.user_id == uid))
        clients = (await db.scalars(select(AuthSession.client).where(AuthSession.user_id == uid))).all()
        verified = await db.scalar(
            select(func.count()).select_from(VerifiedUpload).where(VerifiedUpload.user_id == uid)
        )
        audit = (await db.scalars(select(AuditLog.action).where(AuditLog.target_id == str(uid)))).all()
    assert ledger_rows == 7  # the grant, 3 reserves, 1 confirm, 2 cancels: nothing removed
    assert set(clients) == {None}
    assert verified == 0
    assert "user.delete" in audit

    # The objects: the request already deleted what was there; the prefixes are finished once no
    # task of the account is open any more (the scheduler's pass, run here for the account).
    await pending_deletions.process_due(api.infra.session_factory, api.infra.storage, user_id=uid)
    assert await stored_keys(api, uid) == []
    assert await pending_rows(api, uid) == 0
    async with unit_of_work(api.infra.session_factory) as db:
        contents = (await db.execute(select(Task.inputs, Task.outputs).where(Task.user_id == uid))).all()
    assert [tuple(c) for c in contents] == [({}, [])] * 3

    # The same phone opens a new, empty account.
    await clear_cooldown(api, user.phone)
    again = await sms_login(api.client, user.phone)
    assert again.user["id"] != uid
    assert again.user["nickname"] is None
    assert data(await api.client.get("/api/v1/tasks", headers=again.headers))["items"] == []
    assert data(await api.client.get("/api/v1/billing/quota", headers=again.headers))["balance"] == 10


async def _is_active(api: Api, user: Session) -> bool:
    return (await api.client.get("/api/v1/users/me", headers=user.headers)).status_code == 200


async def test_a_missing_or_wrong_proof_changes_nothing(api_factory: Any) -> None:
    api: Api = await api_factory(login_failure_limits="3/minute")
    user = await sms_login(api.client)
    for proof in ({}, {"code": "123456", "password": "x1"}, {"code": "12ab"}):
        resp = await delete_account(api, user, **proof)
        assert (resp.status_code, resp.json()["code"]) == (422, "VALIDATION_FAILED"), proof
    wrong = await delete_account(api, user, code="000000")  # no code was ever sent
    assert (wrong.status_code, wrong.json()["code"]) == (400, "AUTH_CODE_INVALID")
    # A login code is not a deletion code.
    await clear_cooldown(api, user.phone)
    login_code = data(await api.client.post("/api/v1/auth/sms-codes", json={"phone": user.phone}))["debug_code"]
    reused = await delete_account(api, user, code=login_code)
    assert (reused.status_code, reused.json()["code"]) == (400, "AUTH_CODE_INVALID")
    no_password = await delete_account(api, user, password="whatever1")
    assert (no_password.status_code, no_password.json()["data"][0]["field"]) == (422, "password")
    not_wechat = await delete_account(api, user, wechat_code="abc")
    assert (not_wechat.status_code, not_wechat.json()["data"][0]["field"]) == (422, "wechat_code")
    assert await _is_active(api, user)

    # The password path is rate limited like a password change: guesses run out, then even the
    # right password waits.
    data(
        await api.client.put("/api/v1/auth/password", json={"new_password": "Tangerine-Orbit-42"}, headers=user.headers)
    )
    for _ in range(2):
        resp = await delete_account(api, user, password="Wrong-guess-1")
        assert (resp.status_code, resp.json()["code"]) == (401, "AUTH_INVALID_CREDENTIALS")
    assert (await delete_account(api, user, password="Wrong-guess-2")).status_code == 401
    limited = await delete_account(api, user, password="Tangerine-Orbit-42")
    assert (limited.status_code, limited.json()["code"]) == (429, "RATE_LIMITED")
    assert await _is_active(api, user)


async def test_concurrent_deletions_delete_once_by_password(api_factory: Any) -> None:
    api: Api = await api_factory()
    user = await sms_login(api.client)
    data(
        await api.client.put("/api/v1/auth/password", json={"new_password": "Tangerine-Orbit-42"}, headers=user.headers)
    )
    first, second = await asyncio.gather(
        delete_account(api, user, password="Tangerine-Orbit-42"),
        delete_account(api, user, password="Tangerine-Orbit-42"),
    )
    assert sorted([first.status_code, second.status_code]) == [200, 401]
    async with unit_of_work(api.infra.session_factory) as db:
        audits = await db.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.action == "user.delete"))
        prefixes = await db.scalar(select(func.count()).select_from(PendingObjectDeletion))
    assert audits == 1
    assert prefixes == 0  # both done by the request: the account had no open task
    login = await api.client.post(
        "/api/v1/auth/login", json={"method": "password", "phone": user.phone, "password": "Tangerine-Orbit-42"}
    )
    assert (login.status_code, login.json()["code"]) == (401, "AUTH_INVALID_CREDENTIALS")


async def test_a_wechat_only_account_proves_itself_with_a_fresh_wechat_code(api_factory: Any, wechat_peer: Any) -> None:
    api: Api = await api_factory(**wechat_settings(wechat_peer))
    wechat_peer.register_login_code("login-1", "openid-del", "unionid-del")
    body = data(await api.client.post("/api/v1/auth/login", json={"method": "wechat", "code": "login-1"}))
    user = Session("", body["access_token"], body["refresh_token"], body["user"])
    code_proof = await delete_account(api, user, code="123456")
    assert (code_proof.status_code, code_proof.json()["data"][0]["field"]) == (422, "code")
    wechat_peer.register_login_code("someone-else", "openid-other")
    other = await delete_account(api, user, wechat_code="someone-else")
    assert (other.status_code, other.json()["code"]) == (400, "AUTH_CODE_INVALID")
    assert await _is_active(api, user)

    wechat_peer.register_login_code("fresh-1", "openid-del", "unionid-del")
    data(await delete_account(api, user, wechat_code="fresh-1"))
    row = await _user_row(api, user.user["id"])
    assert (row.status, row.wechat_openid, row.wechat_unionid) == ("deleted", None, None)
    wechat_peer.register_login_code("login-2", "openid-del", "unionid-del")
    again = data(await api.client.post("/api/v1/auth/login", json={"method": "wechat", "code": "login-2"}))
    assert again["is_new_user"] is True
    assert again["user"]["id"] != user.user["id"]


async def test_an_erased_account_cannot_be_brought_back_by_an_admin(api: Api) -> None:
    admin = await login_as(api, "admin")
    user = await sms_login(api.client)
    data(await delete_account(api, user, code=await delete_code(api, user)))
    resp = await api.client.patch(
        f"/api/v1/admin/users/{user.user['id']}", json={"status": "active", "reason": "undo"}, headers=admin.headers
    )
    assert (resp.status_code, resp.json()["code"]) == (409, "CONFLICT")
    assert (await _user_row(api, user.user["id"])).status == "deleted"


async def test_the_distributor_application_and_its_sealed_id_number_go(api_factory: Any, tmp_path: Any) -> None:
    api: Api = await api_factory(kms_backend="local", kms_local_key_file=tmp_path / "master-keys.json")
    user = await sms_login(api.client)
    other = await sms_login(api.client)
    await apply(api, user, make_id_number())
    await apply(api, other, make_id_number())
    data(await delete_account(api, user, code=await delete_code(api, user)))
    left = await stored(api)
    assert [row.user_id for row in left] == [other.user["id"]]


async def test_objects_the_store_could_not_delete_are_deleted_by_the_scheduler(api_factory: Any, s3_peer: Any) -> None:
    """The store is down at the deletion: the account is deleted all the same (one commit), the
    objects stay recorded, and the scheduler deletes them once the store is back."""
    host, port = s3_peer.endpoint_url.removeprefix("http://").split(":")
    gate = TcpGate(host, int(port))
    await gate.open()
    try:
        gated = type(s3_peer)(f"http://127.0.0.1:{gate.port}", s3_peer.bucket, s3_peer.region, s3_peer.state)
        api = await s3_api(api_factory, gated)
        user = await sms_login(api.client)
        key = await verified_upload(api, user, noise(40, 30))
        await gate.cut()
        data(await delete_account(api, user, code=await delete_code(api, user)))
        assert (await _user_row(api, user.user["id"])).status == "deleted"
        listed = s3_peer.client().list_objects_v2(Bucket=s3_peer.bucket)
        assert [o["Key"] for o in listed.get("Contents", [])] == [key]
        async with unit_of_work(api.infra.session_factory) as db:
            attempts = (await db.scalars(select(PendingObjectDeletion.attempts))).all()
            assert sorted(attempts) == [1, 1]
            # Not due yet (back-off): the scheduler's pass leaves them.
            assert await delete_pending_objects(api.infra) == 0
            await db.execute(update(PendingObjectDeletion).values(next_attempt_at=utcnow() - timedelta(seconds=1)))
        await gate.open()
        assert await delete_pending_objects(api.infra) == 2
        listed = s3_peer.client().list_objects_v2(Bucket=s3_peer.bucket)
        assert listed.get("Contents", []) == []
        assert await pending_rows(api, user.user["id"]) == 0
    finally:
        await gate.close()


@OWN_PROCESSES
@pytest.mark.parametrize("backend", ["mariadb"], indirect=True)
async def test_a_task_running_in_a_worker_process_is_refunded_once_when_the_account_goes(
    api_factory: Any, fault_vendor: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The production shape: the task runs in a separate `wardrobe worker` process on MariaDB +
    Redis; the API only flags it, the worker stops it and refunds it — once — and the account's
    files are finished off when nothing of it runs any more."""
    monkeypatch.setenv("WARDROBE_TEST_FAULT_VENDOR_URL", fault_vendor.base_url)
    api: Api = await api_factory(extra_providers=["tests.providers.fault:build"], worker_in_process=False)
    admin = await login_as(api, "admin")
    await held_feature(api, admin)
    env = worker_env(api, tmp_path, task_lease_seconds="10", task_heartbeat_seconds="0.2")
    workers = [spawn_worker(env, tmp_path / "worker.log")]
    try:
        user = await sms_login(api.client)
        fault_vendor.scenario("fault:w1", hold=True)
        running = await create(api, user, "hold", {"key": "w1"})

        async def at_vendor() -> bool:
            return bool(fault_vendor.in_flight_keys["fault:w1"] == 1)

        await wait_until(at_vendor, within=60)
        body = data(await delete_account(api, user, code=await delete_code(api, user)))
        assert (body["tasks_canceled"], body["tasks_stopping"]) == (0, 1)
        task_id = await internal_id(api, running["id"])

        async def stopped() -> bool:
            async with unit_of_work(api.infra.session_factory) as db:
                return await db.scalar(select(Task.status).where(Task.id == task_id)) == "canceled"

        await wait_until(stopped, within=30)
        fault_vendor.release("fault:w1")
        assert await ledger_kinds(api, f"task:{running['id']}") == ["cancel", "reserve"]
        assert await balance(api, user.user["id"]) == (10, 0, 10)
        async with unit_of_work(api.infra.session_factory) as db:
            refunded = await db.scalar(select(Task.refunded).where(Task.id == task_id))
        assert refunded is True
        report = await pending_deletions.process_due(
            api.infra.session_factory, api.infra.storage, user_id=user.user["id"]
        )
        assert (report.rows_done, report.rows_waiting) == (2, 0)
    finally:
        stop_workers(workers)
