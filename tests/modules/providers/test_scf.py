"""The SCF provider against the Tencent Cloud peer over real HTTP, and SCF steps through the engine
with the function's signed result called back to the app served on a real port."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import select

from tests.conftest import Api
from tests.fixtures.auth import data, login_as, sms_login
from tests.fixtures.realtime import live
from tests.fixtures.tasks import free_port, give_quota, make_feature, run_to_end, step
from tests.peers.fixtures import ServedTencentCloudPeer
from tests.peers.tencent_cloud import (
    TEST_ACCOUNT_SECRET_ID,
    TEST_ACCOUNT_SECRET_KEY,
    TEST_SECRET_ID,
    TEST_SECRET_KEY,
)
from tests.peers.tencent_scf import TEST_SCF_CALLBACK_KEY, TEST_SCF_FUNCTION
from wardrobe.core import tracing
from wardrobe.core.db import unit_of_work
from wardrobe.models import LedgerEntry, TaskStep, VendorCallback
from wardrobe.modules.providers.accounts import Account
from wardrobe.modules.providers.adapters.scf import UNKNOWN_PREFIX, ScfFunction, ScfProvider, classify, sign_result
from wardrobe.modules.providers.base import AsyncProvider, JobState, JobStatus, ProviderError, StepContext
from wardrobe.modules.providers.callbacks import CallbackForged, callback_payloads, callback_url
from wardrobe.modules.storage.keys import RESULTS
from wardrobe.wiring import build_vendor_outputs

CTX = StepContext(task_id="task1", user_id=7, step_id="fn", attempt=1)
REF = "task1.fn"
ProviderFactory = Callable[..., ScfProvider]


class Inbox:
    """The callback inbox as the provider sees it, filled by the test (the endpoint's part)."""

    def __init__(self) -> None:
        self.rows: dict[str, list[dict[str, Any]]] = {}

    async def __call__(self, ref: str) -> Sequence[Mapping[str, Any]]:
        return self.rows.get(ref, [])

    def put(self, ref: str, body: bytes) -> None:
        self.rows.setdefault(ref, []).append(json.loads(body))


@pytest.fixture
async def make_provider(tencent_peer: ServedTencentCloudPeer) -> AsyncIterator[ProviderFactory]:
    made: list[ScfProvider] = []

    def make(inbox: Inbox | None = None, **overrides: Any) -> ScfProvider:
        arguments: dict[str, Any] = {
            "secret_id": TEST_SECRET_ID,
            "secret_key": TEST_SECRET_KEY,
            "functions": {"outfit_change": ScfFunction(TEST_SCF_FUNCTION, image_inputs=frozenset({"person"}))},
            "callback_key": TEST_SCF_CALLBACK_KEY,
            "callback_url": lambda ref: f"http://127.0.0.1:9/api/v1/callbacks/scf/{ref}?sig=x",
            "inbox": inbox or Inbox(),
            "endpoint": tencent_peer.host_port,
            "scheme": "http",
            "timeout": 5.0,
            **overrides,
        }
        provider = ScfProvider(**arguments)
        made.append(provider)
        return provider

    tencent_peer.scf.auto = False  # the tests deliver (or not) themselves
    yield make
    for provider in made:
        await provider.aclose()


async def test_submit_invokes_async_with_the_event_and_poll_reads_the_signed_result(
    tencent_peer: ServedTencentCloudPeer, make_provider: ProviderFactory
) -> None:
    inbox = Inbox()
    provider = make_provider(inbox, input_url=lambda key: f"https://files.example.test/{key}")

    with tracing.bound("trace-scf-1"):
        job_id = await provider.submit("outfit_change", {"person": "uploads/7/a.png", "style": "casual"}, CTX)
    before = await provider.poll(job_id, CTX)
    inbox.put(REF, tencent_peer.scf.body_for(job_id))
    after = await provider.poll(job_id, CTX)

    assert isinstance(provider, AsyncProvider)
    event = tencent_peer.scf.invocation(job_id).event
    assert event["ref"] == REF
    assert event["invocation"] == f"{REF}#1"
    assert event["callback_url"].startswith("http://127.0.0.1:9/api/v1/callbacks/scf/task1.fn?sig=")
    assert event["inputs"] == {
        "person": {"object_key": "uploads/7/a.png", "url": "https://files.example.test/uploads/7/a.png"},
        "style": "casual",
    }
    assert before == JobStatus(JobState.RUNNING)  # SCF says RUNNING and no callback yet
    assert after.state is JobState.SUCCEEDED
    assert after.outputs["images"][0].endswith(f"/scf/results/{job_id}.png")
    assert after.outputs["vendor_task_id"] == job_id
    assert tencent_peer.action_calls["GetAsyncEventStatus"] == 1
    # The trace id went along, outside the signature (which the peer verified): only the submit
    # ran under one here.
    assert ("Invoke", "trace-scf-1") in tencent_peer.request_ids
    assert ("GetAsyncEventStatus", "") in tencent_peer.request_ids


async def test_parse_callback_refuses_forged_and_tampered_results(
    tencent_peer: ServedTencentCloudPeer, make_provider: ProviderFactory
) -> None:
    provider = make_provider()
    job_id = await provider.submit("outfit_change", {"person": "uploads/7/a.png"}, CTX)

    genuine = provider.parse_callback(tencent_peer.scf.body_for(job_id))
    with pytest.raises(CallbackForged):
        provider.parse_callback(tencent_peer.scf.body_for(job_id, key="guessed-key"))
    with pytest.raises(CallbackForged):
        provider.parse_callback(tencent_peer.scf.body_for(job_id, tamper=True))
    with pytest.raises(ValueError, match="payload, signature"):
        provider.parse_callback(b'{"status": "succeeded"}')

    assert (genuine.event_id, genuine.vendor_task_id, genuine.event_type) == (
        f"{job_id}:succeeded",
        job_id,
        "succeeded",
    )


async def test_poll_ignores_forged_stale_and_foreign_results(
    tencent_peer: ServedTencentCloudPeer, make_provider: ProviderFactory
) -> None:
    inbox = Inbox()
    provider = make_provider(inbox, status_query=False)
    earlier = await provider.submit("outfit_change", {"person": "k"}, CTX)
    job_id = await provider.submit("outfit_change", {"person": "k"}, StepContext("task1", 7, "fn", 2))
    forged = json.loads(tencent_peer.scf.body_for(job_id, status="failed", error="nope"))
    forged["signature"] = sign_result("guessed-key", forged["payload"])
    inbox.rows[REF] = [
        forged,  # what a forger got into the inbox: never believed
        json.loads(tencent_peer.scf.body_for(earlier)),  # attempt 1's result, late
        json.loads(tencent_peer.scf.body_for(job_id, ref="task2.fn")),  # another step's
    ]
    ctx2 = StepContext("task1", 7, "fn", 2)

    pending = await provider.poll(job_id, ctx2)
    inbox.put(REF, tencent_peer.scf.body_for(job_id, status="failed", error="content_blocked", outputs={}))
    inbox.put(REF, tencent_peer.scf.body_for(job_id))  # out of order: the success wins anyway
    done = await provider.poll(job_id, ctx2)

    assert pending == JobStatus(JobState.RUNNING)
    assert done.state is JobState.SUCCEEDED


async def test_a_failed_result_fails_the_step_with_its_code(
    tencent_peer: ServedTencentCloudPeer, make_provider: ProviderFactory
) -> None:
    inbox = Inbox()
    provider = make_provider(inbox)
    job_id = await provider.submit("outfit_change", {"person": "unsafe.png"}, CTX)
    inbox.put(REF, tencent_peer.scf.body_for(job_id))

    assert await provider.poll(job_id, CTX) == JobStatus(JobState.FAILED, error_code="content_blocked")


async def test_an_invocation_scf_reports_failed_ends_the_step_without_a_callback(
    tencent_peer: ServedTencentCloudPeer, make_provider: ProviderFactory
) -> None:
    tencent_peer.scf.abort_next()
    provider = make_provider()

    job_id = await provider.submit("outfit_change", {"person": "k"}, CTX)

    assert await provider.poll(job_id, CTX) == JobStatus(JobState.FAILED, error_code="function_failed")


async def test_an_account_invokes_and_queries_as_itself_and_results_stay_signed_with_our_key(
    tencent_peer: ServedTencentCloudPeer, make_provider: ProviderFactory
) -> None:
    inbox = Inbox()
    # The provider's own key is unknown to the peer and its endpoint closed: only the account works.
    provider = make_provider(inbox, secret_id="AKID-unknown-test-id", endpoint=f"127.0.0.1:{free_port()}")
    account = Account(
        "scf",
        "second",
        1,
        secret=TEST_ACCOUNT_SECRET_KEY,
        key_id=TEST_ACCOUNT_SECRET_ID,
        endpoint=tencent_peer.base_url,
    )
    ctx = replace(CTX, account=account)

    job_id = await provider.submit("outfit_change", {"person": "k"}, ctx)
    running = await provider.poll(job_id, ctx)  # SCF's status query, answered to the account only
    with pytest.raises(ProviderError) as wrong_secret:
        await provider.poll(job_id, replace(ctx, account=replace(account, secret="wrong-key")))
    inbox.put(REF, tencent_peer.scf.body_for(job_id))  # signed with the deployment's callback key
    done = await provider.poll(job_id, ctx)

    assert tencent_peer.scf.invocation(job_id).account == TEST_ACCOUNT_SECRET_ID
    assert running == JobStatus(JobState.RUNNING)
    assert tencent_peer.action_calls["GetAsyncEventStatus"] == 1
    assert (wrong_secret.value.code, wrong_secret.value.broken) == ("provider_auth_failed", True)
    assert done.state is JobState.SUCCEEDED


async def test_a_lost_invoke_answer_is_never_repeated_and_the_callback_still_matches(
    tencent_peer: ServedTencentCloudPeer, make_provider: ProviderFactory
) -> None:
    inbox = Inbox()
    tencent_peer.drop_answer_next("Invoke")
    provider = make_provider(inbox, timeout=0.5)

    job_id = await provider.submit("outfit_change", {"person": "k"}, CTX)
    tencent_peer.release_dropped_answers()
    pending = await provider.poll(job_id, CTX)
    [request_id] = tencent_peer.scf.request_ids()
    inbox.put(REF, tencent_peer.scf.body_for(request_id))
    done = await provider.poll(job_id, CTX)

    assert job_id == UNKNOWN_PREFIX + REF
    assert pending == JobStatus(JobState.RUNNING)
    assert done.state is JobState.SUCCEEDED
    assert done.outputs["vendor_task_id"] == request_id
    assert tencent_peer.action_calls["Invoke"] == 1
    assert tencent_peer.action_calls["GetAsyncEventStatus"] == 0  # no id to ask about


@pytest.mark.parametrize(
    ("vendor_code", "code", "retryable", "broken"),
    [
        ("ResourceNotFound.Function", "provider_misconfigured", False, True),
        ("ResourceNotFound.Namespace", "provider_misconfigured", False, True),
        ("FailedOperation.InsufficientBalance", "provider_account_unusable", False, True),
        ("LimitExceeded.UserTotalConcurrencyMemory", "provider_busy", True, False),
        ("RequestLimitExceeded", "provider_busy", True, False),
        ("InternalError.System", "vendor_unavailable", True, False),
        ("InvalidParameterValue.ClientContext", "bad_input", False, False),
    ],
)
async def test_invoke_errors_are_classified(
    tencent_peer: ServedTencentCloudPeer,
    make_provider: ProviderFactory,
    vendor_code: str,
    code: str,
    retryable: bool,
    broken: bool,
) -> None:
    tencent_peer.scf.fail_next_invoke(vendor_code)

    with pytest.raises(ProviderError) as failure:
        await make_provider().submit("outfit_change", {"person": "k"}, CTX)

    assert (failure.value.code, failure.value.retryable, failure.value.broken) == (code, retryable, broken)
    assert classify(vendor_code) == (code, retryable)
    assert tencent_peer.scf.invocations == {}


async def test_a_missing_function_is_the_peers_real_error(
    tencent_peer: ServedTencentCloudPeer, make_provider: ProviderFactory
) -> None:
    provider = make_provider(functions={"outfit_change": ScfFunction("no-such-fn")})

    with pytest.raises(ProviderError) as failure:
        await provider.submit("outfit_change", {}, CTX)

    assert (failure.value.code, failure.value.broken, failure.value.message) == (
        "provider_misconfigured",
        True,
        "ResourceNotFound.Function",
    )


async def test_without_a_callback_url_nothing_is_invoked(
    tencent_peer: ServedTencentCloudPeer, make_provider: ProviderFactory
) -> None:
    with pytest.raises(ProviderError) as failure:
        await make_provider(callback_url=lambda ref: None).submit("outfit_change", {}, CTX)

    assert (failure.value.code, failure.value.broken) == ("provider_misconfigured", True)
    assert tencent_peer.requests_received == 0


# -- through the engine ----------------------------------------------------------------------


class Rig:
    def __init__(self, api: Api, peer: ServedTencentCloudPeer) -> None:
        self.api = api
        self.peer = peer


@pytest.fixture
async def rig(api_factory: Any, tencent_peer: ServedTencentCloudPeer) -> AsyncIterator[Rig]:
    port = free_port()
    api: Api = await api_factory(
        worker_in_process=True,
        vendor_callback_base_url=f"http://127.0.0.1:{port}",
        vendor_output_allow_private=[tencent_peer.host_port],  # the peer serves results on loopback
        task_heartbeat_seconds=0.1,
        task_lease_seconds=5,
    )
    settings, sessions = api.infra.settings, api.infra.session_factory

    async def inbox(ref: str) -> list[dict[str, Any]]:
        return await callback_payloads(sessions, "scf", ref)

    provider = ScfProvider(  # wired as app.py will from settings
        secret_id=TEST_SECRET_ID,
        secret_key=TEST_SECRET_KEY,
        functions={"stylize": ScfFunction(TEST_SCF_FUNCTION)},
        callback_key=TEST_SCF_CALLBACK_KEY,
        callback_url=lambda ref: callback_url(settings, "scf", ref),
        inbox=inbox,
        outputs=build_vendor_outputs(settings, api.infra.storage),
        endpoint=tencent_peer.host_port,
        scheme="http",
        timeout=5.0,
    )
    api.infra.providers.register(provider)
    await make_feature(
        api,
        await login_as(api, "admin"),
        "scf_stylize",
        [
            step(
                "fn",
                action="stylize",
                kind="scf",
                provider="scf",
                inputs={"prompt": "$inputs.key"},
                poll_interval_seconds=0.05,
                timeout_seconds=30,
            )
        ],
        {"image": "$steps.fn.image"},
    )
    async with live(api.app, port):
        yield Rig(api, tencent_peer)
    await provider.aclose()


async def _create(rig: Rig, prompt: str) -> tuple[Any, str]:
    user = await sms_login(rig.api.client)
    await give_quota(rig.api, user.user["id"], 5)
    created = await rig.api.client.post(
        "/api/v1/tasks", json={"feature": "scf_stylize", "inputs": {"key": prompt}}, headers=user.headers
    )
    return user, str(data(created, 202)["id"])


async def _callbacks(api: Api, public_id: str) -> list[VendorCallback]:
    async with unit_of_work(api.infra.session_factory) as db:
        found = await db.scalars(
            select(VendorCallback).where(VendorCallback.provider == "scf", VendorCallback.ref == f"{public_id}.fn")
        )
        return list(found)


async def _result_objects(api: Api, user_id: int) -> list[str]:
    return [info.key for info in await api.infra.storage.list(f"{RESULTS}/{user_id}/", limit=100)]


async def test_an_scf_step_completes_through_a_signed_callback(rig: Rig) -> None:
    user, public_id = await _create(rig, "a linen shirt")

    task = await run_to_end(rig.api, user, public_id)

    assert task["status"] == "succeeded", task
    [output] = task["outputs"]
    assert output["url"].startswith(f"/api/v1/storage/objects/results/{user.user['id']}/")
    assert (await rig.api.client.get(output["url"])).headers["content-type"] == "image/png"
    [delivery] = rig.peer.scf.deliveries
    assert (delivery.kind, delivery.status_code) == ("result", 200)
    [callback] = await _callbacks(rig.api, public_id)
    assert (callback.ref, callback.event_type, callback.deliveries) == (f"{public_id}.fn", "succeeded", 1)


async def test_a_forged_callback_changes_nothing(rig: Rig) -> None:
    rig.peer.scf.auto = False
    user, public_id = await _create(rig, "a linen shirt")
    await rig.peer.scf.changes.wait_for(lambda: bool(rig.peer.scf.invocations), 30)
    [request_id] = rig.peer.scf.request_ids()

    forged = await rig.peer.scf.deliver(request_id, kind="forged", key="guessed-key")
    tampered = await rig.peer.scf.deliver(request_id, kind="tampered", tamper=True)
    still = data(await rig.api.client.get(f"/api/v1/tasks/{public_id}", headers=user.headers))
    stored_meanwhile = await _callbacks(rig.api, public_id)
    genuine = await rig.peer.scf.deliver(request_id)
    task = await run_to_end(rig.api, user, public_id)

    assert (forged, tampered, genuine) == (403, 403, 200)
    assert still["status"] in ("queued", "running")
    assert stored_meanwhile == []
    assert task["status"] == "succeeded"


async def test_duplicate_callbacks_store_outputs_once(rig: Rig) -> None:
    rig.peer.scf.auto = False
    user, public_id = await _create(rig, "a linen shirt")
    await rig.peer.scf.changes.wait_for(lambda: bool(rig.peer.scf.invocations), 30)
    [request_id] = rig.peer.scf.request_ids()

    answers = [await rig.peer.scf.deliver(request_id, kind=kind) for kind in ("result", "duplicate", "duplicate")]
    task = await run_to_end(rig.api, user, public_id)
    late = await rig.peer.scf.deliver(request_id, kind="duplicate")

    assert answers == [200, 200, 200]
    assert late == 200
    assert task["status"] == "succeeded"
    [callback] = await _callbacks(rig.api, public_id)
    assert callback.deliveries == 4
    assert len(await _result_objects(rig.api, user.user["id"])) == 1


async def test_a_failed_function_fails_the_task_and_refunds_once(rig: Rig) -> None:
    user, public_id = await _create(rig, "something unsafe")

    task = await run_to_end(rig.api, user, public_id)

    assert task["status"] == "failed"
    assert task["refunded"] is True
    async with unit_of_work(rig.api.infra.session_factory) as db:
        row = (await db.scalars(select(TaskStep).where(TaskStep.step_id == "fn"))).one()
        kinds = sorted(await db.scalars(select(LedgerEntry.kind).where(LedgerEntry.ref == f"task:{public_id}")))
    assert (row.provider, row.error) == ("scf", "content_blocked")
    assert kinds == ["cancel", "reserve"]
    assert rig.peer.action_calls["Invoke"] == 1
