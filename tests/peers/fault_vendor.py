"""A fault-injecting AI vendor for engine tests: a real HTTP server, so that calls from several
worker processes are counted on the vendor's side (in-flight concurrency, submissions per job).

Scenarios are set per ``key`` (the test's choice) before the task runs:
``fail_times`` (answer 500 that many times), ``fail_code`` (answer a permanent 400 with that code),
``hold`` (sync calls and async jobs stay unfinished until ``release(key)``).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


@dataclass
class Scenario:
    fail_times: int = 0
    fail_code: str | None = None
    hold: bool = False


@dataclass
class FaultVendor:
    scenarios: dict[str, Scenario] = field(default_factory=dict)
    calls: Counter[str] = field(default_factory=Counter)
    submissions: Counter[str] = field(default_factory=Counter)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    in_flight: int = 0
    max_in_flight: int = 0
    # Keys in flight at the vendor, and for each call the keys in flight with it (itself included).
    in_flight_keys: Counter[str] = field(default_factory=Counter)
    # The X-Request-Id each call to a key came with ("" without one).
    request_ids: dict[str, list[str]] = field(default_factory=dict)
    overlaps: list[frozenset[str]] = field(default_factory=list)
    # When each run or submit request arrived (time.monotonic()), in arrival order.
    arrivals: list[float] = field(default_factory=list)
    released: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _conditions: dict[str, threading.Event] = field(default_factory=dict)

    def scenario(self, key: str, **settings: Any) -> None:
        self.scenarios[key] = Scenario(**settings)

    def release(self, key: str) -> None:
        with self._lock:
            self.released.add(key)
            event = self._conditions.setdefault(key, threading.Event())
        event.set()

    def _event(self, key: str) -> threading.Event:
        with self._lock:
            return self._conditions.setdefault(key, threading.Event())

    def _failure(self, key: str, request_id: str = "") -> JSONResponse | None:
        scenario = self.scenarios.get(key, Scenario())
        with self._lock:
            self.request_ids.setdefault(key, []).append(request_id)
            self.arrivals.append(time.monotonic())
            self.calls[key] += 1
            count = self.calls[key]
        if scenario.fail_code:
            return JSONResponse({"error": scenario.fail_code}, status_code=400)
        if count <= scenario.fail_times:
            return JSONResponse({"error": "overloaded"}, status_code=500)
        return None


def create_fault_vendor_app(vendor: FaultVendor) -> Starlette:
    def current() -> FaultVendor:
        state: FaultVendor = app.state.vendor
        return state

    async def run(request: Request) -> JSONResponse:
        body = await request.json()
        v = current()
        key = str(body["key"])
        failure = v._failure(key, request.headers.get("x-request-id", ""))
        if failure is not None:
            return failure
        with v._lock:
            v.in_flight += 1
            v.max_in_flight = max(v.max_in_flight, v.in_flight)
            v.in_flight_keys[key] += 1
            v.overlaps.append(frozenset(v.in_flight_keys))
        try:
            if v.scenarios.get(key, Scenario()).hold:
                import anyio

                # Block this request (not the server) until the test releases the key.
                await anyio.to_thread.run_sync(v._event(key).wait, 30)
            return JSONResponse({"result": f"done:{key}", "echo": body.get("payload")})
        finally:
            with v._lock:
                v.in_flight -= 1
                v.in_flight_keys[key] -= 1
                if not v.in_flight_keys[key]:
                    del v.in_flight_keys[key]

    async def submit(request: Request) -> JSONResponse:
        body = await request.json()
        v = current()
        key = str(body["key"])
        failure = v._failure(key, request.headers.get("x-request-id", ""))
        if failure is not None:
            return failure
        job_id = uuid.uuid4().hex
        with v._lock:
            v.submissions[key] += 1
            v.jobs[job_id] = {"key": key}
        return JSONResponse({"job_id": job_id})

    async def poll(request: Request) -> JSONResponse:
        v = current()
        job = v.jobs.get(request.path_params["job_id"])
        if job is None:
            return JSONResponse({"error": "unknown_job"}, status_code=404)
        key = job["key"]
        scenario = v.scenarios.get(key, Scenario())
        if scenario.hold and key not in v.released:
            return JSONResponse({"state": "running"})
        return JSONResponse({"state": "succeeded", "result": f"job:{key}"})

    app = Starlette(
        routes=[
            Route("/run", run, methods=["POST"]),
            Route("/jobs", submit, methods=["POST"]),
            Route("/jobs/{job_id}", poll, methods=["GET"]),
        ]
    )
    app.state.vendor = vendor
    return app
