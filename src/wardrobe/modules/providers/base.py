"""What the pipeline engine asks of a provider, and the registry that finds one by slug.

Two shapes, one per step type: a ``SyncProvider`` answers in the call (``sync_api``); an
``AsyncProvider`` accepts a job and is polled (``async_api``, ``scf``) — the vendor's job id is
persisted between the two, so a resumed step re-attaches instead of submitting again.

A provider that does its work inside the worker process says so with ``in_process = True`` (the
local CPU provider): its calls end when the worker dies, so a dead worker's provider slot need not
wait for them (``pipeline/held_slots.py``). Any other provider counts as an external vendor.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from wardrobe.modules.providers.accounts import Account


class ProviderError(Exception):
    """A step failed at the provider. ``retryable`` says whether the same call may succeed later;
    ``broken`` that the provider itself cannot work (bad key, no funds, wrong endpoint): no retry
    on it, the circuit breaker counts it as a failure, the step falls back to the next candidate.
    ``code`` is stable and safe to store (never a raw vendor message)."""

    def __init__(self, code: str, message: str = "", *, retryable: bool = False, broken: bool = False) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message
        self.retryable = retryable
        self.broken = broken


class JobState(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class JobStatus:
    state: JobState
    outputs: dict[str, Any] = field(default_factory=dict)
    error_code: str | None = None


@dataclass(frozen=True, slots=True)
class StepContext:
    """What a provider may know about the call: enough to name its outputs, nothing more."""

    task_id: str
    user_id: int
    step_id: str
    attempt: int
    # When the step first started (persisted): fixes where its outputs are stored, however often
    # and by whichever worker they are fetched.
    started_at: datetime | None = None
    # The vendor account to call as (accounts.py); None = the provider's own settings.
    account: Account | None = None


@runtime_checkable
class SyncProvider(Protocol):
    slug: str

    def supports(self, action: str) -> bool: ...

    async def run(self, action: str, inputs: Mapping[str, Any], ctx: StepContext) -> dict[str, Any]: ...


@runtime_checkable
class AsyncProvider(Protocol):
    slug: str

    def supports(self, action: str) -> bool: ...

    async def submit(self, action: str, inputs: Mapping[str, Any], ctx: StepContext) -> str: ...

    async def poll(self, job_id: str, ctx: StepContext) -> JobStatus: ...


@runtime_checkable
class CancellableProvider(Protocol):
    """An async provider whose jobs can be stopped at the vendor (a canceled task stops costing)."""

    async def cancel(self, job_id: str, ctx: StepContext) -> None: ...


Provider = SyncProvider | AsyncProvider


class ProviderRegistry:
    def __init__(self) -> None:
        self._providers: dict[str, Provider] = {}

    def register(self, provider: Provider) -> None:
        self._providers[provider.slug] = provider

    def get(self, slug: str) -> Provider | None:
        return self._providers.get(slug)

    def slugs(self) -> list[str]:
        return sorted(self._providers)

    def problems_for(self, step_type: str, action: str, candidates: list[str]) -> list[str]:
        """Why this step could not run here (empty when it can): unknown providers, wrong shape,
        unsupported action. Used to refuse a pipeline when an operator saves it."""
        problems = []
        for position, slug in enumerate(candidates):
            provider = self._providers.get(slug)
            if provider is None:
                problems.append(f"unknown provider {slug!r}")
                continue
            wants_async = step_type in ("async_api", "scf")
            # A provider that answers in the call may serve an async step as a fallback (the local
            # CPU provider behind a vendor job), never as its first choice.
            fallback_ok = wants_async and position > 0 and isinstance(provider, SyncProvider)
            if wants_async and not isinstance(provider, AsyncProvider) and not fallback_ok:
                problems.append(f"provider {slug!r} cannot run {step_type} steps")
            elif not wants_async and not isinstance(provider, SyncProvider):
                problems.append(f"provider {slug!r} cannot run sync_api steps")
            elif not provider.supports(action):
                problems.append(f"provider {slug!r} has no action {action!r}")
        return problems
