"""The moderator: the local keyword list first, then the vendor backends if configured, and the
policy that turns a verdict into "blocked or not" per purpose.

**Review** (the backend is unsure and suggests a human look; we have no human in the loop):

- ``output_image``: treated as **block**. We publish what the vendors generate; a false positive
  costs one refunded task, a false negative puts unlawful content on our platform under our name.
- ``prompt`` and ``input_image``: **pass, with a log line** (label and source, never the content).
  These are the user's own words and pictures, every generated result is checked again on the way
  out, and blocking on "unsure" would refuse many ordinary requests (swimwear, medical words).

``review_blocks`` changes this per purpose.

**Outages** (no verdict): moderation **fails closed** everywhere, but differently:

- ``prompt`` (task creation): refused at once with ``DEPENDENCY_UNAVAILABLE`` 503 and
  ``Retry-After``; nothing reserved, nothing written, the user simply tries again.
- ``input_image``/``output_image`` (in the worker): retried with back-off (``outage_attempts``);
  still no verdict → the task fails with ``moderation_unavailable`` and is refunded. Unchecked
  outputs are deleted with the blocked ones and never exposed.

A moderator without a vendor (embedded development, ``Moderator()``) checks text against the
keyword list only and lets images pass (source ``none``).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Protocol

from wardrobe.core.logging import get_logger
from wardrobe.modules.moderation.keywords import KeywordList
from wardrobe.modules.moderation.verdict import PASSED, Decision, Purpose, Verdict
from wardrobe.modules.storage.backend import ObjectStorage

log = get_logger("wardrobe.moderation")


class TextBackend(Protocol):
    source: str

    async def check(self, text: str, *, user_id: int | None, purpose: str, data_id: str | None = None) -> Verdict: ...

    async def aclose(self) -> None: ...


class ImageBackend(Protocol):
    source: str

    async def check(
        self, image: bytes, *, user_id: int | None, purpose: str, data_id: str | None = None
    ) -> Verdict: ...

    async def aclose(self) -> None: ...


class Moderator:
    """``check_text``/``check_image`` give the backends' verdict; ``blocks`` applies the policy.
    Both checks raise ``ModerationUnavailable`` when a vendor gives no verdict."""

    def __init__(
        self,
        *,
        keywords: KeywordList | None = None,
        text: TextBackend | None = None,
        image: ImageBackend | None = None,
        storage: ObjectStorage | None = None,
        review_blocks: Collection[Purpose] = (Purpose.OUTPUT_IMAGE,),
        outage_attempts: int = 3,
        outage_backoff_seconds: float = 1.0,
    ) -> None:
        if image is not None and storage is None:
            raise ValueError("an image backend needs the object storage to read images by key")
        if outage_attempts < 1:
            raise ValueError("outage_attempts must be at least 1")
        self.keywords = keywords if keywords is not None else KeywordList.default()
        self.text = text
        self.image = image
        self.storage = storage
        self.review_blocks = frozenset(review_blocks)
        self.outage_attempts = outage_attempts
        self.outage_backoff_seconds = outage_backoff_seconds

    @property
    def checks_images(self) -> bool:
        return self.image is not None

    async def aclose(self) -> None:
        for backend in (self.text, self.image):
            if backend is not None:
                await backend.aclose()

    async def check_text(
        self, text: str, *, user_id: int | None, purpose: Purpose = Purpose.PROMPT, data_id: str | None = None
    ) -> Verdict:
        """The keyword list (always), then the text backend if there is one and the list passed."""
        label = self.keywords.match(text)
        if label is not None:
            return Verdict(Decision.BLOCK, label, "keywords")
        if self.text is None or not text.strip():
            return PASSED
        return await self.text.check(text, user_id=user_id, purpose=purpose.value, data_id=data_id)

    async def check_image(
        self, image: bytes | str, *, user_id: int | None, purpose: Purpose, data_id: str | None = None
    ) -> Verdict:
        """``image`` is the bytes or an object key in our storage (read only when a backend will
        look at it)."""
        if self.image is None:
            return PASSED
        if isinstance(image, str):
            assert self.storage is not None  # noqa: S101 - ensured by __init__
            image = await self.storage.get(image)
        return await self.image.check(image, user_id=user_id, purpose=purpose.value, data_id=data_id)

    def blocks(self, verdict: Verdict, purpose: Purpose, **context: object) -> bool:
        """Whether ``verdict`` stops the content for ``purpose``; logs every verdict that is not a
        plain pass (label and source only)."""
        if verdict.decision is Decision.PASS:
            return False
        blocked = verdict.decision is Decision.BLOCK or purpose in self.review_blocks
        log.info(
            "moderation_blocked" if blocked else "moderation_review_passed",
            purpose=purpose.value,
            decision=verdict.decision.value,
            label=verdict.label,
            source=verdict.source,
            **context,
        )
        return blocked
