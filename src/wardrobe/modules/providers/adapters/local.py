"""The local CPU provider: real image operations on this machine, so every demo feature
runs with no vendor at all. Each call reads its input images from object storage, runs the
operation in a worker thread (OpenCV releases the GIL), and writes the result under ``results/``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from wardrobe.modules.providers.base import ProviderError, StepContext
from wardrobe.modules.storage.backend import ObjectStorage
from wardrobe.modules.storage.keys import result_key

if TYPE_CHECKING:
    from wardrobe.modules.providers.adapters import local_ops

_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}


class LocalImageProvider:
    slug = "local"
    # Its work stops with the worker: a dead worker's slot need not wait for a call to end.
    in_process = True

    def __init__(self, storage: ObjectStorage, *, max_pixels: int = 40_000_000) -> None:
        self._storage = storage
        self._max_pixels = max_pixels
        self._actions: dict[str, Callable[[Mapping[str, Any]], Awaitable[local_ops.OpResult]]] = {
            "cutout": self._cutout,
            "erase": self._erase,
            "outpaint": self._outpaint,
            "face_swap": self._face_swap,
            "thumbnail": self._thumbnail,
        }

    def supports(self, action: str) -> bool:
        return action in self._actions

    async def run(self, action: str, inputs: Mapping[str, Any], ctx: StepContext) -> dict[str, Any]:
        # Imported on first use: OpenCV and NumPy cost ~100 MiB per process, which API processes
        # that never run a task should not pay.
        from wardrobe.modules.providers.adapters import local_ops

        operation = self._actions.get(action)
        if operation is None:
            raise ProviderError("unsupported_action")
        try:
            result = await operation(inputs)
        except local_ops.LocalOpError as exc:
            raise ProviderError(exc.code, retryable=False) from exc
        ext = _EXTENSIONS.get(result.content_type, "bin")
        key = result_key(ctx.user_id, f"{ctx.task_id}-{ctx.step_id}", ext)
        await self._storage.put(key, result.data, result.content_type)
        return {"image": {"object_key": key, "content_type": result.content_type}, **_plain(result.metadata)}

    async def _image(self, inputs: Mapping[str, Any], name: str) -> bytes:
        value = inputs.get(name)
        key = value.get("object_key") if isinstance(value, dict) else value
        if not isinstance(key, str):
            raise ProviderError("bad_input", f"missing image input {name!r}")
        try:
            return await self._storage.get(key)
        except (FileNotFoundError, KeyError) as exc:
            raise ProviderError("bad_input", f"image {name!r} not found") from exc

    async def _cutout(self, inputs: Mapping[str, Any]) -> local_ops.OpResult:
        from wardrobe.modules.providers.adapters import local_ops

        image = await self._image(inputs, "image")
        return await asyncio.to_thread(local_ops.cutout, image, max_side=int(inputs.get("max_side", 2048)))

    async def _erase(self, inputs: Mapping[str, Any]) -> local_ops.OpResult:
        from wardrobe.modules.providers.adapters import local_ops

        image, mask = await self._image(inputs, "image"), await self._image(inputs, "mask")
        return await asyncio.to_thread(local_ops.erase, image, mask, radius=int(inputs.get("radius", 5)))

    async def _outpaint(self, inputs: Mapping[str, Any]) -> local_ops.OpResult:
        from wardrobe.modules.providers.adapters import local_ops

        image = await self._image(inputs, "image")
        margins = {side: int(inputs.get(side, 0)) for side in ("left", "top", "right", "bottom")}
        return await asyncio.to_thread(local_ops.outpaint, image, max_side=int(inputs.get("max_side", 4096)), **margins)

    async def _face_swap(self, inputs: Mapping[str, Any]) -> local_ops.OpResult:
        from wardrobe.modules.providers.adapters import local_ops

        source, target = await self._image(inputs, "source"), await self._image(inputs, "target")
        return await asyncio.to_thread(local_ops.face_swap, source, target)

    async def _thumbnail(self, inputs: Mapping[str, Any]) -> local_ops.OpResult:
        from wardrobe.modules.providers.adapters import local_ops

        image = await self._image(inputs, "image")
        return await asyncio.to_thread(local_ops.thumbnail, image, max_side=int(inputs.get("max_side", 512)))


class InstantProvider:
    """Answers at once with its inputs: the engine's overhead with no work, for benchmarks and
    smoke pipelines."""

    slug = "instant"
    in_process = True

    def supports(self, action: str) -> bool:
        return action == "passthrough"

    async def run(self, action: str, inputs: Mapping[str, Any], ctx: StepContext) -> dict[str, Any]:
        return dict(inputs)


def _plain(metadata: Mapping[str, object]) -> dict[str, Any]:
    # Step outputs are stored as JSON: keep only JSON-safe metadata values.
    return {k: v for k, v in metadata.items() if isinstance(v, str | int | float | bool | list | tuple)}
