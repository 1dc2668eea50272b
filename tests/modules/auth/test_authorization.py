"""Every route in the OpenAPI document is covered by an authorization test."""

from __future__ import annotations

import re

from tests.conftest import Api
from tests.fixtures.auth import login_as

PUBLIC = "public"
SIGNED = "signed"  # authorised by a URL signature alone: without one, every caller gets 403
USER = "user"
OPERATOR = "operator"
ADMIN = "admin"

# (method, path template) -> the least role that may call it.
ACCESS: dict[tuple[str, str], str] = {
    ("get", "/health"): PUBLIC,
    ("get", "/health/db"): PUBLIC,
    ("get", "/health/redis"): PUBLIC,
    ("get", "/health/ready"): PUBLIC,
    ("get", "/metrics"): PUBLIC,
    ("post", "/api/v1/auth/sms-codes"): PUBLIC,
    ("post", "/api/v1/auth/login"): PUBLIC,
    ("get", "/api/v1/auth/methods"): PUBLIC,
    ("get", "/api/v1/auth/wechat/web/authorize"): PUBLIC,
    ("post", "/api/v1/auth/refresh"): PUBLIC,
    ("post", "/api/v1/auth/password/reset"): PUBLIC,
    ("post", "/api/v1/auth/logout"): USER,
    ("post", "/api/v1/auth/logout-all"): USER,
    ("put", "/api/v1/auth/password"): USER,
    ("put", "/api/v1/auth/phone"): USER,
    ("post", "/api/v1/auth/wechat/phone"): USER,
    ("post", "/api/v1/auth/wechat/link"): USER,
    ("get", "/api/v1/auth/sessions"): USER,
    ("delete", "/api/v1/auth/sessions/{session_id}"): USER,
    # Any account may enrol an authenticator app: staff are who it is for.
    ("post", "/api/v1/auth/totp/setup"): USER,
    ("post", "/api/v1/auth/totp/enable"): USER,
    ("post", "/api/v1/auth/totp/disable"): USER,
    ("get", "/api/v1/users/me"): USER,
    ("patch", "/api/v1/users/me"): USER,
    ("get", "/api/v1/users/me/invite"): USER,
    ("put", "/api/v1/users/me/referrer"): USER,
    # The person's own data: a deletion needs a proof in its body (an empty one is refused with 422).
    ("delete", "/api/v1/users/me"): USER,
    ("get", "/api/v1/users/me/export"): USER,
    ("get", "/api/v1/billing/plans"): PUBLIC,
    ("get", "/api/v1/billing/quota"): USER,
    ("get", "/api/v1/billing/ledger"): USER,
    ("post", "/api/v1/admin/users/{user_id}/quota-adjustments"): OPERATOR,
    # Plans: operators read what is sold; only admins change it.
    ("get", "/api/v1/admin/plans"): OPERATOR,
    ("post", "/api/v1/admin/plans"): ADMIN,
    ("patch", "/api/v1/admin/plans/{sku}"): ADMIN,
    ("post", "/api/v1/uploads"): USER,
    ("post", "/api/v1/uploads/complete"): USER,
    ("post", "/api/v1/uploads/credentials"): USER,
    ("put", "/api/v1/storage/objects/{key}"): SIGNED,
    ("get", "/api/v1/storage/objects/{key}"): SIGNED,
    ("get", "/api/v1/features"): USER,
    ("post", "/api/v1/tasks"): USER,
    ("get", "/api/v1/tasks"): USER,
    ("get", "/api/v1/tasks/{task_id}"): USER,
    ("post", "/api/v1/tasks/{task_id}/cancel"): USER,
    ("delete", "/api/v1/tasks/{task_id}"): USER,
    # The support console: operators read any task with its internals, cancel and retry.
    ("get", "/api/v1/admin/tasks"): OPERATOR,
    ("get", "/api/v1/admin/tasks/{task_id}"): OPERATOR,
    ("post", "/api/v1/admin/tasks/{task_id}/cancel"): OPERATOR,
    ("post", "/api/v1/admin/tasks/{task_id}/retry"): OPERATOR,
    ("get", "/api/v1/admin/features"): OPERATOR,
    ("post", "/api/v1/admin/features"): ADMIN,
    ("put", "/api/v1/admin/features/{feature_id}"): ADMIN,
    ("delete", "/api/v1/admin/features/{feature_id}"): ADMIN,
    ("post", "/api/v1/admin/features/{feature_id}/switch"): OPERATOR,
    ("get", "/api/v1/admin/orders"): OPERATOR,
    ("get", "/api/v1/admin/orders/{order_no}"): OPERATOR,
    ("post", "/api/v1/admin/orders/{order_no}/refund"): OPERATOR,
    ("post", "/api/v1/billing/orders"): USER,
    ("get", "/api/v1/billing/orders"): USER,
    ("get", "/api/v1/billing/orders/{order_no}"): USER,
    ("post", "/api/v1/payments/wechat/notify"): PUBLIC,
    ("post", "/api/v1/payments/wechat/refund-notify"): PUBLIC,
    ("post", "/api/v1/payments/alipay/notify"): PUBLIC,
    ("post", "/api/v1/payments/sandbox/notify"): PUBLIC,  # signed; development only
    ("post", "/api/v1/payments/sandbox/checkout"): PUBLIC,  # the checkout token; development only
    ("get", "/api/v1/billing/channels"): PUBLIC,
    ("post", "/api/v1/api-keys"): USER,
    ("get", "/api/v1/api-keys"): USER,
    ("delete", "/api/v1/api-keys/{key_id}"): USER,
    ("post", "/api/v1/webhooks"): USER,
    ("get", "/api/v1/webhooks"): USER,
    ("patch", "/api/v1/webhooks/{endpoint_id}"): USER,
    ("delete", "/api/v1/webhooks/{endpoint_id}"): USER,
    ("post", "/api/v1/webhooks/{endpoint_id}/secret"): USER,
    ("get", "/api/v1/webhooks/{endpoint_id}/deliveries"): USER,
    ("post", "/api/v1/webhooks/{endpoint_id}/deliveries/{delivery_id}/replay"): USER,
    ("get", "/api/v1/admin/pipelines"): OPERATOR,
    ("get", "/api/v1/admin/providers"): OPERATOR,
    ("post", "/api/v1/admin/providers/{slug}/switch"): OPERATOR,
    # Vendor accounts: operators see them (never a secret); only admins decide where secrets go.
    ("get", "/api/v1/admin/provider-accounts"): OPERATOR,
    ("post", "/api/v1/admin/provider-accounts"): ADMIN,
    ("patch", "/api/v1/admin/provider-accounts/{account_id}"): ADMIN,
    # Vendors call back without a token: the HMAC in the URL (checked by the handler) is the proof.
    ("post", "/api/v1/callbacks/{provider}/{ref}"): PUBLIC,
    ("post", "/api/v1/admin/pipelines"): ADMIN,
    ("get", "/api/v1/admin/users"): OPERATOR,
    ("post", "/api/v1/admin/users"): ADMIN,
    ("patch", "/api/v1/admin/users/{user_id}"): OPERATOR,
    ("post", "/api/v1/admin/users/{user_id}/revoke-sessions"): OPERATOR,
    ("get", "/api/v1/admin/users/{user_id}"): OPERATOR,
    ("get", "/api/v1/admin/users/{user_id}/ledger"): OPERATOR,
    ("get", "/api/v1/admin/audit-logs"): OPERATOR,
    ("get", "/api/v1/admin/exports/orders.csv"): OPERATOR,
    ("get", "/api/v1/admin/exports/ledger.csv"): OPERATOR,
    ("get", "/api/v1/admin/stats/overview"): OPERATOR,
    # Distributors: operators review (ID numbers masked); decrypting one is an admin's, audited.
    ("post", "/api/v1/distributors/applications"): USER,
    ("get", "/api/v1/distributors/me"): USER,
    ("get", "/api/v1/admin/distributors/applications"): OPERATOR,
    ("post", "/api/v1/admin/distributors/applications/{application_id}/approve"): OPERATOR,
    ("post", "/api/v1/admin/distributors/applications/{application_id}/reject"): OPERATOR,
    ("post", "/api/v1/admin/distributors/applications/{application_id}/reveal-id"): ADMIN,
    # Engine.IO's HTTP transport: the Socket.IO connect checks the token (see /asyncapi.json).
    ("get", "/socket.io/"): PUBLIC,
    ("post", "/socket.io/"): PUBLIC,
}
ENDS_OWN_SESSION = {"/api/v1/auth/logout", "/api/v1/auth/logout-all"}
RANK = {PUBLIC: 0, USER: 1, OPERATOR: 2, ADMIN: 3}


