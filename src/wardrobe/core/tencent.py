"""How every Tencent Cloud SDK async client is built (Hunyuan, aiart, SCF, TMS, IMS)."""

from __future__ import annotations

from typing import Any, TypeVar

import httpx

from wardrobe.core.tracing import vendor_http_hooks

C = TypeVar("C")


def tencent_client(
    client_class: type[C],
    *,
    secret_id: str,
    secret_key: str,
    region: str,
    endpoint: str | None,
    scheme: str,
    timeout: float,
    connect_timeout: float,
) -> C:
    """An SDK client on a configurable endpoint (the local peers in tests).

    The region breaker stays off: its fallback builds a wrong URL for a custom endpoint. The SDK
    takes one number for the whole request; a short connect timeout tells "vendor unreachable"
    (safe to retry) from "sent, answer late" (not safe for a submit) sooner, and the SDK copies
    this client-wide timeout into every request it builds.
    """
    if scheme not in {"https", "http"}:
        raise ValueError("scheme must be 'https' or 'http'")
    # Here, not at the top: the SDK (requests with it) costs every process ~20 MiB, used or not.
    from tencentcloud.common.credential import Credential
    from tencentcloud.common.profile.client_profile import ClientProfile
    from tencentcloud.common.profile.http_profile import HttpProfile

    profile = ClientProfile(
        httpProfile=HttpProfile(endpoint=endpoint, protocol=scheme, reqTimeout=timeout),
        disable_region_breaker=True,
    )
    client: Any = client_class(Credential(secret_id, secret_key), region, profile)  # type: ignore[call-arg]
    client.http_client.timeout = httpx.Timeout(timeout, connect=connect_timeout)
    # The trace id goes out as X-Request-Id and every answer is logged under it: TC3 signs only
    # content-type and host (the old signature only the parameters), so no signature changes.
    client.http_client.event_hooks = vendor_http_hooks(f"tencent-{client_class.__module__.split('.')[1]}")
    return client  # type: ignore[no-any-return]
