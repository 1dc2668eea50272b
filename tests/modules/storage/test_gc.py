"""Orphan cleanup: never a referenced object, never one inside the grace period; everything
else under uploads/ and results/ goes, in delete calls of at most 1000 keys."""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update

from tests.conftest import Api
from tests.fixtures.auth import data, login_as, sms_login
from tests.fixtures.tasks import make_feature, step
from tests.peers.s3_fixtures import S3Peer
from wardrobe.core.db import unit_of_work
from wardrobe.models import Task, TaskStep, User, VerifiedUpload
from wardrobe.modules.storage import gc
from wardrobe.modules.storage.backend import LocalObjectStorage
from wardrobe.modules.storage.s3 import S3ObjectStorage

DAY = 86400.0


def _storage(root: Path) -> LocalObjectStorage:
    return LocalObjectStorage(root, "", b"k" * 32)


async def _put(storage: LocalObjectStorage, key: str, age_days: float, size: int = 10) -> None:
    await storage.put(key, b"x" * size, "image/png")
    stamp = time.time() - age_days * DAY
    os.utime(storage._data_path(key), (stamp, stamp))


class _Calls:
    """Counts delete_many calls and their sizes (the storage really deletes)."""

    def __init__(self, storage: LocalObjectStorage) -> None:
        self.sizes: list[int] = []
        real = storage.delete_many

        async def delete_many(keys: Any) -> int:
            batch = list(keys)
            self.sizes.append(len(batch))
            return await real(batch)

        storage.delete_many = delete_many  # type: ignore[method-assign]