def _routes(api: Api) -> list[tuple[str, str]]:
    spec = api.app.openapi()
    return [(m, p) for p, ops in spec["paths"].items() for m in ops]


async def test_every_openapi_route_is_in_the_access_table(api: Api) -> None:
    routes = set(_routes(api))
    assert routes == set(ACCESS), f"untested: {routes - set(ACCESS)}; stale: {set(ACCESS) - routes}"


async def test_each_role_gets_exactly_its_access(api: Api) -> None:
    sessions = {role: await login_as(api, role) for role in (USER, OPERATOR, ADMIN)}
    for (method, template), needed in ACCESS.items():
        path = re.sub(r"\{[^}]+\}", "999999", template)
        # Empty JSON body: an admitted caller gets past authorization and fails validation (422)
        # or finds nothing (404); a refused caller gets 401/403 before the body is looked at.
        for who in (PUBLIC, USER, OPERATOR, ADMIN):
            if who != PUBLIC and template in ENDS_OWN_SESSION:
                sessions[who] = await login_as(api, who)
            headers = sessions[who].headers if who != PUBLIC else {}
            body: dict[str, object] | None = {} if method in ("post", "put", "patch") else None
            resp = await api.client.request(method.upper(), path, headers=headers, json=body)
            if needed == SIGNED:
                assert (resp.status_code, resp.json()["code"]) == (403, "PERMISSION_DENIED"), (method, template, who)
                continue
            allowed = RANK[who] >= RANK[needed]
            if who != PUBLIC and template in ENDS_OWN_SESSION:
                sessions[who] = await login_as(api, who)
            if allowed:
                # FEATURE_UNAVAILABLE (403) is what this deployment lacks (WeChat QR login), not a refusal.
                refused = resp.status_code in (401, 403) and resp.json()["code"] != "FEATURE_UNAVAILABLE"
                assert not refused, (method, template, who, resp.text)
            elif who == PUBLIC:
                assert (resp.status_code, resp.json()["code"]) == (401, "AUTH_REQUIRED"), (method, template)
            else:
                assert (resp.status_code, resp.json()["code"]) == (403, "PERMISSION_DENIED"), (
                    method,
                    template,
                    who,
                )
