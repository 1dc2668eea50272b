"""HTTP routes of /api/v1/webhooks: a user's endpoints, their delivery log and replays."""

from __future__ import annotations

import ipaddress
from datetime import datetime
from typing import Any

import httpx
from fastapi import APIRouter
from pydantic import BaseModel, Field
from sqlalchemy import delete, func, select, update

from wardrobe.core.audit import add_audit
from wardrobe.core.deps import SessionDep, SettingsDep
from wardrobe.core.envelope import Envelope, OrjsonResponse, ok
from wardrobe.core.errors import AppError, ErrorCode, NotFound
from wardrobe.core.openapi import AUTH_ERRORS, errors, server_check
from wardrobe.core.principal import CurrentUser
from wardrobe.core.schemas import Id, InputModel
from wardrobe.models import WebhookDelivery, WebhookEndpoint
from wardrobe.models.base import utcnow
from wardrobe.modules.providers.fetch import classify_address
from wardrobe.modules.webhooks.deliveries import PENDING
from wardrobe.modules.webhooks.events import EVENTS
from wardrobe.modules.webhooks.secrets import endpoint_secret, new_salt
from wardrobe.settings import Environment, Settings

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])
LOGGED = 50  # the newest deliveries an endpoint's log shows

_EVENTS_FIELD: dict[str, Any] = {"items": {"enum": list(EVENTS)}, "uniqueItems": True}
_URL_CHECK = server_check(
    "an http(s) URL (https only in production) with a host and no credentials, whose host is not a literal "
    "internal address; names are resolved and checked again on every delivery"
)


class WebhookCreate(InputModel):
    url: str = Field(
        min_length=8,
        max_length=500,
        pattern=r"^https?://",
        examples=["https://shop.example.com/wardrobe/events"],
        json_schema_extra=_URL_CHECK,
    )
    events: list[str] = Field(min_length=1, max_length=len(EVENTS), json_schema_extra=_EVENTS_FIELD)
    description: str = Field(default="", max_length=128)


class WebhookUpdate(InputModel):
    url: str | None = Field(
        default=None, min_length=8, max_length=500, pattern=r"^https?://", json_schema_extra=_URL_CHECK
    )
    events: list[str] | None = Field(
        default=None, min_length=1, max_length=len(EVENTS), json_schema_extra=_EVENTS_FIELD
    )
    description: str | None = Field(default=None, max_length=128)
    enabled: bool | None = Field(default=None, description="true enables a disabled endpoint again")


class WebhookOut(BaseModel):
    id: int
    url: str
    description: str
    events: list[str]
    created_at: datetime
    failing_since: datetime | None
    disabled_at: datetime | None
    disabled_reason: str | None


class WebhookCreated(WebhookOut):
    secret: str = Field(description="`whsec_…`: verify `webhook-signature` with it (Standard Webhooks). Shown now only")


class DeliveryOut(BaseModel):
    id: int
    event_id: str = Field(description="The `webhook-id` of every attempt and replay")
    event_type: str
    status: str
    attempts: int
    last_status: int | None
    last_error: str | None
    created_at: datetime
    next_attempt_at: datetime | None
    delivered_at: datetime | None


def _body(endpoint: WebhookEndpoint) -> dict[str, Any]:
    return WebhookOut.model_validate(endpoint, from_attributes=True).model_dump(mode="json")


def _invalid(field: str, message: str) -> AppError:
    return AppError(ErrorCode.VALIDATION_FAILED, data=[{"field": field, "message": message}])


