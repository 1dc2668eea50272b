"""A thin, typed client of the Wardrobe API for business customers' backends, with an API key.

    from wardrobe_client import WardrobeClient

    with WardrobeClient("wk_…", "https://api.example.com") as client:
        image = client.upload(photo_bytes, filename="look.jpg", content_type="image/jpeg")
        task = client.create_task("cutout", {"image": image["object_key"]})
        done = client.wait_for_task(task["id"])

Every answer's envelope is unwrapped; a failure raises :class:`WardrobeError` with a typed
``code`` (:class:`ErrorCode`). ``AsyncWardrobeClient`` is the same for asyncio. See README.md.
"""

from ._async import AsyncWardrobeClient
from ._core import TERMINAL_STATUSES, Call, TaskWaitTimeout, WardrobeError, new_idempotency_key
from ._generated import (
    ApiKeyScope,
    ContentType,
    ErrorCode,
    StoredObject,
    Task,
    TaskError,
    TaskOutput,
    TaskPage,
    TaskStatus,
    TaskStep,
    UploadGrant,
    UploadInstructions,
)
from ._sync import WardrobeClient

__version__ = "0.1.0"
__all__ = [
    "TERMINAL_STATUSES",
    "ApiKeyScope",
    "AsyncWardrobeClient",
    "Call",
    "ContentType",
    "ErrorCode",
    "StoredObject",
    "Task",
    "TaskError",
    "TaskOutput",
    "TaskPage",
    "TaskStatus",
    "TaskStep",
    "TaskWaitTimeout",
    "UploadGrant",
    "UploadInstructions",
    "WardrobeClient",
    "WardrobeError",
    "new_idempotency_key",
]
