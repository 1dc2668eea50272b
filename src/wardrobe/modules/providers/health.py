"""Provider health: a circuit breaker per provider over its recent calls.

up → degraded when the recent failure rate passes ``degraded_rate``; → down (open) past
``open_rate``. While down, calls skip the provider (the engine falls back to the next candidate)
until ``open_seconds`` pass; then one probe call is let through (half-open): success closes the
circuit, failure opens it again. Only failures that say the provider is unwell count (timeouts,
5xx, refused connections); a provider that answers "bad input" is healthy.

The breaker lives in each worker process (each learns from its own calls, as in most breaker
designs); state changes are reported through ``on_change`` so operators see them in one place,
and ``ProviderHealth`` reads them back for the operators' view.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from redis.asyncio import Redis

from wardrobe.core.metrics import PROVIDER_CIRCUIT_OPEN


class Health(StrEnum):
    UP = "up"
    DEGRADED = "degraded"
    DOWN = "down"


@dataclass
class _Circuit:
    outcomes: deque[tuple[bool, float]]
    state: Health = Health.UP
    opened_at: float = 0.0
    probing: bool = False


@dataclass
class CircuitBreaker:
    window: int = 20
    min_calls: int = 5
    degraded_rate: float = 0.2
    open_rate: float = 0.5
    open_seconds: float = 30.0
    clock: Callable[[], float] = time.monotonic
    on_change: Callable[[str, dict[str, Any]], None] | None = None
    _circuits: dict[str, _Circuit] = field(default_factory=dict)

    def _circuit(self, provider: str) -> _Circuit:
        circuit = self._circuits.get(provider)
        if circuit is None:
            circuit = self._circuits[provider] = _Circuit(deque(maxlen=self.window))
        return circuit

    def allow(self, provider: str) -> bool:
        """May a call go to ``provider`` now? While open, only one half-open probe at a time."""
        circuit = self._circuit(provider)
        if circuit.state is not Health.DOWN:
            return True
        if circuit.probing or self.clock() - circuit.opened_at < self.open_seconds:
            return False
        circuit.probing = True
        return True

    def record(self, provider: str, ok: bool, latency_seconds: float = 0.0) -> None:
        circuit = self._circuit(provider)
        before = circuit.state
        if circuit.probing:
            circuit.probing = False
            if ok:
                circuit.outcomes.clear()
                circuit.state = Health.UP
            else:
                circuit.opened_at = self.clock()
        else:
            circuit.outcomes.append((ok, latency_seconds))
            calls = len(circuit.outcomes)
            if calls >= self.min_calls and circuit.state is not Health.DOWN:
                rate = sum(1 for good, _ in circuit.outcomes if not good) / calls
                if rate >= self.open_rate:
                    circuit.state = Health.DOWN
                    circuit.opened_at = self.clock()
                elif rate >= self.degraded_rate:
                    circuit.state = Health.DEGRADED
                else:
                    circuit.state = Health.UP
        PROVIDER_CIRCUIT_OPEN.labels(provider).set(1 if circuit.state is Health.DOWN else 0)
        if circuit.state is not before and self.on_change is not None:
            self.on_change(provider, self.snapshot_of(provider))

    def snapshot_of(self, provider: str) -> dict[str, Any]:
        circuit = self._circuit(provider)
        calls = len(circuit.outcomes)
        failures = sum(1 for good, _ in circuit.outcomes if not good)
        latencies = sorted(latency for _, latency in circuit.outcomes)
        return {
            "state": circuit.state.value,
            "recent_calls": calls,
            "failure_rate": round(failures / calls, 3) if calls else 0.0,
            "p50_latency_ms": round(latencies[calls // 2] * 1000, 1) if calls else None,
        }

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return {provider: self.snapshot_of(provider) for provider in self._circuits}


class ProviderHealth:
    """The latest health of every provider as operators see it: what the workers' breakers
    published to the Redis hash ``key`` when the processes share Redis, else this process's own
    breaker (embedded mode, where this process is the only worker)."""

    def __init__(self, redis: Redis | None, key: str, breaker: CircuitBreaker) -> None:
        self._redis = redis
        self._key = key
        self._breaker = breaker

    async def snapshot(self) -> dict[str, dict[str, Any]]:
        if self._redis is None:
            return self._breaker.snapshot()
        raw = await self._redis.hgetall(self._key)
        return {(k.decode() if isinstance(k, bytes) else str(k)): json.loads(v) for k, v in raw.items()}
