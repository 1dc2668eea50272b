"""The parts task creation uses besides the request's session, as one typed record.

Creating a task checks the feature (cache), the caller's rate, the uploads (storage) and the
prompts (moderation), then queues it and tells live clients (the outbox's announcer). Built once per
process (wardrobe.wiring) and taken by routes through ``TaskPartsDep``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends

from wardrobe.core.cache import Cache
from wardrobe.core.deps import part
from wardrobe.core.outbox import Announcer
from wardrobe.core.ratelimit import RateLimiter
from wardrobe.modules.moderation.moderator import Moderator
from wardrobe.modules.storage.backend import ObjectStorage
from wardrobe.settings import Settings


@dataclass(frozen=True, slots=True)
class TaskParts:
    settings: Settings
    cache: Cache
    limiter: RateLimiter
    storage: ObjectStorage
    moderator: Moderator
    announcer: Announcer


TaskPartsDep = Annotated[TaskParts, Depends(part(TaskParts))]
