"""Prometheus metrics. Multiprocess-safe when PROMETHEUS_MULTIPROC_DIR is set (gunicorn)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import REGISTRY, Collector

HTTP_REQUESTS = Counter(
    "wardrobe_http_requests_total", "HTTP requests by route template", ["method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "wardrobe_http_request_duration_seconds",
    "HTTP latency by route template",
    ["method", "route"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0),
)
SOCKET_EVENTS = Counter(
    "wardrobe_socket_events_total",
    "Socket.IO connects by outcome (accepted or the refusal code) and drops by reason",
    ["event", "outcome"],
)
AUTH_EVENTS = Counter("wardrobe_auth_events_total", "Authentication outcomes", ["event", "outcome"])
CACHE_REQUESTS = Counter(
    "wardrobe_cache_requests_total",
    "Cache lookups by namespace and result (hit, negative_hit, miss, coalesced)",
    ["cache", "result"],
)
CACHE_INVALIDATIONS = Counter(
    "wardrobe_cache_invalidations_total",
    "Cache invalidations applied, made here (local) or broadcast by another process (remote)",
    ["cache", "origin"],
)
RATE_LIMITED = Counter("wardrobe_rate_limited_total", "Requests refused with 429 at the edge", ["endpoint_class"])
RATE_LIMIT_STORE_FAILURES = Counter(
    "wardrobe_rate_limit_store_failures_total",
    "Rate-limit checks the store could not answer, by what the request got (closed = refused)",
    ["policy"],
)
DEPENDENCY_FAILURES = Counter(
    "wardrobe_dependency_failures_total", "Requests answered 503 because a dependency failed", ["dependency"]
)
PAYMENT_EVENTS = Counter(
    "wardrobe_payment_events_total",
    "Orders, payments, refunds and reconciliation outcomes by provider",
    ["provider", "event"],
)
STORAGE_GC = Counter(
    "wardrobe_storage_gc_reclaimed_total", "What the orphan cleanup deleted (objects, bytes)", ["unit"]
)
VENDOR_CALLBACKS = Counter(
    "wardrobe_vendor_callbacks_total",
    "Vendor callbacks by provider and outcome (accepted, duplicate, bad_signature, malformed)",
    ["provider", "outcome"],
)
SMS_SENT = Counter("wardrobe_sms_sent_total", "SMS codes sent", ["backend", "outcome"])


class DbPoolCollector(Collector):
    """Reads the SQLAlchemy pool at scrape time, so the gauges are never stale."""

    def __init__(self, status: Callable[[], dict[str, int]]) -> None:
        self._status = status

    def collect(self) -> Iterator[GaugeMetricFamily]:
        status = self._status()
        for key, value in status.items():
            yield GaugeMetricFamily(f"wardrobe_db_pool_{key}", f"DB pool {key.replace('_', ' ')}", value=value)


_pool_collector: DbPoolCollector | None = None


def register_pool_collector(status: Callable[[], dict[str, int]]) -> None:
    global _pool_collector
    if _pool_collector is not None:
        REGISTRY.unregister(_pool_collector)
    _pool_collector = DbPoolCollector(status)
    REGISTRY.register(_pool_collector)


def render_metrics() -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        body = generate_latest(registry)
        if _pool_collector is not None:
            local = CollectorRegistry()
            local.register(DbPoolCollector(_pool_collector._status))
            body += generate_latest(local)
        return body, CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


# Scheduler (worker/scheduler.py): set by `wardrobe scheduler`, one process per instance. The
# timestamps are unix seconds; a heartbeat or a last success falling behind is what alerts watch.
SCHEDULER_LEADER = Gauge(
    "wardrobe_scheduler_leader",
    "1 in the scheduler instance that holds the leader lock (runs the jobs), 0 in a standby",
    multiprocess_mode="livemax",
)
SCHEDULER_HEARTBEAT = Gauge(
    "wardrobe_scheduler_heartbeat_timestamp_seconds",
    "When the scheduler's loop last ticked (unix time), leader or standby",
    multiprocess_mode="max",
)
SCHEDULER_JOB_LAST_SUCCESS = Gauge(
    "wardrobe_scheduler_job_last_success_timestamp_seconds",
    "When each periodic job last succeeded (unix time), as recorded in the database",
    ["job"],
    multiprocess_mode="max",
)
SCHEDULER_JOB_RUNS = Counter(
    "wardrobe_scheduler_job_runs_total",
    "Periodic job runs by outcome: ok, error, or skipped (due here, but started by another instance "
    "or left because this one stopped leading)",
    ["job", "outcome"],
)
