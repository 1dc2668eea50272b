"""Provider accounts in the database: secrets sealed or named, endpoints fenced,
edits audited and seen by every worker, and RunningHub steps spread over several accounts — each
within its own cap at the peer, a broken account skipped — instead of the key from settings.

The RunningHub peer ties every task and upload to the key that made it (a foreign key gets 807),
so a poll on the wrong account would fail these tests.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select

from tests.conftest import Api
from tests.fixtures.auth import Session, data, login_as, sms_login
from tests.fixtures.realtime import live
from tests.fixtures.tasks import free_port, give_quota, run_to_end, wait_until
from tests.modules.providers.test_runninghub import outfit_feature, outfit_task, served_settings
from tests.peers.runninghub_fixtures import ServedRunningHubPeer
from wardrobe.core.db import unit_of_work
from wardrobe.models import AuditLog, ProviderAccount, TaskStep
from wardrobe.modules.providers.accounts import AccountConfigError, SecretBox, check_endpoint, check_secret_env

KEY_A = "wardrobe-test-runninghub-key-0a1"
KEY_B = "wardrobe-test-runninghub-key-0b2"
ACCOUNTS = "/api/v1/admin/provider-accounts"


def _new_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


# -- sealing and fences --------------------------------------------------------------------------


def test_a_sealed_secret_opens_only_for_its_account_and_key() -> None:
    box = SecretBox(_new_key())
    sealed = box.seal("s3cret-value", provider="runninghub", name="a")
    assert "s3cret" not in sealed
    assert box.open(sealed, provider="runninghub", name="a") == "s3cret-value"
    assert box.seal("s3cret-value", provider="runninghub", name="a") != sealed  # a fresh nonce each time
    with pytest.raises(AccountConfigError):
        box.open(sealed, provider="runninghub", name="b")  # copied onto another account
    with pytest.raises(AccountConfigError):
        SecretBox(_new_key()).open(sealed, provider="runninghub", name="a")  # another deployment's key
    tampered = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    with pytest.raises(AccountConfigError):
        box.open(tampered, provider="runninghub", name="a")
    with pytest.raises(AccountConfigError):
        SecretBox("").seal("x", provider="runninghub", name="a")  # no key: secrets only by env name
    with pytest.raises(ValueError, match="32 bytes"):
        SecretBox(base64.b64encode(b"short").decode())


def test_secret_variables_and_endpoints_are_fenced() -> None:
    assert check_secret_env("WARDROBE_VENDOR_KEY_RH_2") == "WARDROBE_VENDOR_KEY_RH_2"
    for name in ("WARDROBE_JWT_SECRET", "HOME", "WARDROBE_VENDOR_KEY_lower", "WARDROBE_VENDOR_KEY_A;B"):
        with pytest.raises(AccountConfigError):
            check_secret_env(name)
    hosts = ["www.runninghub.cn", ".tencentcloudapi.com"]
    assert check_endpoint("https://www.runninghub.cn/", hosts, https_only=True) == "https://www.runninghub.cn"
    assert check_endpoint("https://hunyuan.tencentcloudapi.com", hosts, https_only=True)
    for bad in (
        "http://www.runninghub.cn",  # production: https only
        "https://evil.example.com",
        "https://www.runninghub.cn.evil.example.com",
        "https://user:pw@www.runninghub.cn",
        "https://www.runninghub.cn/?x=1",
        "https://tencentcloudapi.com.evil.example.com",
        "ftp://www.runninghub.cn",
    ):
        with pytest.raises(AccountConfigError):
            check_endpoint(bad, hosts, https_only=True)


# -- the admin API -------------------------------------------------------------------------------


class Rig:
    def __init__(self, api: Api, peer: ServedRunningHubPeer, admin: Session) -> None:
        self.api = api
        self.peer = peer
        self.admin = admin

    async def add(self, status: int = 201, **body: Any) -> Any:
        body.setdefault("provider", "runninghub")
        body.setdefault("reason", "more capacity")
        return data(await self.api.client.post(ACCOUNTS, json=body, headers=self.admin.headers), status)


@pytest.fixture
async def rig(
    api_factory: Any, runninghub_peer: ServedRunningHubPeer, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Rig]:
    monkeypatch.setenv("WARDROBE_VENDOR_KEY_RH_B", KEY_B)
    runninghub_peer.add_key(KEY_A, cap=1)
    runninghub_peer.add_key(KEY_B, cap=2)
    port = free_port()
    api: Api = await api_factory(
        **served_settings(runninghub_peer, port),  # its key must go unused once accounts exist
        worker_concurrency=8,
        provider_secrets_key=_new_key(),
        provider_endpoint_hosts=["127.0.0.1"],
    )
    admin = await login_as(api, "admin")
    await outfit_feature(api, admin)
    async with live(api.app, port):
        yield Rig(api, runninghub_peer, admin)


async def test_accounts_are_added_sealed_listed_without_secrets_and_audited(rig: Rig) -> None:
    sealed = await rig.add(name="a", secret=KEY_A, concurrency=1, key_id="AKIDexample0000001")
    named = await rig.add(name="b", secret_env="WARDROBE_VENDOR_KEY_RH_B", concurrency=2, endpoint=rig.peer.base_url)
    assert sealed["secret_source"] == "sealed"
    assert sealed["key_id"] != "AKIDexample0000001"
    assert sealed["key_id"].startswith("AKID")
    assert named["secret_source"] == "env"
    assert named["endpoint"] == rig.peer.base_url
    operator = await login_as(rig.api, "operator")
    listing = await rig.api.client.get(ACCOUNTS, headers=operator.headers)
    assert [a["name"] for a in data(listing)] == ["a", "b"]
    assert KEY_A not in listing.text
    assert KEY_B not in listing.text
    async with unit_of_work(rig.api.infra.session_factory) as db:
        rows = {r.name: r for r in await db.scalars(select(ProviderAccount))}
        actions = [
            a.action for a in await db.scalars(select(AuditLog).where(AuditLog.target_type == "provider_account"))
        ]
    assert rows["a"].secret_sealed
    assert KEY_A not in rows["a"].secret_sealed
    assert rows["b"].secret_sealed is None
    assert actions == ["provider_account.create", "provider_account.create"]

    # Operators see; only admins add or change (they decide where a secret is sent).
    refused = await rig.api.client.post(
        ACCOUNTS,
        json={"provider": "runninghub", "name": "c", "secret": "x", "concurrency": 1, "reason": "try"},
        headers=operator.headers,
    )
    assert refused.status_code == 403
    assert refused.json()["code"] == "PERMISSION_DENIED"


async def test_bad_accounts_are_refused_with_the_field_and_nothing_is_stored(rig: Rig) -> None:
    cases = [
        ({"name": "c", "concurrency": 1}, "secret"),  # no secret at all
        ({"name": "c", "concurrency": 1, "secret": "k", "secret_env": "WARDROBE_VENDOR_KEY_X"}, "secret"),
        ({"name": "c", "concurrency": 1, "secret_env": "WARDROBE_JWT_SECRET"}, "secret_env"),
        ({"name": "c", "concurrency": 1, "secret": "k", "endpoint": "https://evil.example.com"}, "endpoint"),
        ({"name": "c", "concurrency": 1, "secret": "k", "provider": "local"}, "provider"),  # no accounts
        ({"name": "c", "concurrency": 1, "secret": "k", "provider": "nope"}, "provider"),
    ]
    for body, field in cases:
        refused = await rig.add(422, **body)
        assert [e["field"] for e in refused] == [field], (body, refused)
    for body in (
        {"name": "Bad Name", "concurrency": 1, "secret": "k"},
        {"name": "c", "concurrency": 0, "secret": "k"},
        {"name": "c", "concurrency": 1, "secret": "k", "rate": "fast"},
        {"name": "c", "concurrency": 1, "secret": "k", "surprise": True},
    ):
        await rig.add(422, **body)
    await rig.add(name="c", secret="k", concurrency=1)
    conflict = await rig.api.client.post(
        ACCOUNTS,
        json={"provider": "runninghub", "name": "c", "secret": "k", "concurrency": 1, "reason": "again"},
        headers=rig.admin.headers,
    )
    assert conflict.status_code == 409
    async with unit_of_work(rig.api.infra.session_factory) as db:
        assert [r.name for r in await db.scalars(select(ProviderAccount))] == ["c"]


# -- steps on accounts ----------------------------------------------------------------------------


async def _vendor_jobs_of_steps(api: Api) -> list[str | None]:
    async with unit_of_work(api.infra.session_factory) as db:
        return list(await db.scalars(select(TaskStep.vendor_task_id)))


async def _accounts_of_steps(api: Api) -> Counter[str]:
    async with unit_of_work(api.infra.session_factory) as db:
        return Counter(str(a) for a in await db.scalars(select(TaskStep.account)))


async def test_steps_spread_over_the_accounts_each_within_its_own_cap(rig: Rig) -> None:
    await rig.add(name="a", secret=KEY_A, concurrency=1)
    await rig.add(name="b", secret_env="WARDROBE_VENDOR_KEY_RH_B", concurrency=2, endpoint=rig.peer.base_url)
    rig.peer.auto(queued_s=0.02, running_s=1.0)  # long enough for the accounts to fill side by side
    users = [await sms_login(rig.api.client) for _ in range(3)]
    for user in users:
        await give_quota(rig.api, user.user["id"], 10)
    ids = [await outfit_task(rig.api, users[i % 3]) for i in range(12)]  # SQLite: one writer at a time
    done = await asyncio.gather(*(run_to_end(rig.api, users[i % 3], pid, within=120) for i, pid in enumerate(ids)))
    assert {t["status"] for t in done} == {"succeeded"}, done
    creates = rig.peer.creates_by_key
    assert creates[rig.peer.api_key] == 0  # the key from settings is not used once accounts exist
    assert creates[KEY_A] + creates[KEY_B] == 12
    assert creates[KEY_A] > 0
    assert creates[KEY_B] > 0
    assert rig.peer.peak_in_flight[KEY_A] <= 1
    assert rig.peer.peak_in_flight[KEY_B] <= 2
    assert rig.peer.peak_in_flight[KEY_A] + rig.peer.peak_in_flight[KEY_B] >= 2  # used side by side
    assert rig.peer.refusals_with(421) == []
    # Each step records its account, and the peer agrees on who made each task.
    assert await _accounts_of_steps(rig.api) == Counter({"a": creates[KEY_A], "b": creates[KEY_B]})

    view = data(await rig.api.client.get("/api/v1/admin/providers", headers=rig.admin.headers))
    [runninghub] = [p for p in view if p["slug"] == "runninghub"]
    assert [(a["name"], a["in_use"], a["concurrency"]) for a in runninghub["accounts"]] == [("a", 0, 1), ("b", 0, 2)]
    assert all(a["health"]["state"] == "up" for a in runninghub["accounts"])


async def test_a_broken_account_is_skipped_and_an_account_switched_off_gets_no_new_work(rig: Rig) -> None:
    await rig.add(name="bad", secret="wardrobe-test-runninghub-key-bad", concurrency=5)  # unknown: 802
    good = await rig.add(name="b", secret_env="WARDROBE_VENDOR_KEY_RH_B", concurrency=2)
    rig.peer.auto()
    user = await sms_login(rig.api.client)
    await give_quota(rig.api, user.user["id"], 10)
    for _ in range(3):
        task = await run_to_end(rig.api, user, await outfit_task(rig.api, user), within=60)
        assert task["status"] == "succeeded", task
    assert rig.peer.creates_by_key[KEY_B] == 3
    assert len(rig.peer.refusals_with(802)) >= 1  # the bad key was tried, and failed over
    assert (await _accounts_of_steps(rig.api)) == Counter({"b": 3})

    # Switched off (and the bad one too): nothing is left, so the step fails cleanly and is refunded.
    for account_id in (good["id"], (await _id_of(rig.api, "bad"))):
        data(
            await rig.api.client.patch(
                f"{ACCOUNTS}/{account_id}", json={"enabled": False, "reason": "paused"}, headers=rig.admin.headers
            )
        )
    before = rig.peer.creates_by_key[KEY_B]
    task = await run_to_end(rig.api, user, await outfit_task(rig.api, user), within=60)
    assert task["status"] == "failed"
    assert rig.peer.creates_by_key[KEY_B] == before


async def _id_of(api: Api, name: str) -> int:
    async with unit_of_work(api.infra.session_factory) as db:
        return int((await db.scalars(select(ProviderAccount.id).where(ProviderAccount.name == name))).one())


async def test_a_job_created_with_the_settings_key_is_resumed_with_it_after_accounts_appear(rig: Rig) -> None:
    """Accounts added while a vendor job made with the key from settings is in flight: the run that
    resumes it (its worker lost) must poll with that key — the vendor knows the job only by it."""
    user = await sms_login(rig.api.client)
    await give_quota(rig.api, user.user["id"], 1)
    public_id = await outfit_task(rig.api, user)

    async def recorded() -> bool:
        # The job's id stored, not merely the job made at the peer: a worker lost between the two
        # leaves a job nobody knows of, and the resumed run rightly submits anew (on an account).
        async with unit_of_work(rig.api.infra.session_factory) as db:
            job = await db.scalar(select(TaskStep.vendor_task_id).where(TaskStep.step_id == "change"))
        return job is not None

    await wait_until(recorded, within=30)
    [vendor_task] = rig.peer.tasks_of(rig.peer.api_key)
    assert await _vendor_jobs_of_steps(rig.api) == [vendor_task.task_id]
    await rig.add(name="b", secret_env="WARDROBE_VENDOR_KEY_RH_B", concurrency=2)
    runtime = rig.api.infra.runtime
    [run] = list(runtime._runs)
    run.cancel()  # the worker running the step is lost; the task is handed back and resumed
    await asyncio.wait([run], timeout=10)
    rig.peer.start(vendor_task.task_id)
    rig.peer.succeed(vendor_task.task_id)
    task = await run_to_end(rig.api, user, public_id, within=60)
    assert task["status"] == "succeeded", task
    assert rig.peer.creates_by_key[rig.peer.api_key] == 1
    assert rig.peer.creates_by_key[KEY_B] == 0
    assert rig.peer.refusals_with(807) == []  # never polled with the account's key
    assert await _accounts_of_steps(rig.api) == Counter({"None": 1})
