"""The RunningHub peer's ASGI app: API calls to ``RunningHubPeer.handle``, result files, and
``/__peer/…`` hooks for clients outside this process."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.peers.runninghub import FAILED, FILES_PREFIX, QUEUED, RUNNING, SUCCESS, RunningHubPeer

_HOLD_SECONDS = 60.0  # a swallowed answer is let go after this at the latest


def parse_multipart(content_type: str, body: bytes) -> tuple[dict[str, str], dict[str, tuple[str, bytes]]]:
    """Form fields and files of a ``multipart/form-data`` body (the project has no multipart
    library; the peer needs only this much)."""
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if match is None:
        raise ValueError("no boundary")
    fields: dict[str, str] = {}
    files: dict[str, tuple[str, bytes]] = {}
    for part in body.split(b"--" + match.group(1).encode())[1:]:
        if part.startswith(b"--"):
            break
        head, sep, content = part.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        if not sep:
            continue
        content = content.removesuffix(b"\r\n")
        disposition = next(
            (
                line
                for line in head.decode("utf-8", "replace").split("\r\n")
                if line.lower().startswith("content-disposition")
            ),
            "",
        )
        name = re.search(r'(?:^|;)\s*name="([^"]*)"', disposition)
        filename = re.search(r'filename="([^"]*)"', disposition)
        if name is None:
            continue
        if filename is not None:
            files[name.group(1)] = (filename.group(1), content)
        else:
            fields[name.group(1)] = content.decode("utf-8", "replace")
    return fields, files


def create_runninghub_app(peer: RunningHubPeer) -> Starlette:
    """The ASGI app; tests may replace ``app.state.peer`` to start from fresh state."""

    def current(request: Request) -> RunningHubPeer:
        state: RunningHubPeer = request.app.state.peer
        return state

    async def api(request: Request) -> Response:
        peer = current(request)
        server = request.scope.get("server") or ("127.0.0.1", 80)
        base_url = f"http://{server[0]}:{server[1]}"
        body = await request.body()
        payload: Mapping[str, Any] | None = None
        upload: tuple[str, bytes] | None = None
        content_type = request.headers.get("content-type", "")
        if request.method != "POST":
            payload = {}  # any method but POST is an unknown path to RunningHub
        elif content_type.startswith("multipart/form-data"):
            try:
                payload, files = parse_multipart(content_type, body)
                upload = files.get("file")
            except ValueError:
                payload = None
        else:
            try:
                decoded = json.loads(body or b"{}")
                payload = decoded if isinstance(decoded, dict) else None
            except ValueError:
                payload = None
        path = request.url.path if request.method == "POST" else f"{request.method} {request.url.path}"
        answer = peer.handle(
            path, authorization=request.headers.get("authorization"), payload=payload, base_url=base_url, upload=upload
        )
        if answer.hold:
            await run_in_threadpool(peer.held_answers_released.wait, _HOLD_SECONDS)
        return Response(answer.body, status_code=answer.status, media_type=answer.media_type)

    async def served_file(request: Request) -> Response:
        found = current(request).served_file(request.path_params["task_id"], request.path_params["name"])
        if found is None:
            return Response(b"Not Found", status_code=404, media_type="text/plain")
        media = "image/png" if found.file_type == "png" else f"application/{found.file_type}"
        return Response(found.content, media_type=media)

    async def lifecycle_hook(request: Request) -> Response:
        """``POST /__peer/tasks/{id}/{start|succeed|fail}`` for clients outside this process."""
        peer = current(request)
        task_id, action = request.path_params["task_id"], request.path_params["action"]
        if task_id not in peer.tasks or action not in ("start", "succeed", "fail"):
            return JSONResponse({"error": "no such task or action"}, status_code=404)
        try:
            task = getattr(peer, action)(task_id)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=409)
        return JSONResponse({"taskId": task.task_id, "status": task.status})

    async def auto_hook(request: Request) -> Response:
        """``POST /__peer/auto {"queued_s": …, "running_s": …}``; ``{"manual": true}`` stops it."""
        peer = current(request)
        body = await request.json()
        if body.get("manual"):
            peer.manual()
        else:
            peer.auto(float(body.get("queued_s", 0.0)), float(body.get("running_s", 0.0)))
        return JSONResponse({"ok": True})

    async def stats_hook(request: Request) -> Response:
        peer = current(request)
        with peer._lock:
            return JSONResponse(
                {
                    "calls": dict(peer.calls),
                    "creates_by_key": dict(peer.creates_by_key),
                    "peak_in_flight": dict(peer.peak_in_flight),
                    "refused_421": len(peer.refusals_with(421)),
                    "tasks": {
                        status: sum(1 for t in peer.tasks.values() if t.status == status)
                        for status in (QUEUED, RUNNING, SUCCESS, FAILED)
                    },
                }
            )

    app = Starlette(
        routes=[
            Route(FILES_PREFIX + "/{task_id}/{name}", served_file, methods=["GET"]),
            Route("/__peer/tasks/{task_id}/{action}", lifecycle_hook, methods=["POST"]),
            Route("/__peer/auto", auto_hook, methods=["POST"]),
            Route("/__peer/stats", stats_hook, methods=["GET"]),
            Route("/{path:path}", api, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
        ]
    )
    app.state.peer = peer
    return app
