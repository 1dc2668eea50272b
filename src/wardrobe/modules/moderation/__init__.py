"""Content moderation of prompts and images: a local keyword list that is always
on, Tencent TMS/IMS when configured, and the gates the task path runs them at. See
``moderator.py`` for the policy (what ``review`` does, what an outage does)."""

from wardrobe.modules.moderation.keywords import KeywordList
from wardrobe.modules.moderation.moderator import ImageBackend, Moderator, TextBackend
from wardrobe.modules.moderation.verdict import (
    CONTENT_BLOCKED,
    MODERATION_UNAVAILABLE,
    Decision,
    ModerationUnavailable,
    Purpose,
    Verdict,
)

__all__ = [
    "CONTENT_BLOCKED",
    "MODERATION_UNAVAILABLE",
    "Decision",
    "ImageBackend",
    "KeywordList",
    "ModerationUnavailable",
    "Moderator",
    "Purpose",
    "TextBackend",
    "Verdict",
]
