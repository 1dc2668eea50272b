"""One claimed run of a task, in order: load the task and its persisted steps, check and screen its
uploads, walk its steps (forks in parallel, each step on its first working provider candidate),
keep the lease alive with a heartbeat that also notices a cancel, and end in the terminal state.

Steps that already succeeded (in an earlier run of the task) are not run again: their persisted
outputs count. The terminal transition itself is the engine's (``PipelineEngine.settle``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from wardrobe.core.db import unit_of_work
from wardrobe.core.logging import get_logger
from wardrobe.core.metrics import STEP_DURATION, STEP_FALLBACKS
from wardrobe.models import StepStatus, Task, TaskStatus, TaskStep
from wardrobe.models.base import utcnow
from wardrobe.modules.moderation import Purpose
from wardrobe.modules.moderation.gates import image_keys
from wardrobe.modules.pipeline import repository, screening
from wardrobe.modules.pipeline.definition import ForkDef, PipelineDef, StepDef, parse_ref
from wardrobe.modules.pipeline.provider_call import ProviderCalls
from wardrobe.modules.pipeline.run_state import EngineParts, LeaseLost, RunState, StepFailed, TaskCanceled
from wardrobe.modules.providers.base import ProviderError
from wardrobe.modules.storage.gc import object_keys_in
from wardrobe.modules.storage.keys import RESULTS, TMP, UPLOADS

log = get_logger("wardrobe.engine")


@dataclass(frozen=True, slots=True)
class Claimed:
    """What the claim of a task read: the task, its pipeline and its persisted steps by step id."""

    task: Task
    definition: PipelineDef
    steps: dict[str, TaskStep]


def has_image_inputs(task: Task) -> bool:
    """Whether the task names uploads or earlier results: they are checked before any step starts."""
    return bool(image_keys(task.inputs, bare_prefixes=(f"{UPLOADS}/", f"{RESULTS}/")))


async def run_claimed(engine: EngineParts, claimed: Claimed) -> str | None:
    """Run a task this worker has just claimed to a terminal state. Returns the final status, or
    None if the lease was lost midway."""
    return await TaskRun(RunState(engine, claimed.task, claimed.steps), claimed.definition).execute()


class TaskRun:
    """The order of one claimed execution of one task."""

    def __init__(self, state: RunState, definition: PipelineDef) -> None:
        self.state = state
        self.engine = state.engine
        self.task = state.task
        self.definition = definition
        self.calls = ProviderCalls(state)
        self.total_steps = max(1, definition.step_count())
        self.done_steps = sum(1 for r in state.steps.values() if r.status == StepStatus.SUCCEEDED.value)

    async def execute(self) -> str | None:
        task = self.task
        if task.cancel_requested:
            return await self._finish(TaskStatus.CANCELED, error_code="canceled")
        heartbeat = asyncio.create_task(self._heartbeat())
        try:
            uploads = image_keys(task.inputs, bare_prefixes=(f"{UPLOADS}/",))
            await screening.check_uploads_unchanged(self.state, uploads)
            if not self.state.calls_made():  # an earlier result it chains from may be deleted since
                await screening.check_results_live(self.state, image_keys(task.inputs, bare_prefixes=(f"{RESULTS}/",)))
            if not self.state.calls_made():  # moderation: uploads, before the first vendor call
                await screening.screen(self.state, "inputs", uploads, Purpose.INPUT_IMAGE)
            outputs = await self._run_units()
            final_outputs = self._collect_outputs(outputs)
            return await self._finish(TaskStatus.SUCCEEDED, outputs=final_outputs)
        except StepFailed as exc:
            log.info("task_failed", task=task.public_id, step=exc.step_id, error_code=exc.code)
            return await self._finish(
                TaskStatus.FAILED, error_code=exc.code, error_message=f"step {exc.step_id} failed"
            )
        except TaskCanceled:
            return await self._finish(TaskStatus.CANCELED, error_code="canceled")
        except LeaseLost:
            log.warning("lease_lost", task=task.public_id, worker=self.engine.worker_id)
            return None
        finally:
            heartbeat.cancel()
            # wait(), not `await heartbeat` under suppress(CancelledError): that would also swallow
            # a cancellation of this run itself (a worker shutting down) arriving meanwhile.
            await asyncio.wait([heartbeat])

    async def _heartbeat(self) -> None:
        cfg = self.engine.config
        while True:
            await asyncio.sleep(cfg.heartbeat_seconds)
            until = utcnow() + timedelta(seconds=cfg.lease_seconds)
            async with unit_of_work(self.engine.sessions) as session:
                renewed = await repository.renew_lease(session, self.task.id, self.engine.worker_id, until)
                flag = await repository.cancel_requested(session, self.task.id)
            if not renewed:
                self.state.lost.set()
                return
            await self.state.held.renew()
            if flag:
                self.state.cancel.set()

    # -- the steps -------------------------------------------------------------------------------

    async def _run_units(self) -> dict[str, dict[str, Any]]:
        outputs: dict[str, dict[str, Any]] = {
            sid: dict(row.outputs or {})
            for sid, row in self.state.steps.items()
            if row.status == StepStatus.SUCCEEDED.value
        }
        units = self.definition.steps
        for index, unit in enumerate(units):
            self.state.check_interrupts()
            if isinstance(unit, ForkDef):
                await self._run_fork(unit, outputs)
            else:
                outputs[unit.id] = await self._run_step(unit, outputs, _next_step(units, index))
        return outputs

    async def _run_fork(self, fork: ForkDef, outputs: dict[str, dict[str, Any]]) -> None:
        limit = asyncio.Semaphore(fork.max_parallel)

        async def branch(steps: list[StepDef]) -> None:
            async with limit:
                for index, step in enumerate(steps):
                    self.state.check_interrupts()
                    outputs[step.id] = await self._run_step(step, outputs, _next_step(steps, index))

        # A TaskGroup cancels the sibling branches as soon as one fails: the pipeline stops at once.
        try:
            async with asyncio.TaskGroup() as group:
                for steps in fork.branches:
                    group.create_task(branch(steps))
        except* (StepFailed, TaskCanceled, LeaseLost) as grouped:
            raise grouped.exceptions[0] from None

    def _resolve(self, step: StepDef, outputs: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        resolved: dict[str, Any] = {}
        for name, value in step.inputs.items():
            ref = parse_ref(value)
            if ref is None:
                resolved[name] = value
            elif ref[0] == "inputs":
                resolved[name] = self.task.inputs.get(ref[1])
            else:
                resolved[name] = outputs.get(ref[1], {}).get(ref[2] or "")
        return resolved

    async def _run_step(
        self, step: StepDef, outputs: Mapping[str, Mapping[str, Any]], then: StepDef | None
    ) -> dict[str, Any]:
        """Run one step on its first working provider candidate. Its end is written in one
        transaction with the task's progress and the start of ``then``, the step after it."""
        row = self.state.steps.get(step.id)
        if row is not None and row.status == StepStatus.SUCCEEDED.value:
            return dict(row.outputs or {})
        if row is not None and row.status in (StepStatus.FAILED.value, StepStatus.SKIPPED.value):
            if step.on_failure == "continue":
                return {}
            raise StepFailed(step.id, row.error or "step_failed")
        inputs = self._resolve(step, outputs)
        if step.id not in self.state.persisted:
            # Not started with the step before it: shown running (and the lease checked) before
            # the first vendor call.
            await self.state.save_step(step.id, StepStatus.RUNNING)
        last_code = "no_provider"
        switched_off = await self.engine.disabled() if self.engine.disabled is not None else frozenset()
        candidates = step.provider_candidates
        for index, slug in enumerate(candidates):
            provider = self.engine.registry.get(slug)
            if provider is None:
                continue
            if slug in switched_off:
                last_code = "provider_disabled"
                continue  # an operator took it out of service: straight to the next candidate
            if not self.engine.breaker.allow(slug):
                last_code = "provider_down"
                continue  # circuit open: straight to the next candidate
            started = time.monotonic()
            try:
                result = await self.calls.run_step(step, slug, provider, inputs)
            except ProviderError as exc:
                STEP_DURATION.labels(slug, step.action).observe(time.monotonic() - started)
                last_code = exc.code
                log.info("provider_failed", task=self.task.public_id, step=step.id, provider=slug, error_code=exc.code)
                if index + 1 < len(candidates):
                    STEP_FALLBACKS.labels(step.action, slug).inc()
                continue  # fall back to the next candidate
            STEP_DURATION.labels(slug, step.action).observe(time.monotonic() - started)
            await screening.screen_outputs(self.state, step, result)  # moderation: before the outputs count
            self.done_steps += 1
            progress = min(99, int(100 * self.done_steps / self.total_steps))
            await self.state.save_step(
                step.id, StepStatus.SUCCEEDED, outputs=result, finished=True, progress=progress, then=_id(then)
            )
            return result
        going_on = step.on_failure == "continue"
        await self.state.save_step(
            step.id, StepStatus.FAILED, error=last_code, finished=True, then=_id(then) if going_on else None
        )
        if going_on:
            return {}
        raise StepFailed(step.id, last_code)

    # -- the end ---------------------------------------------------------------------------------

    def _collect_outputs(self, outputs: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
        collected = []
        for name, ref_text in self.definition.outputs.items():
            ref = parse_ref(ref_text)
            value = outputs.get(ref[1], {}).get(ref[2] or "") if ref else None
            if isinstance(value, dict) and "object_key" in value:
                collected.append({"name": name, **value})
            elif value is not None:
                collected.append({"name": name, "value": value})
        return collected

    async def _finish(
        self,
        status: TaskStatus,
        *,
        outputs: list[dict[str, Any]] | None = None,
        error_code: str | None = None,
        error_message: str | None = None,
    ) -> str | None:
        """The terminal state with the money (``settle``), then what the task stored and no longer
        needs goes."""
        settled = await self.engine.settle(
            self.task, status, outputs=outputs, error_code=error_code, error_message=error_message
        )
        if not settled:
            return None
        log.info("task_finished", task=self.task.public_id, status=status.value)
        await self._drop_intermediates(outputs or [])
        return status.value

    async def _drop_intermediates(self, kept: list[dict[str, Any]]) -> None:
        """The task ended: what its steps stored and its outputs do not name (a first step's image
        a second step consumed, everything of a failed task) is deleted now, not left to the
        orphan sweep. Best effort: the sweep catches whatever this misses."""
        storage = self.engine.storage
        if storage is None:
            return
        final = {str(o["object_key"]) for o in kept if "object_key" in o}
        # The run holds every step's state (read at its claim, written by it since): nothing to read.
        ours = {
            key
            for row in self.state.steps.values()
            for key in object_keys_in(row.outputs or {})
            if key.startswith((f"{RESULTS}/", f"{TMP}/")) and key not in final
        }
        if ours:
            try:
                await storage.delete_many(sorted(ours))
            except Exception:
                log.warning("intermediates_not_deleted", task=self.task.public_id, count=len(ours))


def _next_step(units: Sequence[StepDef | ForkDef], index: int) -> StepDef | None:
    """The unit after ``index`` when it is a single step (a fork's branches start on their own)."""
    following = units[index + 1] if index + 1 < len(units) else None
    return following if isinstance(following, StepDef) else None


def _id(step: StepDef | None) -> str | None:
    return step.id if step is not None else None