objects = st.lists(
    st.tuples(
        st.integers(min_value=1, max_value=3),  # owner
        st.sampled_from(["uploads", "results"]),
        st.floats(min_value=0, max_value=30),  # age in days
        st.booleans(),  # referenced
    ),
    max_size=25,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(objects, st.floats(min_value=0.5, max_value=20))
def test_gc_deletes_exactly_the_old_unreferenced_objects(
    spec: list[tuple[int, str, float, bool]], grace: float
) -> None:
    async def run() -> None:
        with tempfile.TemporaryDirectory() as root:
            storage = _storage(Path(root))
            refs: dict[int, set[str]] = {}
            expected_left: set[str] = set()
            for n, (owner, area, age, referenced) in enumerate(spec):
                key = f"{area}/{owner}/2026/11/o{n}.png"
                await _put(storage, key, age)
                if referenced:
                    refs.setdefault(owner, set()).add(key)
                # A margin around the cutoff: an object aged within seconds of it may go either way.
                if referenced or age < grace - 0.001:
                    expected_left.add(key)
            await _put(storage, "tmp/2026/11/01/x.png", 40)  # not gc's: the lifecycle rule's

            async def references_of(user_id: int) -> set[str]:
                return refs.get(user_id, set())

            report = await gc.collect_garbage(storage, references_of, grace=timedelta(days=grace))
            left = {info.key for area in ("uploads/", "results/") for info in await storage.list(area)}
            borderline = {
                f"{area}/{owner}/2026/11/o{n}.png"
                for n, (owner, area, age, referenced) in enumerate(spec)
                if not referenced and abs(age - grace) <= 0.001
            }
            assert expected_left <= left
            assert left - expected_left <= borderline
            assert report.deleted == len(spec) - len(left)
            assert await storage.head("tmp/2026/11/01/x.png") is not None

    asyncio.run(run())


async def test_a_1001_object_cleanup_is_two_delete_calls_and_a_dry_run_deletes_nothing(tmp_path: Path) -> None:
    storage = _storage(tmp_path)
    for n in range(1001):
        await _put(storage, f"uploads/7/2026/11/o{n:04d}.png", 10, size=3)

    async def nothing(_: int) -> set[str]:
        return set()

    calls = _Calls(storage)
    dry = await gc.collect_garbage(storage, nothing, grace=timedelta(days=1), dry_run=True)
    assert (dry.deleted, dry.bytes_reclaimed, calls.sizes) == (1001, 3003, [])
    assert len(await storage.list("uploads/", 2000)) == 1001
    report = await gc.collect_garbage(storage, nothing, grace=timedelta(days=1))
    assert calls.sizes == [1000, 1]
    assert (report.deleted, report.bytes_reclaimed, report.delete_calls) == (1001, 3003, 2)
    assert await storage.list("uploads/") == []


async def test_references_come_from_tasks_steps_and_the_avatar(
    api_factory: Any, fault_vendor: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WARDROBE_TEST_FAULT_VENDOR_URL", fault_vendor.base_url)
    # The task stays queued: nothing runs it here.
    api: Api = await api_factory(extra_providers=["tests.providers.fault:build"], worker_in_process=False)
    admin = await login_as(api, "admin")
    await make_feature(api, admin, "refs", [step("only")], {"r": "$steps.only.result"})
    user = await sms_login(api.client)
    uid = user.user["id"]
    used = f"uploads/{uid}/2026/11/used.png"
    made = f"results/{uid}/2026/11/made.png"
    step_made = f"results/{uid}/2026/11/step.png"
    avatar = f"uploads/{uid}/2026/11/face.png"
    created = await api.client.post(
        "/api/v1/tasks", json={"feature": "refs", "inputs": {"key": used}}, headers=user.headers
    )
    public_id = data(created, 202)["id"]
    async with unit_of_work(api.infra.session_factory) as db:
        task = (await db.scalars(select(Task).where(Task.public_id == public_id))).one()
        task.outputs = [{"name": "image", "object_key": made}, {"name": "n", "value": "uploads/x/../y"}]
        db.add(TaskStep(task_id=task.id, step_id="only", outputs={"image": {"object_key": step_made}}))
        await db.execute(
            update(User).where(User.id == uid).values(avatar_url=f"/api/v1/storage/objects/{avatar}?sig=abc")
        )
    references = await gc.database_references(api.infra.session_factory)(uid)
    assert references == {used, made, step_made, avatar}
    assert await gc.database_references(api.infra.session_factory)(uid + 1000) == set()


async def test_on_the_s3_peer_orphans_and_their_upload_records_go_in_batches(
    api: Api, s3_peer: S3Peer, s3_storage: S3ObjectStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """COS-like storage end to end: the sweep lists the bucket over HTTP, deletes the old orphans in
    DeleteObjects calls of at most DELETE_BATCH keys, and drops their verified-upload records."""
    monkeypatch.setattr(gc, "DELETE_BATCH", 4)  # 9 orphans: calls of 4, 4 and 1
    user = await sms_login(api.client)
    uid = user.user["id"]
    orphans = [f"uploads/{uid}/2026/01/o{n}.png" for n in range(9)]
    kept = f"uploads/{uid}/2026/01/used.png"
    s3_peer.seed([*orphans, kept], b"x" * 5)
    async with unit_of_work(api.infra.session_factory) as db:
        db.add_all(
            VerifiedUpload(object_key=key, user_id=uid, size=5, content_type="image/png", width=1, height=1)
            for key in [*orphans, kept]
        )

    async def references_of(user_id: int) -> set[str]:
        return {kept} if user_id == uid else set()

    s3_peer.requests.clear()
    report = await gc.collect_garbage(
        s3_storage,
        references_of,
        grace=timedelta(days=1),
        now=datetime.now(UTC) + timedelta(days=30),
        forget=gc.database_forget(api.infra.session_factory),
    )
    assert (report.deleted, report.bytes_reclaimed, report.kept_referenced) == (9, 45, 1)
    deletes = [r for r in s3_peer.requests if r.method == "POST" and "delete" in r.query]
    assert [r.body.count(b"<Key>") for r in deletes] == [4, 4, 1]
    assert [info.key for info in await s3_storage.list("uploads/")] == [kept]
    async with unit_of_work(api.infra.session_factory) as db:
        assert list(await db.scalars(select(VerifiedUpload.object_key))) == [kept]
