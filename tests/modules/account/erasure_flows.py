"""Steps shared by the deletion, export and retention tests: image tasks on the local provider,
held tasks on the fault vendor, and the proofs a deletion asks for."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import func, select

from tests.conftest import Api
from tests.fixtures.auth import Session, data
from tests.fixtures.tasks import internal_id, make_feature, run_to_end, step
from tests.modules.providers.images import encode, subject_on_background
from tests.test_demo_flow import _upload
from wardrobe.core.db import unit_of_work
from wardrobe.core.ratelimit import per_seconds
from wardrobe.models import LedgerEntry, PendingObjectDeletion

IMAGE_FORM = {
    "type": "object",
    "additionalProperties": False,
    "required": ["image"],
    "properties": {"image": {"type": "string", "format": "image-key", "maxLength": 256}},
}


async def thumbnail_feature(api: Api, admin: Session) -> None:
    """``thumb``: one local step that stores a result image."""
    await make_feature(
        api,
        admin,
        "thumb",
        [step("small", provider="local", action="thumbnail", inputs={"image": "$inputs.image"})],
        {"image": "$steps.small.image"},
        form_schema=IMAGE_FORM,
    )


async def held_feature(api: Api, admin: Session) -> None:
    """``hold``: one fault-vendor step that waits as long as the vendor holds its key."""
    await make_feature(api, admin, "hold", [step("only", timeout_seconds=60)], {"r": "$steps.only.result"})


async def upload_photo(api: Api, user: Session, seed: int = 0) -> str:
    photo, _ = subject_on_background(96 + seed, 64)
    return await _upload(api, user, encode(photo))


async def create(api: Api, user: Session, feature: str, inputs: dict[str, Any], idem: str | None = None) -> Any:
    headers = {**user.headers, **({"Idempotency-Key": idem} if idem else {})}
    resp = await api.client.post("/api/v1/tasks", json={"feature": feature, "inputs": inputs}, headers=headers)
    return data(resp, 202)


async def finished_thumbnail(api: Api, user: Session, upload: str) -> dict[str, Any]:
    created = await create(api, user, "thumb", {"image": upload})
    task = await run_to_end(api, user, created["id"], within=60)
    assert task["status"] == "succeeded", task
    return task


async def clear_cooldown(api: Api, phone: str) -> None:
    """A code went to ``phone`` seconds ago: end its resend cooldown (waiting it out would add a
    minute to every test)."""
    await api.infra.limiter.clear([per_seconds(1, api.settings.sms_cooldown_seconds)], "sms-cooldown", phone)


async def delete_code(api: Api, user: Session) -> str:
    """An SMS code for ``delete_account``, asked for as clients will: with the bearer token and
    the account's own phone."""
    await clear_cooldown(api, user.phone)
    resp = await api.client.post(
        "/api/v1/auth/sms-codes", json={"phone": user.phone, "purpose": "delete_account"}, headers=user.headers
    )
    code: str = data(resp)["debug_code"]
    return code


async def delete_account(api: Api, user: Session, **proof: str) -> httpx.Response:
    return await api.client.request("DELETE", "/api/v1/users/me", json=proof, headers=user.headers)


async def ledger_kinds(api: Api, ref: str) -> list[str]:
    async with unit_of_work(api.infra.session_factory) as db:
        return sorted((await db.scalars(select(LedgerEntry.kind).where(LedgerEntry.ref == ref))).all())


async def task_ref(api: Api, public_id: str) -> str:
    await internal_id(api, public_id)  # it exists
    return f"task:{public_id}"


async def pending_rows(api: Api, user_id: int) -> int:
    async with unit_of_work(api.infra.session_factory) as db:
        count = await db.scalar(
            select(func.count()).select_from(PendingObjectDeletion).where(PendingObjectDeletion.user_id == user_id)
        )
    return int(count or 0)


async def stored_keys(api: Api, user_id: int) -> list[str]:
    storage = api.infra.storage
    found = []
    for prefix in (f"uploads/{user_id}/", f"results/{user_id}/"):
        found += [info.key for info in await storage.list(prefix)]
    return found
