"""HTTP routes: orders for users, notifications for the platforms, refunds for admins.

Notification routes answer exactly as each platform requires: WeChat Pay wants 204 (no body) on
success and ``{"code":"FAIL","message":"失败"}`` with a 4xx/5xx otherwise; Alipay reads the body
and wants exactly ``success``. Both answers come only after the inbox transaction committed, so a
"success" never covers work that could still be lost; any failure makes the platform retry.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import PlainTextResponse, Response

from wardrobe.core.audit import add_audit
from wardrobe.core.cache import Cache
from wardrobe.core.db import unit_of_work
from wardrobe.core.deps import AnnouncerDep, CacheDep, SessionDep, SessionFactory, SessionFactoryDep, SettingsDep
from wardrobe.core.envelope import Envelope, OrjsonResponse, ok
from wardrobe.core.errors import ErrorCode
from wardrobe.core.logging import get_logger
from wardrobe.core.metrics import PAYMENT_EVENTS, PAYMENT_NOTIFICATIONS
from wardrobe.core.openapi import AUTH_ERRORS, errors
from wardrobe.core.outbox import Announcer
from wardrobe.core.pagination import CursorQuery, decode_cursor, split_page
from wardrobe.core.permissions import Permission
from wardrobe.core.principal import CurrentUser, Principal, client_ip, require
from wardrobe.core.schemas import Id
from wardrobe.models import Order, PaymentChannel, Refund
from wardrobe.modules.payments import notifications, orders, refunds, repository
from wardrobe.modules.payments.deps import PaymentsDep
from wardrobe.modules.payments.gateway import Payments, SignatureInvalid
from wardrobe.modules.payments.notify_docs import (
    ALIPAY_RESPONSES,
    WECHAT_BODY,
    WECHAT_REQUEST,
    WECHAT_RESPONSES,
    WECHAT_SIGNATURE_HEADERS,
)
from wardrobe.modules.payments.schemas import (
    AdminOrderOut,
    OrderCreate,
    OrderOut,
    OrderPage,
    RefundCreate,
    RefundOut,
)
from wardrobe.settings import Settings

router = APIRouter(tags=["payments"])
log = get_logger("wardrobe.payments")
OrderReader = Annotated[Principal, Depends(require(Permission.ORDERS_READ))]
Refunder = Annotated[Principal, Depends(require(Permission.ORDERS_REFUND))]
DENIED = (*AUTH_ERRORS, ErrorCode.PERMISSION_DENIED)


@router.post(
    "/api/v1/billing/orders",
    status_code=201,
    summary="Order a plan through a payment channel",
    description="The plan must be on sale (`GET /api/v1/billing/plans`) and offered on the channel "
    "(its `channels`; empty: every channel), else `PLAN_NOT_ON_SALE`. The order keeps the plan's name, "
    "price, quota and period as they were: a later change of the plan does not change it.",
    response_model=Envelope[OrderOut],
    responses=errors(
        *AUTH_ERRORS,
        ErrorCode.PAYMENT_CHANNEL_UNAVAILABLE,
        ErrorCode.PLAN_NOT_ON_SALE,
        ErrorCode.PAYMENT_PLATFORM_ERROR,
        ErrorCode.DEPENDENCY_UNAVAILABLE,
    ),
)
async def create_order(
    body: OrderCreate,
    principal: CurrentUser,
    sessions: SessionFactoryDep,
    payments: PaymentsDep,
    settings: SettingsDep,
    request: Request,
) -> OrjsonResponse:
    order = await orders.create_order(
        sessions, payments, settings, principal.user, sku=body.sku, channel=body.channel, client_ip=client_ip(request)
    )
    return ok(orders.order_body(order), status_code=201)


@router.get(
    "/api/v1/billing/channels",
    summary="The payment channels this deployment takes",
    description="Offer only these: ordering on another answers `PAYMENT_CHANNEL_UNAVAILABLE`. `sandbox` "
    "appears only in development.",
    response_model=Envelope[list[str]],
)
async def payment_channels(payments: PaymentsDep) -> OrjsonResponse:
    return ok([c.value for c in PaymentChannel if c.provider in payments.gateways])


@router.get(
    "/api/v1/billing/orders",
    summary="My orders, newest first",
    response_model=Envelope[OrderPage],
    responses=errors(*AUTH_ERRORS),
)
async def my_orders(
    principal: CurrentUser,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: CursorQuery = None,
) -> OrjsonResponse:
    rows = await repository.orders_page(
        session, user_id=principal.id, limit=limit, before_id=decode_cursor(cursor) if cursor else None
    )
    page, next_cursor = split_page(rows, limit, lambda o: o.id)
    return ok({"items": [orders.order_body(o) for o in page], "next_cursor": next_cursor})


@router.get(
    "/api/v1/billing/orders/{order_no}",
    summary="One of my orders",
    response_model=Envelope[OrderOut],
    responses=errors(*AUTH_ERRORS, ErrorCode.NOT_FOUND),
)
async def my_order(order_no: str, principal: CurrentUser, session: SessionDep) -> OrjsonResponse:
    return ok(orders.order_body(await orders.order_of(session, principal.id, order_no)))


# -- notifications -------------------------------------------------------------------------------

_WECHAT_FAIL = b'{"code":"FAIL","message":"\xe5\xa4\xb1\xe8\xb4\xa5"}'


def _wechat_fail(status: int) -> Response:
    return Response(_WECHAT_FAIL, status_code=status, media_type="application/json")


async def _wechat(
    request: Request,
    sessions: SessionFactory,
    payments: Payments,
    settings: Settings,
    cache: Cache,
    announcer: Announcer,
) -> Response:
    if any(not request.headers.get(name) for name in WECHAT_SIGNATURE_HEADERS):
        PAYMENT_NOTIFICATIONS.labels("wechat", "bad_signature").inc()  # unsigned
        return _wechat_fail(400)  # not a WeChat Pay notification at all, whatever the configuration
    gateway = payments.gateways.get("wechat")
    if gateway is None:
        return _wechat_fail(404)
    body = await request.body()
    try:
        notification = gateway.verify_notification(request.headers, body)
    except SignatureInvalid as exc:
        log.warning("payment_notification_rejected", provider="wechat", reason=str(exc))
        PAYMENT_EVENTS.labels("wechat", "bad_signature").inc()
        PAYMENT_NOTIFICATIONS.labels("wechat", "bad_signature").inc()
        return _wechat_fail(401)
    try:
        outcome = await notifications.handle_notification(
            sessions, "wechat", notification, settings=settings, cache=cache, announcer=announcer
        )
    except notifications.NotificationRejected as rejected:
        log.warning("payment_notification_refused", provider="wechat", reason=rejected.reason)
        PAYMENT_NOTIFICATIONS.labels("wechat", "mismatch").inc()
        return _wechat_fail(rejected.status)
    except Exception:
        log.exception("payment_notification_failed", provider="wechat")
        PAYMENT_NOTIFICATIONS.labels("wechat", "error").inc()
        return _wechat_fail(500)  # WeChat Pay retries on its schedule
    # Committed before this answer: the platform hears "success" only for what is stored.
    PAYMENT_NOTIFICATIONS.labels("wechat", "duplicate" if outcome == "duplicate" else "accepted").inc()
    return Response(status_code=204)


@router.post(
    "/api/v1/payments/wechat/notify",
    summary="WeChat Pay payment notification (called by WeChat Pay)",
    status_code=204,
    description=WECHAT_BODY,
    responses=WECHAT_RESPONSES,
    openapi_extra=WECHAT_REQUEST,
)
async def wechat_notify(
    request: Request,
    sessions: SessionFactoryDep,
    payments: PaymentsDep,
    settings: SettingsDep,
    cache: CacheDep,
    announcer: AnnouncerDep,
) -> Response:
    return await _wechat(request, sessions, payments, settings, cache, announcer)


@router.post(
    "/api/v1/payments/wechat/refund-notify",
    summary="WeChat Pay refund notification (called by WeChat Pay)",
    status_code=204,
    description=WECHAT_BODY,
    responses=WECHAT_RESPONSES,
    openapi_extra=WECHAT_REQUEST,
)
async def wechat_refund_notify(
    request: Request,
    sessions: SessionFactoryDep,
    payments: PaymentsDep,
    settings: SettingsDep,
    cache: CacheDep,
    announcer: AnnouncerDep,
) -> Response:
    return await _wechat(request, sessions, payments, settings, cache, announcer)


@router.post(
    "/api/v1/payments/alipay/notify",
    summary="Alipay payment and refund notification (called by Alipay; answers `success`)",
    response_class=PlainTextResponse,
    description="The body is Alipay's form-encoded notification, signed (`sign`, RSA2) over its other fields.",
    responses=ALIPAY_RESPONSES,
)
async def alipay_notify(
    request: Request,
    sessions: SessionFactoryDep,
    payments: PaymentsDep,
    settings: SettingsDep,
    cache: CacheDep,
    announcer: AnnouncerDep,
) -> Response:
    gateway = payments.gateways.get("alipay")
    if gateway is None:
        return PlainTextResponse("fail", status_code=404)
    body = await request.body()
    try:
        notification = gateway.verify_notification(request.headers, body)
    except (SignatureInvalid, ValueError) as exc:
        log.warning("payment_notification_rejected", provider="alipay", reason=str(exc))
        PAYMENT_EVENTS.labels("alipay", "bad_signature").inc()
        PAYMENT_NOTIFICATIONS.labels("alipay", "bad_signature").inc()
        return PlainTextResponse("fail", status_code=400)
    try:
        outcome = await notifications.handle_notification(
            sessions, "alipay", notification, settings=settings, cache=cache, announcer=announcer
        )
    except notifications.NotificationRejected as rejected:
        log.warning("payment_notification_refused", provider="alipay", reason=rejected.reason)
        PAYMENT_NOTIFICATIONS.labels("alipay", "mismatch").inc()
        return PlainTextResponse("fail", status_code=rejected.status)
    except Exception:
        log.exception("payment_notification_failed", provider="alipay")
        PAYMENT_NOTIFICATIONS.labels("alipay", "error").inc()
        return PlainTextResponse("fail", status_code=500)
    # Committed before this answer: the platform hears "success" only for what is stored.
    PAYMENT_NOTIFICATIONS.labels("alipay", "duplicate" if outcome == "duplicate" else "accepted").inc()
    return PlainTextResponse("success")


# -- admin ---------------------------------------------------------------------------------------


def _refund_body(refund: Refund, order_no: str) -> dict[str, Any]:
    return {
        "refund_no": refund.refund_no,
        "order_no": order_no,
        "amount_fen": refund.amount_fen,
        "quota": refund.quota,
        "status": refund.status,
        "reason": refund.reason,
        "created_at": refund.created_at,
        "settled_at": refund.settled_at,
    }


async def _admin_body(session: AsyncSession, order: Order) -> dict[str, Any]:
    order_refunds = await repository.refunds_of_order(session, order.id)
    return {
        **orders.order_body(order),
        "user_id": order.user_id,
        "transaction_id": order.transaction_id,
        "quota": order.quota,
        "quota_clawed": order.quota_clawed,
        "refunds": [_refund_body(r, order.order_no) for r in order_refunds],
    }


@router.get(
    "/api/v1/admin/orders",
    summary="Every order, newest first (filter by status or user)",
    response_model=Envelope[OrderPage],
    responses=errors(*DENIED),
)
async def admin_orders(
    _: OrderReader,
    session: SessionDep,
    status: Annotated[str | None, Query(max_length=24)] = None,
    user_id: Id | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: CursorQuery = None,
) -> OrjsonResponse:
    rows = await repository.orders_page(
        session, user_id=user_id, limit=limit, before_id=decode_cursor(cursor) if cursor else None, status=status
    )
    page, next_cursor = split_page(rows, limit, lambda o: o.id)
    return ok({"items": [orders.order_body(o) for o in page], "next_cursor": next_cursor})


@router.get(
    "/api/v1/admin/orders/{order_no}",
    summary="An order with its refunds",
    response_model=Envelope[AdminOrderOut],
    responses=errors(*DENIED, ErrorCode.NOT_FOUND),
)
async def admin_order(order_no: str, _: OrderReader, session: SessionDep) -> OrjsonResponse:
    return ok(await _admin_body(session, await orders.order_of(session, None, order_no)))


@router.post(
    "/api/v1/admin/orders/{order_no}/refund",
    status_code=201,
    summary="Refund an order, fully or partly, with a reason (audited)",
    description="The quota the order brought is taken back in proportion; if the user has already "
    "spent it the refund is refused with `REFUND_EXCEEDS_UNSPENT` (refund less, or adjust quota).",
    response_model=Envelope[RefundOut],
    responses=errors(
        *DENIED,
        ErrorCode.NOT_FOUND,
        ErrorCode.REFUND_NOT_ALLOWED,
        ErrorCode.REFUND_EXCEEDS_UNSPENT,
        ErrorCode.DEPENDENCY_UNAVAILABLE,
    ),
)
async def refund_order(
    order_no: str,
    body: RefundCreate,
    actor: Refunder,
    sessions: SessionFactoryDep,
    payments: PaymentsDep,
    cache: CacheDep,
    announcer: AnnouncerDep,
) -> OrjsonResponse:
    refund = await refunds.request_refund(
        sessions,
        payments,
        actor_id=actor.id,
        order_no=order_no,
        amount_fen=body.amount_fen,
        reason=body.reason,
        cache=cache,
        announcer=announcer,
    )
    async with unit_of_work(sessions) as session:
        add_audit(
            session,
            actor_id=actor.id,
            action="order.refund",
            target_type="order",
            target_id=order_no,
            reason=body.reason,
            after={"refund_no": refund.refund_no, "amount_fen": refund.amount_fen, "status": refund.status},
        )
    return ok(_refund_body(refund, order_no), status_code=201)
