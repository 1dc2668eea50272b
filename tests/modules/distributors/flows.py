"""Steps of the distributor tests."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from tests.conftest import Api
from tests.fixtures.auth import Session, data
from wardrobe.models import AuditLog, DistributorApplication

APPLICATIONS = "/api/v1/distributors/applications"
ADMIN_APPLICATIONS = "/api/v1/admin/distributors/applications"


async def apply(api: Api, who: Session, id_number: str, status: int = 201, **extra: Any) -> Any:
    body = {"real_name": "张三", "id_number": id_number, "phone": "13912345678", **extra}
    return data(await api.client.post(APPLICATIONS, json=body, headers=who.headers), status)


async def reveal(api: Api, who: Session, application_id: int, reason: str, status: int = 200) -> Any:
    resp = await api.client.post(
        f"{ADMIN_APPLICATIONS}/{application_id}/reveal-id", json={"reason": reason}, headers=who.headers
    )
    return data(resp, status)


async def audit(
    api: Api, action_prefix: str = "distributor_application"
) -> list[tuple[int | None, str, str, str | None]]:
    async with api.infra.session_factory() as db:
        rows = await db.execute(
            select(AuditLog.actor_id, AuditLog.action, AuditLog.target_id, AuditLog.reason)
            .where(AuditLog.action.startswith(action_prefix))
            .order_by(AuditLog.id)
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


async def stored(api: Api) -> list[DistributorApplication]:
    async with api.infra.session_factory() as db:
        return list(await db.scalars(select(DistributorApplication).order_by(DistributorApplication.id)))
