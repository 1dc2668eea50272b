"""Watch your tasks move, live: a minimal Wardrobe Socket.IO client (the contract in docs/realtime.md).

    python examples/live_progress.py http://127.0.0.1:8000 <access_token> <task_id> [<task_id> ...]

Needs `python-socketio[asyncio_client]` (the test environment has it). It connects with the access
token, subscribes to the tasks, prints each `task.updated` and `quota.updated`, and on a dropped
connection reconnects every 3 s (5 tries) and subscribes again: the acknowledgement carries each
task's current state, so nothing that happened while it was away is missed.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import socketio

TERMINAL = {"succeeded", "failed", "canceled"}


async def watch(base_url: str, token: str, task_ids: list[str]) -> None:
    client = socketio.AsyncClient(reconnection=True, reconnection_attempts=5, reconnection_delay=3)
    done: set[str] = set()
    finished = asyncio.Event()

    def show(task: dict[str, Any]) -> None:
        steps = " ".join(f"{s['id']}={s['status']}" for s in task["steps"])
        print(f"{task['id']}: {task['status']} {task['progress']}% [{steps}]")
        if task["status"] in TERMINAL:
            done.add(task["id"])
            if done >= set(task_ids):
                finished.set()

    async def on_connect() -> None:
        # After every (re)connect: subscribe again and start from the snapshot in the ack.
        ack = await client.call("subscribe", {"task_ids": task_ids}, timeout=10)
        for refused in ack.get("refused", []):
            print(f"{refused}: not yours or not found")
        for task in ack.get("tasks", []):
            show(task)

    async def on_task(event: dict[str, Any]) -> None:
        show(event["payload"])

    async def on_quota(event: dict[str, Any]) -> None:
        quota = event["payload"]
        print(f"quota: {quota['available']} available ({quota['held']} held)")

    client.on("connect", on_connect)
    client.on("task.updated", on_task)
    client.on("quota.updated", on_quota)
    await client.connect(base_url, auth={"token": token}, socketio_path="socket.io", transports=["websocket"])
    try:
        await finished.wait()
    finally:
        await client.disconnect()


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    asyncio.run(watch(sys.argv[1], sys.argv[2], sys.argv[3:]))
