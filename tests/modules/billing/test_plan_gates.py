"""Plan-gated features open to members whose plan's SKU or tier the feature requires, or whose
plan lists the feature; an edit of the plan takes effect at once, and an ended membership opens
nothing."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from tests.conftest import Api
from tests.fixtures.auth import Session, data, login_as, sms_login
from tests.fixtures.tasks import give_quota, make_feature, step
from tests.modules.billing.plan_helpers import create, membership, patch
from wardrobe.core.db import unit_of_work
from wardrobe.models import QuotaAccount
from wardrobe.models.base import utcnow
from wardrobe.modules.billing.service import membership_changed

INSTANT = [step("only", provider="instant", action="passthrough")]


async def _visible(api: Api, user: Session) -> set[str]:
    return {f["key"] for f in data(await api.client.get("/api/v1/features", headers=user.headers))}


async def _run(api: Api, user: Session, feature: str) -> tuple[int, str]:
    resp = await api.client.post(
        "/api/v1/tasks", json={"feature": feature, "inputs": {"key": "k"}}, headers=user.headers
    )
    return resp.status_code, resp.json()["code"]


async def _member_until(api: Api, user: Session, sku: str, days: float) -> None:
    async with unit_of_work(api.infra.session_factory) as db:
        await db.execute(
            update(QuotaAccount)
            .where(QuotaAccount.user_id == user.user["id"])
            .values(membership_sku=sku, membership_expires_at=utcnow() + timedelta(days=days))
        )
        membership_changed(db, api.infra.cache, user.user["id"])


async def test_a_membership_opens_what_its_sku_tier_or_features_name(api: Api) -> None:
    admin = await login_as(api, "admin")
    outputs = {"r": "$steps.only.key"}
    await make_feature(api, admin, "open_fx", INSTANT, outputs)
    await make_feature(api, admin, "tier_fx", INSTANT, outputs, plan_required="gold,vip")
    await make_feature(api, admin, "sku_fx", INSTANT, outputs, plan_required="vip-month")
    await make_feature(api, admin, "listed_fx", INSTANT, outputs, plan_required="platinum")
    await make_feature(api, admin, "listed_wl", INSTANT, outputs, access_scope="whitelist")
    await create(api, admin, membership())
    outsider, member = await sms_login(api.client), await sms_login(api.client)
    await give_quota(api, member.user["id"], 5)
    await _member_until(api, member, "vip-month", 30)

    assert await _visible(api, outsider) == {"open_fx"}
    assert await _run(api, outsider, "tier_fx") == (403, "FEATURE_UNAVAILABLE")
    assert await _visible(api, member) == {"open_fx", "tier_fx", "sku_fx"}
    assert await _run(api, member, "tier_fx") == (202, "OK")
    assert await _run(api, member, "listed_fx") == (403, "FEATURE_UNAVAILABLE")

    # The plan now lists the feature: its members use it from the next request. A whitelist
    # feature stays the whitelist's.
    await patch(api, admin, "vip-month", features=["listed_fx", "listed_wl"])
    assert await _visible(api, member) == {"open_fx", "tier_fx", "sku_fx", "listed_fx"}
    assert await _run(api, member, "listed_fx") == (202, "OK")
    assert await _visible(api, outsider) == {"open_fx"}

    # Another tier: what the tier opened closes; what names the SKU or is listed stays.
    await patch(api, admin, "vip-month", tier="basic")
    assert await _visible(api, member) == {"open_fx", "sku_fx", "listed_fx"}
    assert await _run(api, member, "tier_fx") == (403, "FEATURE_UNAVAILABLE")

    # An ended membership opens nothing, even before the expiry job clears it.
    await _member_until(api, member, "vip-month", -1 / 86400)
    assert await _visible(api, member) == {"open_fx"}
    assert await _run(api, member, "listed_fx") == (403, "FEATURE_UNAVAILABLE")
