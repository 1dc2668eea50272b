"""The pipeline engine's settings: leases, back-off and the limits shared by every worker."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class EngineConfig:
    lease_seconds: float = 30.0
    heartbeat_seconds: float = 10.0
    max_backoff_seconds: float = 30.0
    # Provider slug -> calls in flight allowed across every worker; absent = unlimited.
    provider_concurrency: Mapping[str, int] = field(default_factory=dict)
    # Provider slug -> request rate windows ("5/second;300/minute"), across every worker.
    provider_rates: Mapping[str, str] = field(default_factory=dict)
    # Tasks of one user running at once; a claim beyond it leaves the task queued. 0 = no limit.
    user_max_running: int = 0
