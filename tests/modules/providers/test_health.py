"""The circuit breaker: opens on failures, half-opens after a pause, closes on a good probe."""

from __future__ import annotations

from typing import Any

from wardrobe.modules.providers.health import CircuitBreaker, Health


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_opens_half_opens_and_closes() -> None:
    clock = Clock()
    changes: list[tuple[str, str]] = []
    breaker = CircuitBreaker(
        window=10,
        min_calls=4,
        open_rate=0.5,
        degraded_rate=0.25,
        open_seconds=30,
        clock=clock,
        on_change=lambda p, snap: changes.append((p, snap["state"])),
    )
    for ok in (True, True, True, False):
        breaker.record("v", ok)
    assert breaker.snapshot_of("v")["state"] == Health.DEGRADED
    for _ in range(2):
        breaker.record("v", False)
    assert breaker.snapshot_of("v")["state"] == Health.DOWN
    assert not breaker.allow("v")  # open: calls go elsewhere
    clock.now += 29
    assert not breaker.allow("v")
    clock.now += 2
    assert breaker.allow("v")  # half-open: one probe
    assert not breaker.allow("v")  # ... and only one
    breaker.record("v", False)  # the probe failed: open again, for another pause
    assert not breaker.allow("v")
    clock.now += 31
    assert breaker.allow("v")
    breaker.record("v", True)  # the probe succeeded: closed
    assert breaker.snapshot_of("v")["state"] == Health.UP
    assert breaker.allow("v")
    assert changes == [("v", "degraded"), ("v", "down"), ("v", "up")]


def test_few_calls_do_not_trip_it_and_providers_are_independent() -> None:
    breaker = CircuitBreaker(min_calls=5, clock=Clock())
    for _ in range(4):
        breaker.record("a", False)
    breaker.record("b", True)
    assert breaker.allow("a")
    snapshot: dict[str, Any] = breaker.snapshot()
    assert snapshot["a"]["state"] == "up"
    assert snapshot["a"]["failure_rate"] == 1.0
    assert snapshot["b"]["recent_calls"] == 1
