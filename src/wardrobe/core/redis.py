"""The shared Redis client (absent in embedded mode)."""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis

from wardrobe.settings import Settings


def create_redis(settings: Settings) -> Redis | None:
    """A client on a BlockingConnectionPool: the default pool raises once max_connections are in
    flight, which under load turns into 500s; the blocking pool waits up to a timeout instead."""
    if not settings.redis_url:
        return None
    pool = BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=settings.redis_max_connections,
        timeout=settings.redis_pool_timeout,
        decode_responses=False,
        health_check_interval=30,
    )
    return Redis(connection_pool=pool)
