"""The Tencent Cloud SDK clients of one provider adapter: the deployment's, and one per vendor account."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

from wardrobe.core.tencent import tencent_client
from wardrobe.modules.providers.accounts import Account
from wardrobe.modules.providers.base import ProviderError

C = TypeVar("C")
# The code a call fails with when its account cannot be used as configured (one of the Tencent
# adapters' ``PROVIDER_BROKEN_CODES``).
ACCOUNT_MISCONFIGURED = "provider_misconfigured"


class TencentClients(Generic[C]):
    """The SDK clients of one adapter: its own (the deployment's credentials, from settings) and
    one per vendor account the engine made it call as (``StepContext.account``).

    An account's client is built on first use and kept while the account stays as it is: the
    cache entry remembers a digest of its SecretId, SecretKey, endpoint and region, so an account
    an operator edited gets a new client on its next call. The replaced client is only closed in
    ``aclose``: a call still running on it must not lose its connection.

    ``client_class`` loads the SDK's client class, on the first call: an SDK client module imports
    all of its request models (up to ~20 MiB), and an API process builds every configured provider
    without ever calling one (workers do). The credentials and scheme are checked at once, as
    building the client would.
    """

    def __init__(
        self,
        client_class: Callable[[], type[C]],
        *,
        secret_id: str,
        secret_key: str,
        region: str,
        endpoint: str | None,
        scheme: str,
        timeout: float,
        connect_timeout: float,
    ) -> None:
        if scheme not in {"https", "http"}:
            raise ValueError("scheme must be 'https' or 'http'")
        # The SDK's own check of the keys (empty ones are refused): a small module, no request models.
        from tencentcloud.common.credential import Credential

        Credential(secret_id, secret_key)
        self._load_class = client_class
        self._secret = (secret_id, secret_key)
        self._region = region
        self._endpoint = endpoint
        self._scheme = scheme
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._default: C | None = None
        self._by_account: dict[str, tuple[str, C]] = {}
        self._retired: list[C] = []

    @property
    def default(self) -> C:
        """The client on the deployment's credentials, built on first use."""
        if self._default is None:
            self._default = self._build(*self._secret, self._region, self._endpoint, self._scheme)
        return self._default

    def _build(self, secret_id: str, secret_key: str, region: str, endpoint: str | None, scheme: str) -> C:
        return tencent_client(
            self._load_class(),
            secret_id=secret_id,
            secret_key=secret_key,
            region=region,
            endpoint=endpoint,
            scheme=scheme,
            timeout=self._timeout,
            connect_timeout=self._connect_timeout,
        )

    def get(self, account: Account | None) -> C:
        """The client to call as ``account`` (the adapter's own for None). An account that cannot
        sign a Tencent request fails the call as a broken provider, so the engine skips it."""
        if account is None:
            return self.default

        def unusable(why: str) -> ProviderError:
            return ProviderError(ACCOUNT_MISCONFIGURED, f"account {account.key}: {why}", broken=True)

        if not account.key_id or not account.secret:
            raise unusable("a Tencent account needs a SecretId (key_id) and a SecretKey")
        region = account.options.get("region") or self._region
        if not isinstance(region, str):
            raise unusable("options.region must be a region name")
        endpoint, scheme = self._endpoint, self._scheme
        if account.endpoint:
            # Accounts hold a URL; the SDK wants a host[:port] and a scheme. Tencent's API 3.0
            # lives at "/", so a path on the URL has no meaning here.
            parts = urlsplit(account.endpoint)
            if parts.scheme not in {"https", "http"} or not parts.netloc:
                raise unusable("endpoint must be an http(s) URL")
            endpoint, scheme = parts.netloc, parts.scheme
        fingerprint = hashlib.sha256(
            "\0".join((account.key_id, account.secret, endpoint or "", scheme, region)).encode()
        ).hexdigest()
        cached = self._by_account.get(account.key)
        if cached is not None and cached[0] == fingerprint:
            return cached[1]
        client = self._build(account.key_id, account.secret, region, endpoint, scheme)
        if cached is not None:
            self._retired.append(cached[1])
        self._by_account[account.key] = (fingerprint, client)
        return client

    async def aclose(self) -> None:
        built = [] if self._default is None else [self._default]
        clients: list[Any] = [*built, *(c for _, c in self._by_account.values()), *self._retired]
        self._default = None
        self._by_account.clear()
        self._retired.clear()
        for client in clients:
            await client.close()
