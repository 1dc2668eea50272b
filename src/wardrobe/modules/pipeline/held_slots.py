"""The provider slots one run of a task holds, and how long each may outlive the run.

A slot is leased for as long as the task's own lease (``EngineConfig.lease_seconds``) and renewed
by the run's heartbeat together with the task's lease, so a worker that dies gives its slots back
about when its tasks become claimable again — not after the longest its calls could last.

The one thing that may outlive a dead worker is a call still running at an external vendor: an
HTTP request the vendor keeps executing after its caller is gone, or a vendor job. While such a
call is out, its slot is leased until the call's own deadline, so a run that resumes the step
(and calls again) never takes the vendor past its limit. An in-process provider (the local CPU
provider) stops with its worker: nothing of it outlives the short lease. A run that is stopped,
canceled or loses its lease mid-call leaves the slot the same way: the vendor cannot tell a worker
that stopped from one that died.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from redis.exceptions import RedisError

from wardrobe.core.logging import get_logger
from wardrobe.modules.providers.slots import NO_ACCOUNT, SlotStore

log = get_logger("wardrobe.engine")

# The slot's lease is set just before the request leaves; the vendor receives it a moment later
# and may run it for the call's whole timeout from there.
CALL_MARGIN_SECONDS = 1.0


def runs_in_process(provider: object) -> bool:
    """Whether the provider does its work in this process (it stops when the worker does). Any
    other provider is assumed to be an external vendor: the safe default for the vendor's limit."""
    return bool(getattr(provider, "in_process", False))


@dataclass(slots=True)
class _Held:
    provider: str
    holder: str
    account: str
    # time.monotonic() until which a call of ours may still be running at the vendor; None: none out.
    call_until: float | None = None


class HeldSlots:
    """The slots of one run, by step id (a step holds at most one slot at a time)."""

    def __init__(self, store: SlotStore, lease_seconds: float) -> None:
        self._store = store
        self.lease_seconds = lease_seconds
        self._held: dict[str, _Held] = {}

    def took(self, step_id: str, provider: str, holder: str, account: str = NO_ACCOUNT) -> None:
        self._held[step_id] = _Held(provider, holder, account)

    async def call_out(self, step_id: str, seconds: float) -> None:
        """A call to an external vendor that may run there for up to ``seconds`` starts now: its
        slot is leased that long before it leaves, so it stays taken even if this worker dies."""
        held = self._held.get(step_id)
        if held is None or seconds <= 0:
            return
        held.call_until = time.monotonic() + seconds
        await self._store.renew(held.provider, held.holder, held.account, seconds + CALL_MARGIN_SECONDS)

    def call_over(self, step_id: str) -> None:
        """The vendor answered (or the call's deadline passed): nothing of it runs there any more."""
        held = self._held.get(step_id)
        if held is not None:
            held.call_until = None

    async def release(self, step_id: str) -> None:
        held = self._held.pop(step_id, None)
        if held is None:
            return
        left = held.call_until - time.monotonic() if held.call_until is not None else 0.0
        if left > 0:
            # The run left a call out (stopped, canceled, lease lost): the vendor may still be
            # running it, so its slot ends with that call's deadline instead of now.
            log.info("provider_slot_kept_for_call", provider=held.provider, seconds=round(left, 1))
            await self._store.release(held.provider, held.holder, held.account, after=left + CALL_MARGIN_SECONDS)
        else:
            await self._store.release(held.provider, held.holder, held.account)

    async def renew(self) -> None:
        """The heartbeat, after the task's lease was renewed: every slot held lasts another lease."""
        for step_id, held in list(self._held.items()):
            try:
                alive = await self._store.renew(held.provider, held.holder, held.account, self.lease_seconds)
            except (RedisError, OSError) as exc:
                # Not fatal to the run: the lease has room for the next heartbeat to try again.
                log.warning("provider_slot_not_renewed", provider=held.provider, error=type(exc).__name__)
                continue
            if not alive and self._held.get(step_id) is held:
                # The heartbeat came later than the lease (an overloaded process) or Redis lost its
                # data: another step may take the slot while this call runs. Said, not hidden.
                log.warning("provider_slot_lapsed", provider=held.provider, step=step_id)
