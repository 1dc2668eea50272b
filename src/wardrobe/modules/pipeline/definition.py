"""Pipeline definitions: steps, input mapping, retries, fork/join — validated before they are
stored, so an invalid pipeline is refused by the admin API and never discovered at run time.

```json
{"steps": [
   {"id": "cut", "type": "sync_api", "action": "cutout", "provider_candidates": ["local"],
    "inputs": {"image": "$inputs.image"}, "timeout_seconds": 60, "retries": 1},
   {"id": "variants", "type": "fork", "max_parallel": 2, "branches": [
      [{"id": "small", "type": "sync_api", "action": "thumbnail", "provider_candidates": ["local"],
        "inputs": {"image": "$steps.cut.image", "max_side": 256}}],
      [{"id": "large", "type": "sync_api", "action": "thumbnail", "provider_candidates": ["local"],
        "inputs": {"image": "$steps.cut.image", "max_side": 1024}}]]}],
 "outputs": {"cutout": "$steps.cut.image", "preview": "$steps.small.image"}}
```
A reference is ``$inputs.<field>`` or ``$steps.<step id>.<output>``; anything else is a literal.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from wardrobe.core.schemas import InputModel

STEP_ID = r"^[a-z][a-z0-9_]{0,47}$"
_REF = re.compile(r"^\$(inputs|steps)\.([a-z][a-z0-9_]*)(?:\.([a-z][a-z0-9_]*))?$")


class StepDef(InputModel):
    id: str = Field(pattern=STEP_ID)
    type: Literal["sync_api", "async_api", "scf"]
    action: str = Field(min_length=1, max_length=64)
    provider_candidates: list[str] = Field(min_length=1, max_length=5)
    inputs: dict[str, Any] = Field(default_factory=dict)
    timeout_seconds: float = Field(default=60.0, gt=0, le=3600)
    retries: int = Field(default=0, ge=0, le=5)
    backoff_seconds: float = Field(default=1.0, ge=0, le=60)
    poll_interval_seconds: float = Field(default=2.0, gt=0, le=60)
    on_failure: Literal["fail", "continue"] = "fail"


class ForkDef(InputModel):
    id: str = Field(pattern=STEP_ID)
    type: Literal["fork"]
    max_parallel: int = Field(default=2, ge=1, le=8)
    branches: list[list[StepDef]] = Field(min_length=2, max_length=8)


Unit = Annotated[StepDef | ForkDef, Field(discriminator="type")]


def parse_ref(value: Any) -> tuple[str, str, str | None] | None:
    """``"$steps.cut.image"`` → ``("steps", "cut", "image")``; a literal → None."""
    if not isinstance(value, str) or not value.startswith("$"):
        return None
    match = _REF.match(value)
    if match is None:
        raise ValueError(f"{value!r} is not a reference ($inputs.<field> or $steps.<id>.<output>)")
    kind, name, attr = match.groups()
    if kind == "steps" and attr is None:
        raise ValueError(f"{value!r} must name a step output: $steps.<id>.<output>")
    return kind, name, attr


class PipelineDef(InputModel):
    steps: list[Unit] = Field(min_length=1, max_length=32)
    outputs: dict[str, str] = Field(min_length=1)

    def all_steps(self) -> Iterator[StepDef]:
        for unit in self.steps:
            if isinstance(unit, ForkDef):
                for branch in unit.branches:
                    yield from branch
            else:
                yield unit

    def step_count(self) -> int:
        return sum(1 for _ in self.all_steps())

    def input_fields(self) -> set[str]:
        fields: set[str] = set()
        for step in self.all_steps():
            for value in step.inputs.values():
                ref = parse_ref(value)
                if ref and ref[0] == "inputs":
                    fields.add(ref[1])
        return fields

    @model_validator(mode="after")
    def _references_point_backwards(self) -> PipelineDef:
        ids: set[str] = set()
        seen: set[str] = set()  # steps whose outputs exist before the current one runs

        def check_step(step: StepDef, visible: set[str]) -> None:
            if step.id in ids:
                raise ValueError(f"step id {step.id!r} is used twice")
            ids.add(step.id)
            for name, value in step.inputs.items():
                ref = parse_ref(value)
                if ref and ref[0] == "steps" and ref[1] not in visible:
                    raise ValueError(f"step {step.id!r} input {name!r} refers to {ref[1]!r}, which has not run yet")

        for unit in self.steps:
            if isinstance(unit, ForkDef):
                if unit.id in ids:
                    raise ValueError(f"step id {unit.id!r} is used twice")
                ids.add(unit.id)
                produced: set[str] = set()
                for branch in unit.branches:
                    visible = set(seen)
                    for step in branch:
                        check_step(step, visible)
                        visible.add(step.id)
                        produced.add(step.id)
                seen |= produced  # join: after the fork every branch's steps are visible
            else:
                check_step(unit, seen)
                seen.add(unit.id)
        for name, value in self.outputs.items():
            ref = parse_ref(value)
            if ref is None or ref[0] != "steps" or ref[1] not in seen:
                raise ValueError(f"output {name!r} must refer to a step output, got {value!r}")
        return self
