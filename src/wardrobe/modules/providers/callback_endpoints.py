"""``POST /api/v1/callbacks/{provider}/{ref}?sig=…``: where vendors report on their jobs.

The signature in the URL is checked before anything is read into the inbox; the answer is
immediate (a vendor that waits retries). What the callback says is confirmed by the worker that
runs the step, with the vendor itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from wardrobe.core.deps import SessionFactoryDep, SettingsDep
from wardrobe.core.envelope import Envelope, OrjsonResponse, ok
from wardrobe.core.errors import AppError, ErrorCode
from wardrobe.core.logging import get_logger
from wardrobe.core.metrics import VENDOR_CALLBACKS
from wardrobe.core.openapi import errors
from wardrobe.modules.providers import callbacks
from wardrobe.modules.providers.adapters import runninghub
from wardrobe.modules.providers.deps import HintsDep, ProvidersDep

log = get_logger("wardrobe.callbacks")
router = APIRouter(tags=["callbacks"])

# Provider -> how its callback body reads. A vendor that signs its callbacks verifies here too;
# a registered provider with ``parse_callback`` (``callbacks.VerifiesCallbacks``, e.g. SCF, whose
# key is its own configuration) is asked first.
PARSERS: dict[str, Callable[[bytes], callbacks.CallbackEvent]] = {
    "runninghub": runninghub.parse_callback,
}


@router.post(
    f"{callbacks.CALLBACK_PATH}/{{provider}}/{{ref}}",
    response_model=Envelope[dict[str, bool]],
    summary="A vendor reports on a job (signed callback URL)",
    responses=errors(ErrorCode.CALLBACK_SIGNATURE_INVALID, ErrorCode.NOT_FOUND, ErrorCode.MALFORMED_REQUEST),
)
async def vendor_callback(
    provider: Annotated[str, Path(max_length=32)],
    ref: Annotated[str, Path(max_length=96)],
    sig: Annotated[str, Query(max_length=64)],
    request: Request,
    settings: SettingsDep,
    sessions: SessionFactoryDep,
    registry: ProvidersDep,
    hints: HintsDep,
) -> OrjsonResponse:
    registered = registry.get(provider)
    parse = registered.parse_callback if isinstance(registered, callbacks.VerifiesCallbacks) else PARSERS.get(provider)
    if parse is None:
        raise AppError(ErrorCode.NOT_FOUND)
    if not callbacks.signature_ok(settings, provider, ref, sig):
        VENDOR_CALLBACKS.labels(provider, "bad_signature").inc()
        raise AppError(ErrorCode.CALLBACK_SIGNATURE_INVALID)
    try:
        event = parse(await request.body())
    except callbacks.CallbackForged as exc:
        # The URL was ours but the result is not the vendor's (forged or tampered with).
        VENDOR_CALLBACKS.labels(provider, "bad_signature").inc()
        log.warning("vendor_callback_forged", provider=provider, ref=ref)
        raise AppError(ErrorCode.CALLBACK_SIGNATURE_INVALID) from exc
    except ValueError as exc:
        VENDOR_CALLBACKS.labels(provider, "malformed").inc()
        raise AppError(ErrorCode.MALFORMED_REQUEST) from exc
    new = await callbacks.record(sessions, provider, ref, event)
    if new:
        hints.announce(ref)  # the polling step asks the vendor now, not at its next poll
    VENDOR_CALLBACKS.labels(provider, "accepted" if new else "duplicate").inc()
    log.info("vendor_callback", provider=provider, ref=ref, kind=event.event_type, duplicate=not new)
    return ok({"accepted": True, "duplicate": not new})
