"""What a moderation check answers, and why a check could not answer."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

# The code a task fails with (task.error_code) when its content is blocked, and when moderation
# could not be reached after retries. Same spelling as the vendors' own blocked-content code.
CONTENT_BLOCKED = "content_blocked"
MODERATION_UNAVAILABLE = "moderation_unavailable"


class Decision(StrEnum):
    PASS = "pass"  # noqa: S105 - a verdict, not a password
    REVIEW = "review"  # the backend is unsure: "suggest a human look" (Tencent's Suggestion=Review)
    BLOCK = "block"

    @property
    def severity(self) -> int:
        return {"pass": 0, "review": 1, "block": 2}[self.value]


class Purpose(StrEnum):
    """What is being checked; the policy (review handling, outages) depends on it."""

    PROMPT = "prompt"  # text a user typed, checked at task creation before any quota is held
    INPUT_IMAGE = "input_image"  # an upload, checked when a task starts, before any vendor call
    OUTPUT_IMAGE = "output_image"  # a result stored by a step, checked before anyone can see it


@dataclass(frozen=True, slots=True)
class Verdict:
    """``label`` is a category (``Porn``, ``Illegal``, ``keyword``…), never the checked content;
    ``source`` names the backend that decided (``keywords``, ``tms``, ``ims``, ``none``)."""

    decision: Decision
    label: str = "Normal"
    source: str = "none"

    @property
    def passed(self) -> bool:
        return self.decision is Decision.PASS


PASSED = Verdict(Decision.PASS)


def worst(verdicts: list[Verdict]) -> Verdict:
    """The most severe verdict of several (the first of equals); PASSED for none."""
    if not verdicts:
        return PASSED
    result = verdicts[0]
    for verdict in verdicts[1:]:
        if verdict.decision.severity > result.decision.severity:
            result = verdict
    return result


class ModerationUnavailable(Exception):
    """The backend gave no verdict: unreachable, overloaded, or misconfigured. ``retryable``: the
    same check may succeed later (transport errors, 5xx, rate limits); not for credentials or
    billing, which need an operator. ``code`` is stable; never the vendor's message text."""

    def __init__(self, code: str, source: str, *, retryable: bool) -> None:
        super().__init__(f"{source}: {code}")
        self.code = code
        self.source = source
        self.retryable = retryable
