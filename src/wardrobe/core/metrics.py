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

# -- tasks and the engine ---------------------------------------------------------------------------
# Labels are bounded sets (features, providers, actions, accounts that operators configure); never a
# user's or a task's id.
_LONG = (0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
_SHORT = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
TASKS_CREATED = Counter("wardrobe_tasks_created_total", "Task creations accepted (committed)", ["feature"])
TASKS_FINISHED = Counter(
    "wardrobe_tasks_finished_total", "Tasks that reached a terminal state (committed)", ["feature", "status"]
)
TASK_DURATION = Histogram(
    "wardrobe_task_duration_seconds", "A task's time from creation to its terminal state", ["feature"], buckets=_LONG
)
TASK_QUEUE_WAIT = Histogram(
    "wardrobe_task_queue_wait_seconds",
    "A task's time from creation to its first claim by a worker",
    ["feature"],
    buckets=_SHORT,
)
STEP_DURATION = Histogram(
    "wardrobe_step_duration_seconds",
    "One step on one provider candidate, slot wait and retries included, whatever the outcome",
    ["provider", "action"],
    buckets=_LONG,
)
STEP_RETRIES = Counter(
    "wardrobe_step_retries_total", "Calls of a step made again after a retryable failure", ["provider", "action"]
)
STEP_FALLBACKS = Counter(
    "wardrobe_step_fallbacks_total",
    "Steps that gave a provider up for their next candidate (provider: the one given up on)",
    ["action", "provider"],
)

# -- providers -------------------------------------------------------------------------------------
PROVIDER_CALLS = Counter(
    "wardrobe_provider_calls_total",
    "Provider calls by outcome (ok, error, timeout, busy: no slot or rate room in time); account - when none",
    ["provider", "account", "outcome"],
)
PROVIDER_CALL_DURATION = Histogram(
    "wardrobe_provider_call_duration_seconds",
    "One provider call (a synchronous call, or an async job from submit to its end)",
    ["provider"],
    buckets=_SHORT,
)
# Per process, summed across processes (livesum: a dead process's count is dropped).
PROVIDER_SLOTS_IN_USE = Gauge(
    "wardrobe_provider_slots_in_use",
    "Provider slots held by this process's steps",
    ["provider"],
    multiprocess_mode="livesum",
)
PROVIDER_SLOTS_WAITING = Gauge(
    "wardrobe_provider_slots_waiting",
    "Steps of this process waiting for a provider slot",
    ["provider"],
    multiprocess_mode="livesum",
)
PROVIDER_CIRCUIT_OPEN = Gauge(
    "wardrobe_provider_circuit_open",
    "1 while this process's circuit breaker for the provider (or provider account) is open",
    ["provider"],
    multiprocess_mode="livemax",
)

# -- queue, outbox and infrastructure: set by the periodic probe (worker/probe.py), never a scrape --
QUEUE_DEPTH = Gauge(
    "wardrobe_queue_depth",
    "Messages in the task stream not yet delivered to a worker",
    ["queue"],
    multiprocess_mode="livemax",
)
QUEUE_PENDING = Gauge(
    "wardrobe_queue_pending",
    "Messages delivered to a worker and not acknowledged",
    ["queue"],
    multiprocess_mode="livemax",
)
QUEUE_OLDEST_AGE = Gauge(
    "wardrobe_queue_oldest_age_seconds",
    "Age of the oldest message not yet acknowledged (waiting or pending)",
    ["queue"],
    multiprocess_mode="livemax",
)
OUTBOX_BACKLOG = Gauge("wardrobe_outbox_backlog", "Outbox rows not yet published", multiprocess_mode="livemax")
OUTBOX_OLDEST_AGE = Gauge(
    "wardrobe_outbox_oldest_age_seconds", "Age of the oldest unpublished outbox row", multiprocess_mode="livemax"
)
DEPENDENCY_UP = Gauge(
    "wardrobe_dependency_up",
    "1 when the dependency answered the last probe, else 0",
    ["dependency"],
    multiprocess_mode="livemin",
)
DISK_FREE_RATIO = Gauge(
    "wardrobe_disk_free_ratio",
    "Free/total space of the var dir and local storage root",
    ["path"],
    multiprocess_mode="livemin",
)

# -- quota -------------------------------------------------------------------------------------------
QUOTA_OPERATIONS = Counter(
    "wardrobe_quota_operations_total",
    "Committed quota ledger entries (reserve, confirm, cancel, grant, expire, adjust)",
    ["operation"],
)
QUOTA_UNITS = Counter("wardrobe_quota_units_total", "Quota units moved by committed ledger entries", ["operation"])

# -- sockets -----------------------------------------------------------------------------------------
SOCKETS_CONNECTED = Gauge(
    "wardrobe_sockets_connected", "Socket.IO connections accepted and open in this process", multiprocess_mode="livesum"
)
PUSH_LAG = Histogram(
    "wardrobe_push_lag_seconds",
    "From a change's commit (its outbox row's write, for a relayed push) to its event emitted to sockets",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)

# -- payments ----------------------------------------------------------------------------------------
PAYMENT_NOTIFICATIONS = Counter(
    "wardrobe_payment_notifications_total",
    "Payment platforms' notifications by outcome (accepted, duplicate, bad_signature, mismatch, error)",
    ["provider", "outcome"],
)
RECONCILIATION_REPAIRS = Counter(
    "wardrobe_reconciliation_repairs_total",
    "What reconciliation repaired: a payment or refund whose notification never arrived",
    ["provider"],
)

# -- database ----------------------------------------------------------------------------------------
DB_SLOW_QUERIES = Counter(
    "wardrobe_db_slow_queries_total", "Statements slower than WARDROBE_SLOW_QUERY_MS", ["operation"]
)


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
    # Not "job": Prometheus sets that label to the scrape job and would rename ours exported_job.
    ["name"],
    multiprocess_mode="max",
)
SCHEDULER_JOB_RUNS = Counter(
    "wardrobe_scheduler_job_runs_total",
    "Periodic job runs by outcome: ok, error, or skipped (due here, but started by another instance "
    "or left because this one stopped leading)",
    ["name", "outcome"],
)