def check_url(url: str, settings: Settings) -> str:
    """What an endpoint may be: http(s) without credentials (https only in production), and not a
    literal internal address. Names are resolved and checked again on every delivery."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise _invalid("url", "not a URL") from None
    schemes = ("https",) if settings.env is Environment.PRODUCTION else ("https", "http")
    if parsed.scheme not in schemes or not parsed.host or parsed.userinfo:
        raise _invalid("url", f"must be {' or '.join(schemes)}://host/path, without credentials")
    allowed = f"{parsed.host}:{parsed.port or (443 if parsed.scheme == 'https' else 80)}"
    try:
        literal = ipaddress.ip_address(parsed.host)
    except ValueError:
        return str(parsed)
    if allowed not in settings.webhook_allow_private and classify_address(literal) is not None:
        raise _invalid("url", "must reach a public address")
    return str(parsed)


def _events(names: list[str]) -> list[str]:
    unknown = [n for n in names if n not in EVENTS]
    if unknown or len(set(names)) != len(names):
        raise _invalid("events", f"unknown event {unknown[0]}" if unknown else "an event is named twice")
    return sorted(names, key=EVENTS.index)


async def _owned(session: SessionDep, user_id: int, endpoint_id: int) -> WebhookEndpoint:
    found = await session.scalar(
        select(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.user_id == user_id)
    )
    if found is None:
        raise NotFound(detail="webhook endpoint")
    return found


def _audit(session: SessionDep, user_id: int, action: str, endpoint: WebhookEndpoint, **after: Any) -> None:
    add_audit(
        session,
        actor_id=user_id,
        action=action,
        target_type="webhook_endpoint",
        target_id=str(endpoint.id),
        reason=None,
        after=after or None,
    )


@router.post(
    "",
    status_code=201,
    summary="Register a webhook endpoint (its secret shown once)",
    description="Events: " + ", ".join(f"`{e}`" for e in EVENTS) + ". Each delivery is a POST of "
    "`{type, timestamp, data}` signed per Standard Webhooks (`webhook-id`, `webhook-timestamp`, "
    "`webhook-signature`); answer 2xx within 10 s. Failed deliveries are retried for 24 h.",
    response_model=Envelope[WebhookCreated],
    responses=errors(*AUTH_ERRORS, ErrorCode.CONFLICT),
)
async def create_webhook(
    body: WebhookCreate, principal: CurrentUser, settings: SettingsDep, session: SessionDep
) -> OrjsonResponse:
    url, events = check_url(body.url, settings), _events(body.events)
    count = await session.scalar(
        select(func.count()).select_from(WebhookEndpoint).where(WebhookEndpoint.user_id == principal.id)
    )
    if int(count or 0) >= settings.webhook_endpoints_per_user:
        raise AppError(ErrorCode.CONFLICT, data={"reason": "too_many_endpoints"})
    endpoint = WebhookEndpoint(
        user_id=principal.id,
        url=url,
        description=body.description,
        events=events,
        secret_salt=new_salt(),
        created_at=utcnow(),
    )
    session.add(endpoint)
    await session.flush()
    _audit(session, principal.id, "webhook.create", endpoint, url=url, events=events)
    secret = endpoint_secret(settings.webhook_secret_key.get_secret_value(), endpoint.id, endpoint.secret_salt)
    return ok({**_body(endpoint), "secret": secret}, status_code=201)


@router.get("", summary="My webhook endpoints", response_model=Envelope[list[WebhookOut]])
async def list_webhooks(principal: CurrentUser, session: SessionDep) -> OrjsonResponse:
    found = await session.scalars(
        select(WebhookEndpoint).where(WebhookEndpoint.user_id == principal.id).order_by(WebhookEndpoint.id)
    )
    return ok([_body(e) for e in found])


@router.patch(
    "/{endpoint_id}",
    summary="Change a webhook endpoint, or enable it again",
    response_model=Envelope[WebhookOut],
    responses=errors(*AUTH_ERRORS, ErrorCode.NOT_FOUND),
)
async def update_webhook(
    endpoint_id: Id, body: WebhookUpdate, principal: CurrentUser, settings: SettingsDep, session: SessionDep
) -> OrjsonResponse:
    endpoint = await _owned(session, principal.id, endpoint_id)
    if body.url is not None:
        endpoint.url = check_url(body.url, settings)
    if body.events is not None:
        endpoint.events = _events(body.events)
    if body.description is not None:
        endpoint.description = body.description
    if body.enabled is True:
        endpoint.disabled_at, endpoint.disabled_reason, endpoint.failing_since = None, None, None
    elif body.enabled is False and endpoint.disabled_at is None:
        endpoint.disabled_at, endpoint.disabled_reason = utcnow(), "disabled by its owner"
    await session.flush()
    _audit(session, principal.id, "webhook.update", endpoint, **body.model_dump(exclude_none=True))
    return ok(_body(endpoint))


@router.post(
    "/{endpoint_id}/secret",
    summary="Replace a webhook endpoint's secret (the new one shown once)",
    response_model=Envelope[WebhookCreated],
    responses=errors(*AUTH_ERRORS, ErrorCode.NOT_FOUND),
)
async def rotate_secret(
    endpoint_id: Id, principal: CurrentUser, settings: SettingsDep, session: SessionDep
) -> OrjsonResponse:
    endpoint = await _owned(session, principal.id, endpoint_id)
    endpoint.secret_salt = new_salt()
    await session.flush()
    _audit(session, principal.id, "webhook.rotate_secret", endpoint)
    secret = endpoint_secret(settings.webhook_secret_key.get_secret_value(), endpoint.id, endpoint.secret_salt)
    return ok({**_body(endpoint), "secret": secret})


@router.delete(
    "/{endpoint_id}",
    summary="Remove a webhook endpoint and its delivery log",
    response_model=Envelope[WebhookOut],
    responses=errors(*AUTH_ERRORS, ErrorCode.NOT_FOUND),
)
async def delete_webhook(endpoint_id: Id, principal: CurrentUser, session: SessionDep) -> OrjsonResponse:
    endpoint = await _owned(session, principal.id, endpoint_id)
    shown = _body(endpoint)
    await session.execute(delete(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id))
    await session.execute(delete(WebhookEndpoint).where(WebhookEndpoint.id == endpoint.id))
    _audit(session, principal.id, "webhook.delete", endpoint)
    return ok(shown)


@router.get(
    "/{endpoint_id}/deliveries",
    summary="A webhook endpoint's newest deliveries",
    response_model=Envelope[list[DeliveryOut]],
    responses=errors(*AUTH_ERRORS, ErrorCode.NOT_FOUND),
)
async def list_deliveries(endpoint_id: Id, principal: CurrentUser, session: SessionDep) -> OrjsonResponse:
    endpoint = await _owned(session, principal.id, endpoint_id)
    rows = await session.scalars(
        select(WebhookDelivery)
        .where(WebhookDelivery.endpoint_id == endpoint.id)
        .order_by(WebhookDelivery.id.desc())
        .limit(LOGGED)
    )
    return ok([DeliveryOut.model_validate(r, from_attributes=True).model_dump(mode="json") for r in rows])


@router.post(
    "/{endpoint_id}/deliveries/{delivery_id}/replay",
    summary="Send a delivery again, with the same webhook-id",
    response_model=Envelope[DeliveryOut],
    responses=errors(*AUTH_ERRORS, ErrorCode.NOT_FOUND),
)
async def replay_delivery(
    endpoint_id: Id, delivery_id: Id, principal: CurrentUser, session: SessionDep
) -> OrjsonResponse:
    endpoint = await _owned(session, principal.id, endpoint_id)
    delivery = await session.scalar(
        select(WebhookDelivery).where(WebhookDelivery.id == delivery_id, WebhookDelivery.endpoint_id == endpoint.id)
    )
    if delivery is None:
        raise NotFound(detail="delivery")
    now = utcnow()
    await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery.id)
        .values(status=PENDING, next_attempt_at=now, created_at=now)
    )
    await session.refresh(delivery)
    return ok(DeliveryOut.model_validate(delivery, from_attributes=True).model_dump(mode="json"))
