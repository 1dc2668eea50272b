"""OpenTelemetry tracing, off unless ``WARDROBE_OTEL_ENDPOINT`` names an OTLP/HTTP collector.

When on (``setup``), a process exports its spans (resource ``service.name=wardrobe-<role>``) in
batches to ``<endpoint>/v1/traces``; FastAPI (every request, an incoming ``traceparent``
honoured), httpx (vendor calls), SQLAlchemy (statements) and the task queue (taskiq's own
OpenTelemetry middleware, which carries the context in the message's labels) are instrumented,
and a task's run is a span of the trace of the request that created it, in whichever worker and
however often it runs (the task row keeps the request's ``traceparent``). The request id is then
the trace id, so a log line and its trace are found by one id.

The SDK is imported only when tracing is on: a process without it pays nothing, and every function
here is a cheap no-op then.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_provider: Any = None  # the SDK's TracerProvider once set up


def enabled() -> bool:
    return _provider is not None


def setup(endpoint: str, *, role: str, sample_ratio: float = 1.0) -> bool:
    """Start exporting spans to ``endpoint`` (nothing when it is empty) and instrument the
    libraries; once per process. Returns whether tracing is on."""
    global _provider
    if not endpoint or _provider is not None:
        return _provider is not None
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    provider = TracerProvider(
        resource=Resource.create({"service.name": f"wardrobe-{role}"}),
        # A caller's sampled traceparent is followed; the ratio decides for traces that start here.
        sampler=ParentBased(TraceIdRatioBased(sample_ratio)),
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint.rstrip('/')}/v1/traces")))
    trace.set_tracer_provider(provider)
    HTTPXClientInstrumentor().instrument(tracer_provider=provider)
    # Patches engine creation: the process's engines are made after this (build_infra). The
    # instrumentation declares SQLAlchemy < 2.1 and would otherwise do nothing on 2.1; it only
    # listens to the engine's cursor events, unchanged in 2.1 (the tracing test checks its spans).
    SQLAlchemyInstrumentor().instrument(tracer_provider=provider, enable_commenter=False, skip_dep_check=True)
    _provider = provider
    return True


def shutdown() -> None:
    """Send the spans still buffered (at a process's end)."""
    global _provider
    if _provider is not None:
        _provider.shutdown()
        _provider = None


def instrument_app(app: Any) -> None:
    """Trace every request of a FastAPI app (outermost, so the edge middleware sees the span)."""
    if _provider is None:
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(app, tracer_provider=_provider, excluded_urls="/health,/metrics")


def queue_middlewares() -> list[Any]:
    """The taskiq middlewares a broker takes: its OpenTelemetry one when tracing is on."""
    if _provider is None:
        return []
    from taskiq.middlewares.opentelemetry_middleware import OpenTelemetryMiddleware

    return [OpenTelemetryMiddleware(tracer_provider=_provider)]


def active_trace_id() -> str | None:
    """The current span's trace id (32 hex), or None without tracing or outside any span."""
    if _provider is None:
        return None
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the current span (stored where work is carried onwards)."""
    if _provider is None:
        return None
    from opentelemetry.propagate import inject

    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier.get("traceparent")


@contextmanager
def resumed(traceparent: str | None) -> Iterator[None]:
    """Make ``traceparent`` the current context inside (what a relay publishes then belongs to
    the trace of the request that wrote the message)."""
    if _provider is None or not traceparent:
        yield
        return
    from opentelemetry import context
    from opentelemetry.propagate import extract

    token = context.attach(extract({"traceparent": traceparent}))
    try:
        yield
    finally:
        context.detach(token)


@contextmanager
def span(name: str, traceparent: str | None = None, **attributes: Any) -> Iterator[None]:
    """A span around a stretch of work: a child of the current span, or, when there is none (a
    task resumed by the reaper, a run whose message carried no context), of ``traceparent``."""
    if _provider is None:
        yield
        return
    from opentelemetry import trace
    from opentelemetry.propagate import extract

    parent = None
    if not trace.get_current_span().get_span_context().is_valid and traceparent:
        parent = extract({"traceparent": traceparent})
    tracer = _provider.get_tracer("wardrobe")
    with tracer.start_as_current_span(name, context=parent, attributes=attributes):
        yield
