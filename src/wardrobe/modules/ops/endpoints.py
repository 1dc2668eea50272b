"""Liveness, readiness and metrics."""

from __future__ import annotations

import asyncio
import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.responses import Response

from wardrobe.core.deps import DbEngineDep, EdgeLimitsDep, LimiterDep, RedisDep, parts_of
from wardrobe.core.edge_limits import EdgeLimits
from wardrobe.core.envelope import Envelope, OrjsonResponse, error_response, ok
from wardrobe.core.errors import AppError, ErrorCode
from wardrobe.core.metrics import render_metrics
from wardrobe.core.openapi import errors
from wardrobe.core.ratelimit import RateLimiter
from wardrobe.settings import Environment, Settings

router = APIRouter(tags=["ops"])
PROBE_TIMEOUT = 2.0


class Check(BaseModel):
    status: str
    detail: str | None = None


async def _check_db(db: AsyncEngine) -> Check:
    try:
        async with asyncio.timeout(PROBE_TIMEOUT), db.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return Check(status="ok", detail=db.dialect.name)
    except Exception as exc:
        return Check(status="down", detail=type(exc).__name__)


async def _check_redis(redis: Redis | None) -> Check:
    if redis is None:
        return Check(status="ok", detail="embedded (in-process)")
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            await redis.ping()
        return Check(status="ok", detail="redis")
    except Exception as exc:
        return Check(status="down", detail=type(exc).__name__)


async def _check_rate_limits(edge_limits: EdgeLimits, limiter: RateLimiter) -> Check:
    """Whether the rate-limit store answers; if not, say what that means for requests."""
    if not edge_limits.enabled:
        return Check(status="ok", detail="disabled")
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            reachable = await limiter.check_storage()
    except Exception:
        reachable = False
    if reachable:
        return Check(status="ok", detail="enforced")
    return Check(
        status="degraded",
        detail="store unreachable: login, SMS and task creation refused (fail closed); "
        "other requests not limited (fail open)",
    )


def _answer(checks: dict[str, Check]) -> OrjsonResponse:
    body = {name: c.model_dump() for name, c in checks.items()}
    if all(c.status == "ok" for c in checks.values()):
        return ok(body)
    return error_response(ErrorCode.DEPENDENCY_UNAVAILABLE, body)


@router.get("/health", summary="Liveness: the process answers", response_model=Envelope[Check])
async def health() -> OrjsonResponse:
    return ok({"status": "ok"})


@router.get(
    "/health/db",
    summary="Database reachable",
    response_model=Envelope[dict[str, Check]],
    responses=errors(ErrorCode.DEPENDENCY_UNAVAILABLE),
)
async def health_db(db: DbEngineDep) -> OrjsonResponse:
    return _answer({"db": await _check_db(db)})


@router.get(
    "/health/redis",
    summary="Redis reachable (or embedded mode)",
    response_model=Envelope[dict[str, Check]],
    responses=errors(ErrorCode.DEPENDENCY_UNAVAILABLE),
)
async def health_redis(redis: RedisDep) -> OrjsonResponse:
    return _answer({"redis": await _check_redis(redis)})


@router.get(
    "/health/ready",
    summary="Readiness: every dependency reachable",
    response_model=Envelope[dict[str, Check]],
    responses=errors(ErrorCode.DEPENDENCY_UNAVAILABLE),
)
async def health_ready(
    db: DbEngineDep, redis: RedisDep, edge_limits: EdgeLimitsDep, limiter: LimiterDep
) -> OrjsonResponse:
    checks = _check_db(db), _check_redis(redis), _check_rate_limits(edge_limits, limiter)
    db_check, redis_check, limits = await asyncio.gather(*checks)
    return _answer({"db": db_check, "redis": redis_check, "rate_limits": limits})


_metrics_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="MetricsToken",
    description="WARDROBE_METRICS_TOKEN, the scrape token (not a user's access token)",
)


async def metrics_access(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_metrics_bearer)]
) -> None:
    """Only Prometheus reads the metrics: they name every route, vendor and queue, with their
    failure rates. Without a token configured they are open in development (the quick start shows
    them) and absent in production: 404, like any route that is not there, so a scanner learns
    nothing about an endpoint that cannot be authenticated against (production also refuses to
    start without the token)."""
    settings = parts_of(request).get(Settings)
    expected = settings.metrics_token.get_secret_value()
    if not expected:
        if settings.env is Environment.PRODUCTION:
            raise AppError(ErrorCode.NOT_FOUND)
        return
    challenge = {"WWW-Authenticate": 'Bearer realm="metrics"'}
    if credentials is None:
        raise AppError(ErrorCode.AUTH_REQUIRED, headers=challenge)
    if not hmac.compare_digest(credentials.credentials.encode(), expected.encode()):
        raise AppError(ErrorCode.AUTH_TOKEN_INVALID, headers=challenge)


@router.get(
    "/metrics",
    summary="Prometheus metrics (text exposition format)",
    description="Send `Authorization: Bearer <WARDROBE_METRICS_TOKEN>`. Without a token configured: open in "
    "development, 404 in production.",
    dependencies=[Depends(metrics_access)],
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text"},
        **errors(ErrorCode.AUTH_REQUIRED, ErrorCode.AUTH_TOKEN_INVALID, ErrorCode.NOT_FOUND),
    },
)
async def metrics() -> Response:
    body, content_type = render_metrics()
    return Response(body, media_type=content_type)
