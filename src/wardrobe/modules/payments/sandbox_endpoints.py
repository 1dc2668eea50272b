"""The sandbox platform's two routes (development only; ``sandbox.py``): its checkout, which pays an
order as a buyer would on the platform's page, and its notification route. Both end in the one
handler every platform's notifications go through (``notifications.handle_notification``): the
checkout signs the notification the platform would send and hands it to the same verification."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from starlette.responses import Response

from wardrobe.core.deps import AnnouncerDep, CacheDep, SessionFactoryDep, SettingsDep
from wardrobe.core.envelope import Envelope, OrjsonResponse, ok
from wardrobe.core.errors import AppError, ErrorCode
from wardrobe.core.logging import get_logger
from wardrobe.core.metrics import PAYMENT_EVENTS, PAYMENT_NOTIFICATIONS
from wardrobe.core.openapi import errors
from wardrobe.core.schemas import InputModel
from wardrobe.modules.payments import notifications
from wardrobe.modules.payments.deps import PaymentsDep
from wardrobe.modules.payments.gateway import Notification, SignatureInvalid
from wardrobe.modules.payments.notify_docs import SANDBOX_REQUEST, SANDBOX_RESPONSES
from wardrobe.modules.payments.sandbox import PROVIDER, SIGNATURE_HEADERS, SandboxGateway

router = APIRouter(tags=["payments"])
log = get_logger("wardrobe.payments")


class SandboxCheckout(InputModel):
    order_no: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_-]+$")
    amount_fen: int = Field(gt=0, le=100_000_000)
    token: str = Field(min_length=1, max_length=64)


class SandboxPaid(BaseModel):
    order_no: str
    outcome: str = Field(
        description="What the notification did: `fulfilled` the first time; a later press sends a new "
        "notification that finds the order paid (`already_fulfilled`) and moves nothing"
    )


def _sandbox(payments: PaymentsDep) -> SandboxGateway:
    gateway = payments.gateways.get(PROVIDER)
    if not isinstance(gateway, SandboxGateway):
        raise AppError(ErrorCode.PAYMENT_CHANNEL_UNAVAILABLE, detail="the sandbox is for development only")
    return gateway


async def _deliver(
    notification: Notification,
    sessions: SessionFactoryDep,
    settings: SettingsDep,
    cache: CacheDep,
    announcer: AnnouncerDep,
) -> str:
    return await notifications.handle_notification(
        sessions, PROVIDER, notification, settings=settings, cache=cache, announcer=announcer
    )


@router.post(
    "/api/v1/payments/sandbox/checkout",
    summary="Pay an order on the sandbox's checkout page (development only)",
    description="What the sandbox's checkout page (`pay_params.checkout_url` of a `sandbox` order) calls "
    "when the buyer pays. The sandbox then sends its signed notification through the same handler as "
    "every platform's: the order is fulfilled once, however often this is called.",
    response_model=Envelope[SandboxPaid],
    responses=errors(ErrorCode.PAYMENT_CHANNEL_UNAVAILABLE, ErrorCode.NOT_FOUND, ErrorCode.VALIDATION_FAILED),
)
async def sandbox_checkout(
    body: SandboxCheckout,
    payments: PaymentsDep,
    sessions: SessionFactoryDep,
    settings: SettingsDep,
    cache: CacheDep,
    announcer: AnnouncerDep,
) -> OrjsonResponse:
    gateway = _sandbox(payments)
    if not gateway.token_ok(body.order_no, body.amount_fen, body.token):
        raise AppError(ErrorCode.NOT_FOUND, detail="no such checkout")
    headers, raw = gateway.paid_notification(body.order_no, body.amount_fen)
    notification = gateway.verify_notification(headers, raw)
    try:
        outcome = await _deliver(notification, sessions, settings, cache, announcer)
    except notifications.NotificationRejected as rejected:
        raise AppError(ErrorCode.NOT_FOUND, detail=rejected.reason) from None
    PAYMENT_NOTIFICATIONS.labels(PROVIDER, "duplicate" if outcome == "duplicate" else "accepted").inc()
    return ok({"order_no": body.order_no, "outcome": outcome})


@router.post(
    "/api/v1/payments/sandbox/notify",
    summary="Sandbox payment notification (development only)",
    status_code=204,
    description="A JSON event signed per Standard Webhooks (`webhook-id`, `webhook-timestamp`, "
    "`webhook-signature`), at most five minutes old. 204 once stored (also for a duplicate); 400 unsigned; "
    "401 for a bad or stale signature; 404 for an unknown order; 400 for a wrong amount.",
    responses=SANDBOX_RESPONSES,
    openapi_extra=SANDBOX_REQUEST,
)
async def sandbox_notify(
    request: Request,
    payments: PaymentsDep,
    sessions: SessionFactoryDep,
    settings: SettingsDep,
    cache: CacheDep,
    announcer: AnnouncerDep,
) -> Response:
    if not all(request.headers.get(name) for name in SIGNATURE_HEADERS):
        return Response(status_code=400)  # not a sandbox notification at all, whatever the configuration
    gateway = payments.gateways.get(PROVIDER)
    if not isinstance(gateway, SandboxGateway):
        return Response(status_code=404)
    body = await request.body()
    try:
        notification = gateway.verify_notification(request.headers, body)
    except SignatureInvalid as exc:
        log.warning("payment_notification_rejected", provider=PROVIDER, reason=str(exc))
        PAYMENT_EVENTS.labels(PROVIDER, "bad_signature").inc()
        PAYMENT_NOTIFICATIONS.labels(PROVIDER, "bad_signature").inc()
        return Response(status_code=401)
    try:
        outcome = await _deliver(notification, sessions, settings, cache, announcer)
    except notifications.NotificationRejected as rejected:
        log.warning("payment_notification_refused", provider=PROVIDER, reason=rejected.reason)
        PAYMENT_NOTIFICATIONS.labels(PROVIDER, "mismatch").inc()
        return Response(status_code=rejected.status)
    PAYMENT_NOTIFICATIONS.labels(PROVIDER, "duplicate" if outcome == "duplicate" else "accepted").inc()
    return Response(status_code=204)
