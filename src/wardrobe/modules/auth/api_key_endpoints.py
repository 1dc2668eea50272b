"""HTTP routes of /api/v1/api-keys: a user makes, lists and revokes the keys its own systems call
the API with (``core/api_keys.py`` checks them on each request).

Making a key needs fresh proof of identity (``reauth.py``): a key outlives the login that made it,
so a stolen access token must not be able to mint one. Revoking needs only the login: taking
access away is never the risk. Both are in the audit log.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field
from sqlalchemy import func, select, update

from wardrobe.core.api_keys import SCOPES, new_key
from wardrobe.core.audit import add_audit
from wardrobe.core.deps import SessionDep, SettingsDep
from wardrobe.core.envelope import Envelope, OrjsonResponse, ok
from wardrobe.core.errors import AppError, ErrorCode, NotFound
from wardrobe.core.openapi import AUTH_ERRORS, errors
from wardrobe.core.principal import CurrentUser
from wardrobe.core.schemas import Id
from wardrobe.models import ApiKey
from wardrobe.models.base import utcnow
from wardrobe.modules.auth.parts import AccountPartsDep
from wardrobe.modules.auth.reauth import confirm_identity
from wardrobe.modules.auth.schemas import FreshProof
from wardrobe.modules.auth.sms_codes import CodePurpose

router = APIRouter(prefix="/api/v1/api-keys", tags=["api keys"])
LISTED = 100  # the newest keys listed, revoked ones included


class ApiKeyCreate(FreshProof):
    """A new key, with fresh proof of identity: exactly one of ``code`` (an SMS code sent to the
    account's phone, purpose ``create_api_key``), ``password`` or ``wechat_code``."""

    name: str = Field(min_length=1, max_length=64, examples=["shop backend"])
    scopes: list[str] = Field(
        min_length=1,
        max_length=len(SCOPES),
        json_schema_extra={"items": {"enum": list(SCOPES)}, "uniqueItems": True},
        description="What the key may do as you: " + ", ".join(f"`{s}`" for s in SCOPES),
    )
    requests_per_minute: int = Field(default=60, ge=1, le=600, description="The key's own rate limit")
    expires_in_days: int | None = Field(default=None, ge=1, le=3650, description="Absent: until revoked")


class ApiKeyOut(BaseModel):
    id: int
    name: str
    prefix: str = Field(description="The first characters of the secret, to tell keys apart")
    scopes: list[str]
    rate_limit: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None = Field(description="Updated at most once a minute")
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    secret: str = Field(description="`Authorization: Bearer <secret>`. Shown this once: only its hash is kept")


def _body(key: ApiKey) -> dict[str, Any]:
    return ApiKeyOut.model_validate(key, from_attributes=True).model_dump(mode="json")


@router.post(
    "",
    status_code=201,
    summary="Make an API key (shown once)",
    description="The key acts as you, within its scopes, and spends your quota. Send exactly one proof: "
    "`code` (an SMS code sent to this account's phone with purpose `create_api_key`), `password`, or "
    "`wechat_code`. At most `WARDROBE_API_KEYS_PER_USER` keys may be live at once (`CONFLICT`).",
    response_model=Envelope[ApiKeyCreated],
    responses=errors(
        *AUTH_ERRORS,
        ErrorCode.AUTH_CODE_INVALID,
        ErrorCode.AUTH_INVALID_CREDENTIALS,
        ErrorCode.REAUTHENTICATION_REQUIRED,
        ErrorCode.CONFLICT,
        ErrorCode.RATE_LIMITED,
    ),
)
async def create_api_key(
    body: ApiKeyCreate, principal: CurrentUser, parts: AccountPartsDep, settings: SettingsDep, session: SessionDep
) -> OrjsonResponse:
    unknown = [s for s in body.scopes if s not in SCOPES]
    if unknown or len(set(body.scopes)) != len(body.scopes):
        problem = f"unknown scope {unknown[0]}" if unknown else "a scope is named twice"
        raise AppError(ErrorCode.VALIDATION_FAILED, data=[{"field": "scopes", "message": problem}])
    user = principal.user
    await confirm_identity(session, parts, user, CodePurpose.CREATE_API_KEY, body.proof())
    now = utcnow()
    live = await session.scalar(
        select(func.count())
        .select_from(ApiKey)
        .where(
            ApiKey.user_id == user.id,
            ApiKey.revoked_at.is_(None),
            (ApiKey.expires_at.is_(None)) | (ApiKey.expires_at > now),
        )
    )
    if int(live or 0) >= settings.api_keys_per_user:
        raise AppError(ErrorCode.CONFLICT, data={"reason": "too_many_keys", "limit": settings.api_keys_per_user})
    made = new_key()
    key = ApiKey(
        user_id=user.id,
        name=body.name,
        prefix=made.prefix,
        secret_hash=made.secret_hash,
        scopes=sorted(body.scopes, key=SCOPES.index),
        rate_limit=f"{body.requests_per_minute}/minute",
        created_at=now,
        expires_at=now + timedelta(days=body.expires_in_days) if body.expires_in_days else None,
    )
    session.add(key)
    await session.flush()
    add_audit(
        session,
        actor_id=user.id,
        action="api_key.create",
        target_type="api_key",
        target_id=str(key.id),
        reason=None,
        after={"name": key.name, "prefix": key.prefix, "scopes": key.scopes, "rate_limit": key.rate_limit},
    )
    return ok({**_body(key), "secret": made.secret}, status_code=201)


@router.get("", summary="My API keys (never their secrets)", response_model=Envelope[list[ApiKeyOut]])
async def list_api_keys(principal: CurrentUser, session: SessionDep) -> OrjsonResponse:
    keys = await session.scalars(
        select(ApiKey).where(ApiKey.user_id == principal.id).order_by(ApiKey.id.desc()).limit(LISTED)
    )
    return ok([_body(k) for k in keys])


@router.delete(
    "/{key_id}",
    summary="Revoke an API key",
    description="At once, on every server: the key's next request is refused (`AUTH_SESSION_REVOKED`). "
    "Revoking a revoked key answers it unchanged.",
    response_model=Envelope[ApiKeyOut],
    responses=errors(*AUTH_ERRORS, ErrorCode.NOT_FOUND),
)
async def revoke_api_key(key_id: Id, principal: CurrentUser, session: SessionDep) -> OrjsonResponse:
    key = await session.scalar(select(ApiKey).where(ApiKey.id == key_id, ApiKey.user_id == principal.id))
    if key is None:
        raise NotFound(detail="api key")
    if key.revoked_at is None:
        now = utcnow()
        await session.execute(update(ApiKey).where(ApiKey.id == key.id).values(revoked_at=now))
        key.revoked_at = now
        add_audit(
            session,
            actor_id=principal.id,
            action="api_key.revoke",
            target_type="api_key",
            target_id=str(key.id),
            reason=None,
            before={"revoked_at": None},
            after={"revoked_at": now.isoformat()},
        )
    return ok(_body(key))
