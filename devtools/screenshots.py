"""Screenshots of the operator console for docs/console.md, taken from a real run.

    .venv/bin/python devtools/screenshots.py [--out docs/console]

Starts `wardrobe serve` on the embedded default (SQLite, demo data, tasks run in the process) in a
temporary directory, with WeChat Pay pointed at the local peer of tests/peers; makes a morning's
activity through the public API (users, tasks that succeed and one that fails, paid, refunded and
pending orders, a quota adjustment, a kill switch, a new plan, a distributor application); then
signs in as an admin in headless Chromium and saves each main page as a PNG. Needs Debian's
chromium, chromium-driver and a CJK font (fonts-noto-cjk) for the Chinese.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from tests.fixtures.auth import Session, data, sms_login  # noqa: E402
from tests.fixtures.browser import LAPTOP, TABLET, Browser, start_chrome  # noqa: E402
from tests.fixtures.tasks import free_port  # noqa: E402
from tests.modules.providers.images import encode, subject_on_background  # noqa: E402
from tests.peers.server import PeerServer  # noqa: E402
from tests.peers.wechatpay import WeChatPayPeer, create_wechatpay_app  # noqa: E402
from tests.peers.wechatpay_fixtures import settings_for  # noqa: E402

from wardrobe.modules.distributors.id_card import check_character  # noqa: E402

ADMIN_PHONE = "13800000001"
ADMIN_PASSWORD = "Wardrobe-console-demo-9!"  # noqa: S105 - a throwaway demo account
NICKNAMES = ("小林", "阿杰", "Mia", "王老师", "晴天", "Leo")
MAX_HEIGHT = 1500


def _wardrobe(env: dict[str, str], *args: str) -> None:
    subprocess.run([sys.executable, "-m", "wardrobe.cli", *args], cwd=ROOT, env=env, check=True)  # noqa: S603


def _has_cjk_font() -> bool:
    found = subprocess.run(["fc-list", ":lang=zh"], capture_output=True, text=True, check=False)  # noqa: S607
    return bool(found.stdout.strip())


async def _upload(client: httpx.AsyncClient, user: Session, width: int, height: int) -> str:
    photo, _ = subject_on_background(width, height)
    body = encode(photo)
    grant = data(
        await client.post(
            "/api/v1/uploads",
            json={"filename": "photo.png", "content_type": "image/png", "size": len(body)},
            headers=user.headers,
        )
    )
    upload = grant["upload"]
    put = await client.request(upload["method"], upload["url"], content=body, headers=upload["headers"])
    put.raise_for_status()
    key: str = grant["object_key"]
    return key


async def _task(client: httpx.AsyncClient, user: Session, feature: str, inputs: dict[str, Any]) -> str:
    headers = {**user.headers, "Idempotency-Key": uuid.uuid4().hex}
    created = data(
        await client.post("/api/v1/tasks", json={"feature": feature, "inputs": inputs}, headers=headers), 202
    )
    task_id: str = created["id"]
    return task_id


async def _finished(client: httpx.AsyncClient, user: Session, task_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        task: dict[str, Any] = data(await client.get(f"/api/v1/tasks/{task_id}", headers=user.headers))
        if task["status"] in ("succeeded", "failed", "canceled"):
            return task
        await asyncio.sleep(0.3)
    raise TimeoutError(f"task {task_id} did not finish")


async def _buy(client: httpx.AsyncClient, user: Session, sku: str) -> str:
    body = {"sku": sku, "channel": "wechat_native"}
    order = data(await client.post("/api/v1/billing/orders", json=body, headers=user.headers), 201)
    order_no: str = order["order_no"]
    return order_no


async def _activity(client: httpx.AsyncClient, peer: WeChatPayPeer, admin: dict[str, str]) -> dict[str, Any]:
    """A morning of the service, through its public API."""
    users = [await sms_login(client, f"1391234{i:04d}") for i in range(len(NICKNAMES))]
    for user, nickname in zip(users, NICKNAMES, strict=True):
        data(await client.patch("/api/v1/users/me", json={"nickname": nickname}, headers=user.headers))
    tasks = [
        (user, await _task(client, user, "cutout", {"image": await _upload(client, user, 320, 240)}))
        for user in users[:4]
    ]
    no_face = await _upload(client, users[1], 200, 200)
    failed = await _task(client, users[1], "face_swap", {"source": no_face, "target": no_face})
    tasks.append((users[1], failed))
    for user, task_id in tasks:
        await _finished(client, user, task_id)

    paid = await _buy(client, users[0], "pack-100")
    await peer.pay(paid).wait_delivered()
    refunded = await _buy(client, users[2], "member-monthly")
    await peer.pay(refunded).wait_delivered()
    await _buy(client, users[3], "pack-500")  # left pending

    adjust = {"delta": 20, "reason": "任务失败补偿"}
    uid = users[0].user["id"]
    data(await client.post(f"/api/v1/admin/users/{uid}/quota-adjustments", json=adjust, headers=admin))
    refund = data(
        await client.post(
            f"/api/v1/admin/orders/{refunded}/refund", json={"reason": "用户七天内申请退款"}, headers=admin
        ),
        201,
    )
    delivery = peer.succeed_refund(refund["refund_no"])
    if delivery is not None:
        await delivery.wait_delivered()
    features = {f["key"]: f for f in data(await client.get("/api/v1/admin/features", headers=admin))}
    switch = {"enabled": False, "reason": "扩图服务商维护中"}
    data(await client.post(f"/api/v1/admin/features/{features['outpaint']['id']}/switch", json=switch, headers=admin))
    plan = {
        "sku": "pack-30",
        "kind": "quota_pack",
        "name": "30 次体验包",
        "name_en": "30-task trial pack",
        "price_fen": 390,
        "quota": 30,
        "sort_order": 5,
        "is_active": True,
        "reason": "新用户体验包",
    }
    await client.post("/api/v1/admin/plans", json=plan, headers=admin)
    first17 = "11010119900307123"
    application = {"real_name": "王小明", "id_number": first17 + check_character(first17), "phone": users[4].phone}
    data(await client.post("/api/v1/distributors/applications", json=application, headers=users[4].headers), 201)
    return {"user_id": uid, "task_id": failed, "order_no": refunded}


def _shoot(browser: Browser, route: str, ready: str, path: Path, size: tuple[int, int]) -> None:
    width, height = size
    browser.viewport(width, height)
    browser.go(route)
    browser.settled(ready)
    # The audit log with one change opened: what a quota adjustment recorded before and after.
    browser.script(
        "for (const d of document.querySelectorAll('[data-testid=audit-table] details'))"
        " { if (d.closest('tr').textContent.includes('quota.adjust')) d.open = true; }"
    )
    tall = int(browser.script("return document.documentElement.scrollHeight"))
    browser.viewport(width, max(height, min(tall, MAX_HEIGHT)))
    browser.script("window.scrollTo(0, 0)")
    browser.driver.save_screenshot(str(path))
    print(f"screenshots: {path.name}", flush=True)


def _screenshots(url: str, out: Path, ids: dict[str, Any]) -> None:
    pages = [
        ("dashboard", "dashboard", "stat-users", LAPTOP),
        ("users", "users", "users-table", LAPTOP),
        ("user-detail", f"users/{ids['user_id']}", "user-detail", LAPTOP),
        ("tasks", "tasks", "tasks-table", LAPTOP),
        ("task-detail", f"tasks/{ids['task_id']}", "task-detail", LAPTOP),
        ("orders", "orders", "orders-table", LAPTOP),
        ("order-detail", f"orders/{ids['order_no']}", "order-detail", LAPTOP),
        ("plans", "plans", "plans-table", LAPTOP),
        ("features", "features", "features-table", LAPTOP),
        ("providers", "providers", "providers-table", LAPTOP),
        ("distributors", "distributors", "distributors-table", LAPTOP),
        ("audit", "audit", "audit-table", LAPTOP),
        ("dashboard-tablet", "dashboard", "stat-users", TABLET),
    ]
    browser = Browser(start_chrome())
    try:
        browser.viewport(*LAPTOP)
        browser.open(url)
        browser.settled("login-phone")
        browser.driver.save_screenshot(str(out / "login.png"))
        browser.fill("login-phone", ADMIN_PHONE)
        browser.fill("login-password", ADMIN_PASSWORD)
        browser.click("login-submit")
        browser.find("nav")
        for name, route, ready, size in pages:
            _shoot(browser, route, ready, out / f"{name}.png", size)
    finally:
        browser.driver.quit()


async def _prepare(url: str, server: subprocess.Popen[bytes], peer: WeChatPayPeer) -> dict[str, Any]:
    """Wait for the service, then make the activity the pages show; the ids of what to open."""
    try:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if (await client.get("/health/ready")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("wardrobe serve did not start")
                await asyncio.sleep(0.2)
            login = {"method": "password", "phone": ADMIN_PHONE, "password": ADMIN_PASSWORD}
            token = data(await client.post("/api/v1/auth/login", json=login))["access_token"]
            return await _activity(client, peer, {"Authorization": f"Bearer {token}"})
    finally:
        await peer.aclose()


def _run(out: Path) -> None:
    peer = WeChatPayPeer()
    with (
        tempfile.TemporaryDirectory(prefix="wardrobe-shots-") as home,
        PeerServer(create_wechatpay_app(peer)) as wechat,
    ):
        port = free_port()
        settings = {"var_dir": f"{home}/var", "port": str(port), **settings_for(peer, wechat.base_url, port)}
        env = {key: value for key, value in os.environ.items() if not key.startswith("WARDROBE_")}
        env.update({f"WARDROBE_{name.upper()}": value for name, value in settings.items()})
        _wardrobe(env, "migrate")
        _wardrobe(env, "admin", "create-user", "--phone", ADMIN_PHONE, "--password", ADMIN_PASSWORD, "--role", "admin")
        server = subprocess.Popen(
            [sys.executable, "-m", "wardrobe.cli", "serve", "--host", "127.0.0.1"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            ids = asyncio.run(_prepare(url, server, peer))
            _screenshots(url, out, ids)
        finally:
            server.terminate()
            server.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "console")
    args = parser.parse_args()
    if not _has_cjk_font():
        print("screenshots: no CJK font; install one first: apt-get install fonts-noto-cjk", file=sys.stderr)
        return 1
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    _run(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
