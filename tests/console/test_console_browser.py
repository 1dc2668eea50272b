"""The operator console in a real browser (headless Chromium), against a real `wardrobe serve`
on each backend. Each flow is done as staff would do it, on the page, and then checked where it
counts: in what the API (or, for what no API shows, the database) says afterwards."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select
from sqlalchemy import func, select

from tests.console.conftest import ConsoleServer, sign_in, totp_code
from tests.fixtures.auth import data, new_phone
from tests.fixtures.browser import LAPTOP, TABLET, Browser, css
from tests.fixtures.tasks import OWN_PROCESSES
from wardrobe.core.db import unit_of_work
from wardrobe.models import AuthSession
from wardrobe.modules.distributors.id_card import check_character

# Chromium and a served app per backend: kept on one xdist worker, one test at a time, with the
# other tests that run processes of their own (and the module's browser is started once).
pytestmark = OWN_PROCESSES

SESSION_KEY = "wardrobe.console.session"


def _sign_out(browser: Browser, server: ConsoleServer) -> None:
    browser.open(server.url)
    if browser.first_of("login-phone", "logout") == "logout":
        browser.click("logout")
    browser.find("login-phone")
    server.signed_in = set()


def _submit_login(browser: Browser, phone: str, password: str) -> None:
    browser.fill("login-phone", phone)
    browser.fill("login-password", password)
    browser.click("login-submit")


async def test_staff_sign_in_refresh_switch_language_and_sign_out(
    browser: Browser, console_server: ConsoleServer
) -> None:
    server = console_server
    _sign_out(browser, server)
    assert browser.text("login-submit") == "登录"  # Chinese unless asked otherwise
    _submit_login(browser, server.admin.phone, server.admin.password)
    browser.find("nav")
    server.signed_in = {server.admin.phone}
    for page in ("dashboard", "users", "tasks", "orders", "plans", "features", "providers", "audit"):
        browser.find(f"nav-{page}")

    kept = json.loads(browser.session_storage()[SESSION_KEY])
    assert kept["user"]["role"] == "admin"
    assert all(kept["refresh"] not in value for value in browser.local_storage().values())
    me = data(await server.client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {kept['access']}"}))
    assert me["id"] == server.admin.session.user["id"]

    # An access token about to expire is renewed through POST /auth/refresh before it is used.
    browser.script(
        "const s = JSON.parse(sessionStorage.getItem(arguments[0])); s.accessExpiresAt = 0;"
        "sessionStorage.setItem(arguments[0], JSON.stringify(s));",
        SESSION_KEY,
    )
    browser.driver.refresh()
    browser.find("nav")
    renewed = json.loads(browser.session_storage()[SESSION_KEY])
    assert renewed["refresh"] != kept["refresh"]
    me = data(await server.client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {renewed['access']}"}))
    assert me["id"] == server.admin.session.user["id"]

    browser.click("lang-switch")
    browser.wait(lambda _: browser.text("nav-users") == "Users")
    assert browser.local_storage()["wardrobe.console.lang"] == "en"
    browser.driver.refresh()
    browser.wait(lambda _: browser.text("nav-users") == "Users")  # remembered
    browser.click("lang-switch")
    browser.wait(lambda _: browser.text("nav-users") == "用户")

    browser.click("logout")
    browser.find("login-phone")
    server.signed_in = set()
    assert SESSION_KEY not in browser.session_storage()
    ended = await server.client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {renewed['access']}"})
    assert ended.status_code == 401
    assert ended.json()["code"] == "AUTH_SESSION_REVOKED"


async def test_an_account_that_is_not_staff_is_told_it_has_no_access(
    browser: Browser, console_server: ConsoleServer
) -> None:
    server = console_server
    phone = new_phone()
    body = {"phone": phone, "password": "Wardrobe-plain-user-4q!", "role": "user"}
    user = data(await server.client.post("/api/v1/admin/users", json=body, headers=server.admin.headers), 201)
    _sign_out(browser, server)
    _submit_login(browser, phone, body["password"])
    browser.wait(lambda _: "没有控制台权限" in browser.text("login-error"))
    assert browser.absent("nav")
    assert SESSION_KEY not in browser.session_storage()
    async with unit_of_work(server.sessions) as db:
        opened = await db.scalar(select(func.count()).select_from(AuthSession).where(AuthSession.user_id == user["id"]))
        live = await db.scalar(
            select(func.count())
            .select_from(AuthSession)
            .where(AuthSession.user_id == user["id"], AuthSession.revoked_at.is_(None))
        )
    assert (opened, live) == (1, 0)  # the login happened, and the console ended its session at once


async def test_two_step_sign_in_is_set_up_on_the_account_page_and_then_asked_for(
    browser: Browser, console_server: ConsoleServer
) -> None:
    server = console_server
    staff = await server.staff("operator")
    sign_in(browser, server, staff)
    browser.click("whoami")
    setup = browser.find("totp-setup")
    browser.fill("field-password", staff.password, setup)
    browser.click("totp-setup-submit", setup)
    secret = browser.find("totp-secret").text
    enable = browser.find("totp-enable")
    browser.fill("field-code", totp_code(secret), enable)
    browser.click("totp-enable-submit", enable)
    browser.find("totp-disable")  # the page now says it is on
    kept = json.loads(browser.session_storage()[SESSION_KEY])
    me = data(await server.client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {kept['access']}"}))
    assert me["totp_enabled"] is True

    _sign_out(browser, server)
    _submit_login(browser, staff.phone, staff.password)
    browser.find("login-totp")
    assert "动态验证码" in browser.text("login-error")
    assert browser.absent("nav")
    # The next 30-second step's code: one the enabling call cannot have used.
    browser.fill("login-totp", totp_code(secret, datetime.now(UTC).timestamp() + 30))
    browser.click("login-submit")
    browser.find("nav")
    kept = json.loads(browser.session_storage()[SESSION_KEY])
    assert kept["user"]["id"] == staff.session.user["id"]
    _sign_out(browser, server)


async def test_the_dashboard_shows_the_numbers_of_the_stats_api(
    as_admin: Browser, console_server: ConsoleServer
) -> None:
    server, browser = console_server, as_admin
    user = await server.user()
    await server.queued_task(user)
    browser.go("dashboard")
    browser.settled("stat-users")
    today = datetime.now(UTC).date()
    stats = await server.get(
        "/api/v1/admin/stats/overview",
        server.admin,
        **{"from": (today - timedelta(days=29)).isoformat(), "to": today.isoformat(), "granularity": "day"},
    )
    assert stats["totals"]["new_users"] >= 3  # the admin, the operator's first login, this user
    assert stats["totals"]["tasks"] >= 1
    assert int(browser.find("stat-users").get_attribute("data-value") or -1) == stats["totals"]["new_users"]
    assert int(browser.find("stat-tasks").get_attribute("data-value") or -1) == stats["totals"]["tasks"]
    lines = browser.find("chart-tasks").find_elements(By.CSS_SELECTOR, "polyline")
    assert len(lines) == 2
    assert len(lines[0].get_attribute("points").split()) == len(stats["series"])  # type: ignore[union-attr]


async def test_adjusting_quota_writes_the_ledger_and_the_audit_log(
    as_admin: Browser, console_server: ConsoleServer
) -> None:
    server, browser = console_server, as_admin
    user = await server.user()
    uid = user.user["id"]
    before = (await server.get(f"/api/v1/admin/users/{uid}", server.admin))["quota"]["balance"]
    browser.go(f"users/{uid}")
    browser.settled("user-detail")
    reason = f"console compensation {uuid.uuid4().hex[:6]}"
    browser.act("adjust-quota", {"delta-input": "25", "reason-input": reason})
    browser.wait(lambda _: browser.text("quota-balance") == str(before + 25))

    detail = await server.get(f"/api/v1/admin/users/{uid}", server.admin)
    assert detail["quota"]["balance"] == before + 25
    entry = detail["ledger"][0]
    assert (entry["kind"], entry["amount"], entry["note"], entry["actor_id"]) == (
        "admin_adjustment",
        25,
        reason,
        server.admin.session.user["id"],
    )
    row = browser.row("ledger-table", entry["id"])
    assert "人工调整" in row.text
    assert "25" in row.text

    logged = await server.get("/api/v1/admin/audit-logs", server.admin, target_type="user", target_id=str(uid))
    audit = next(item for item in logged["items"] if item["action"] == "quota.adjust")
    assert (audit["reason"], audit["actor_id"]) == (reason, server.admin.session.user["id"])
    assert audit["after"]["balance"] == before + 25
    browser.go(f"audit?target_type=user&target_id={uid}")
    browser.settled("audit-table")
    shown = browser.row("audit-table", audit["id"])
    assert "quota.adjust" in shown.text
    assert reason in shown.text


async def test_a_plan_created_in_the_console_is_on_sale(as_admin: Browser, console_server: ConsoleServer) -> None:
    server, browser = console_server, as_admin
    sku = f"pack-console-{uuid.uuid4().hex[:6]}"
    browser.go("plans")
    browser.settled("plans-table")
    browser.click("new-plan")
    form = browser.find("plan-form")
    browser.fill("field-sku", sku, form)
    Select(browser.find("field-kind", form)).select_by_value("quota_pack")
    browser.fill("field-name", "控制台加油包", form)
    browser.fill("field-name_en", "Console pack", form)
    browser.fill("field-price_fen", "12.5x", form)  # not an amount: the API's 422 says so, next to it
    browser.fill("field-quota", "120", form)
    browser.fill("field-sort_order", "99", form)
    browser.click("plan-save", form)
    assert browser.find("error-price_fen", form).text
    assert not browser.visible("error-quota")  # only the field at fault
    browser.fill("field-price_fen", "12.50", form)
    browser.click("plan-save", form)
    browser.row("plans-table", sku)
    assert browser.absent("plan-form")

    buyer = await server.user()
    plans = {plan["sku"]: plan for plan in await server.get("/api/v1/billing/plans", buyer)}
    assert sku in plans
    assert (plans[sku]["price_fen"], plans[sku]["quota"], plans[sku]["name_en"]) == (1250, 120, "Console pack")
    admin_view = {plan["sku"]: plan for plan in await server.get("/api/v1/admin/plans", server.admin)}
    assert admin_view[sku]["kind"] == "quota_pack"
    assert admin_view[sku]["is_active"] is True


async def test_refunding_an_order_paid_through_wechat_pay(as_admin: Browser, console_server: ConsoleServer) -> None:
    server, browser = console_server, as_admin
    user = await server.user()
    order = data(
        await server.client.post(
            "/api/v1/billing/orders", json={"sku": "pack-100", "channel": "wechat_native"}, headers=user.headers
        ),
        201,
    )
    no = order["order_no"]
    await server.peer.pay(no).wait_delivered()
    assert (await server.get(f"/api/v1/billing/orders/{no}", user))["status"] == "fulfilled"

    browser.go(f"orders/{no}")
    browser.settled("order-detail")
    browser.act("refund-order", {"reason-input": "the customer asked (console test)"})
    [at_peer] = server.peer.refunds_of(no)
    assert (at_peer.amount, at_peer.status) == (990, "PROCESSING")
    browser.row("refunds-table", at_peer.out_refund_no)
    detail = await server.get(f"/api/v1/admin/orders/{no}", server.admin)
    assert [(r["refund_no"], r["amount_fen"], r["status"]) for r in detail["refunds"]] == [
        (at_peer.out_refund_no, 990, "processing")
    ]

    delivery = server.peer.succeed_refund(at_peer.out_refund_no)
    assert delivery is not None
    await delivery.wait_delivered()
    browser.go(f"orders/{no}")
    browser.wait(lambda _: browser.settled("order-detail").get_attribute("data-status") == "refunded")
    assert (await server.get(f"/api/v1/billing/orders/{no}", user))["status"] == "refunded"
    assert (await server.get("/api/v1/billing/quota", user))["balance"] == 10  # the sign-up grant only


async def test_a_feature_switched_off_in_the_console_refuses_new_tasks(
    browser: Browser, console_server: ConsoleServer
) -> None:
    server = console_server
    sign_in(browser, server, server.operator)
    features = {f["key"]: f for f in await server.get("/api/v1/admin/features", server.operator)}
    cutout = features["cutout"]
    user = await server.user()
    browser.go("features")
    browser.settled("features-table")
    row = browser.row("features-table", cutout["id"])
    assert not row.find_elements(By.CSS_SELECTOR, css("edit-feature"))  # an operator does not edit features
    assert browser.absent("new-feature")
    reason = "vendor outage (console test)"
    try:
        browser.act("switch-off", {"reason-input": reason}, within=row)
        browser.wait(lambda _: _switch_shown(browser, cutout["id"], "switch-on"))
        key = await server.upload(user)
        refused = await server.client.post(
            "/api/v1/tasks",
            json={"feature": "cutout", "inputs": {"image": key}},
            headers={**user.headers, "Idempotency-Key": uuid.uuid4().hex},
        )
        assert refused.json()["code"] == "FEATURE_UNAVAILABLE", refused.text

        browser.act("switch-on", {"reason-input": "vendor back"}, within=browser.row("features-table", cutout["id"]))
        browser.wait(lambda _: _switch_shown(browser, cutout["id"], "switch-off"))
        await server.queued_task(user)  # accepted again
    finally:
        await _feature_on(server, cutout["id"])
    logged = await server.get("/api/v1/admin/audit-logs", server.operator, target_type="feature", target_id="cutout")
    assert [(item["action"], item["reason"]) for item in logged["items"][:2]] == [
        ("feature.enable", "vendor back"),
        ("feature.disable", reason),
    ]


def _switch_shown(browser: Browser, feature_id: int, testid: str) -> bool:
    return bool(browser.row("features-table", feature_id).find_elements(By.CSS_SELECTOR, css(testid)))


async def _feature_on(server: ConsoleServer, feature_id: int) -> None:
    """Leave the feature on for the tests after this one, whatever happened here."""
    features = {f["id"]: f for f in await server.get("/api/v1/admin/features", server.operator)}
    if not features[feature_id]["is_enabled"]:
        body = {"enabled": True, "reason": "test clean-up"}
        on = await server.client.post(
            f"/api/v1/admin/features/{feature_id}/switch", json=body, headers=server.operator.headers
        )
        data(on)


async def test_a_task_page_follows_the_task_live(as_admin: Browser, console_server: ConsoleServer) -> None:
    server, browser = console_server, as_admin
    user = await server.user()
    task = await server.queued_task(user)
    browser.go(f"tasks/{task['id']}")
    assert browser.settled("task-detail").get_attribute("data-status") == "queued"
    # Support reads the id that every log line of the task's run carries.
    traced = await server.get(f"/api/v1/admin/tasks/{task['id']}", server.admin)
    assert traced["trace_id"]
    assert browser.find("task-trace").text == traced["trace_id"]
    browser.find("cancel-task")
    canceled = await server.client.post(f"/api/v1/tasks/{task['id']}/cancel", headers=user.headers)
    assert data(canceled)["status"] == "canceled"
    # No reload: the hub pushes task.updated and the page reads the task again.
    browser.wait(lambda _: browser.settled("task-detail").get_attribute("data-status") == "canceled")
    assert browser.absent("cancel-task")
    detail = await server.get(f"/api/v1/admin/tasks/{task['id']}", server.admin)
    assert (detail["status"], detail["refunded"]) == ("canceled", True)


async def test_an_operator_cancels_a_queued_task_from_its_page(browser: Browser, console_server: ConsoleServer) -> None:
    server = console_server
    sign_in(browser, server, server.operator)
    user = await server.user()
    task = await server.queued_task(user)
    browser.go(f"tasks?user_id={user.user['id']}&status=queued")
    browser.settled("tasks-table")
    assert list(browser.rows("tasks-table")) == [task["id"]]
    browser.click(browser.row("tasks-table", task["id"]).find_element(By.TAG_NAME, "a"))
    browser.settled("task-detail")
    assert browser.absent("retry-task")  # only a failed task is retried
    reason = "the user asked by phone (console test)"
    browser.act("cancel-task", {"reason-input": reason})
    browser.wait(lambda _: browser.settled("task-detail").get_attribute("data-status") == "canceled")
    browser.row("task-actions-table", "task.cancel")

    detail = await server.get(f"/api/v1/admin/tasks/{task['id']}", server.operator)
    assert (detail["status"], detail["refunded"]) == ("canceled", True)
    assert [(a["action"], a["actor_id"], a["reason"]) for a in detail["actions"]] == [
        ("task.cancel", server.operator.session.user["id"], reason)
    ]
    assert (await server.get("/api/v1/billing/quota", user))["available"] == 10  # the hold came back


async def test_an_operator_approves_a_distributor_and_only_an_admin_reveals_the_id_number(
    browser: Browser, console_server: ConsoleServer
) -> None:
    server = console_server
    applicant = await server.user()
    first17 = "11010119900307123"
    number = first17 + check_character(first17)
    body = {"real_name": "王小明", "id_number": number, "phone": applicant.phone}
    headers = applicant.headers
    application = data(await server.client.post("/api/v1/distributors/applications", json=body, headers=headers), 201)

    sign_in(browser, server, server.operator)
    browser.go("distributors?status=pending")
    browser.settled("distributors-table")
    row = browser.row("distributors-table", application["id"])
    assert number not in row.text  # masked
    assert not row.find_elements(By.CSS_SELECTOR, css("reveal-id"))  # an operator cannot reveal
    browser.act("approve", {"reason-input": "资料齐全"}, within=row)
    browser.wait(lambda _: str(application["id"]) not in browser.rows("distributors-table"))
    approved = await server.get("/api/v1/admin/distributors/applications", server.operator, status="approved")
    assert [(a["id"], a["reviewer_id"]) for a in approved["items"]] == [
        (application["id"], server.operator.session.user["id"])
    ]
    assert (await server.get("/api/v1/users/me", applicant))["role"] == "distributor"

    sign_in(browser, server, server.admin)
    browser.go("distributors?status=approved")
    browser.settled("distributors-table")
    reason = "contract signing (console test)"
    browser.act("reveal-id", {"reason-input": reason}, within=browser.row("distributors-table", application["id"]))
    browser.wait(lambda _: browser.text("revealed-id") == number)
    logged = await server.get(
        "/api/v1/admin/audit-logs",
        server.admin,
        action="distributor_application.reveal_id",
        target_id=str(application["id"]),
    )
    assert [(e["actor_id"], e["reason"]) for e in logged["items"]] == [(server.admin.session.user["id"], reason)]


async def test_an_admin_demoted_mid_session_is_shown_the_apis_refusal(
    browser: Browser, console_server: ConsoleServer
) -> None:
    server = console_server
    staff = await server.staff("admin")
    sign_in(browser, server, staff)
    browser.go("plans")
    browser.settled("plans-table")
    demoted = await server.client.patch(
        f"/api/v1/admin/users/{staff.session.user['id']}",
        json={"role": "operator", "reason": "no longer sells plans"},
        headers=server.admin.headers,
    )
    assert data(demoted)["role"] == "operator"
    browser.click("new-plan")  # still shown: the page learnt the role at sign-in
    form = browser.find("plan-form")
    sku = f"pack-refused-{uuid.uuid4().hex[:6]}"
    for testid, value in {"field-sku": sku, "field-name": "不该有", "field-price_fen": "1", "field-quota": "1"}.items():
        browser.fill(testid, value, form)
    browser.click("plan-save", form)
    assert "PERMISSION_DENIED" in browser.find("form-error", form).text
    plans = await server.get("/api/v1/admin/plans", server.admin)
    assert sku not in {plan["sku"] for plan in plans}
    browser.driver.refresh()  # a new page load reads the role again: the button is gone
    browser.settled("plans-table")
    assert browser.absent("new-plan")
    _sign_out(browser, server)


async def test_every_page_renders_without_a_javascript_error_on_a_laptop_and_a_tablet(
    as_admin: Browser, console_server: ConsoleServer
) -> None:
    server, browser = console_server, as_admin
    user = await server.user()
    task = await server.queued_task(user)
    order = data(
        await server.client.post(
            "/api/v1/billing/orders", json={"sku": "pack-500", "channel": "wechat_native"}, headers=user.headers
        ),
        201,
    )
    pages = {
        "dashboard": "stat-users",
        "users": "users-table",
        f"users/{user.user['id']}": "user-detail",
        "tasks": "tasks-table",
        f"tasks/{task['id']}": "task-detail",
        "orders": "orders-table",
        f"orders/{order['order_no']}": "order-detail",
        "plans": "plans-table",
        "features": "features-table",
        "providers": "providers-table",
        "distributors": "distributors-table",
        "audit": "audit-table",
        "account": "account",
    }
    browser.severe_logs()  # what earlier tests left (refused logins answer 401 on purpose)
    try:
        for (width, height), language in ((LAPTOP, "zh"), (TABLET, "en")):
            browser.viewport(width, height)
            if (browser.local_storage().get("wardrobe.console.lang") or "zh") != language:
                browser.click("lang-switch")
            for route, shown in pages.items():
                browser.go(route)
                browser.settled(shown)
                assert browser.absent("error"), f"{route}: {browser.text('error')}"
                wide = browser.script("return document.documentElement.scrollWidth")
                assert wide <= width, f"{route} is {wide}px wide at {width}px"
            assert browser.severe_logs() == []
    finally:
        browser.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        if browser.local_storage().get("wardrobe.console.lang") == "en":
            browser.click("lang-switch")
