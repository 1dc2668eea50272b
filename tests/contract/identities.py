"""Who the contract fuzzer is, per operation, and how it stays logged in while it fuzzes.

Operations that need a token get the demo operator's, unless they ask for a permission only an
admin holds (``x-permission`` in the document names the roles): then an admin's. Operations
without a security requirement get none. The fuzzer also fuzzes what ends sessions (logout,
logout-all, ending a session by id, an admin revoking or disabling accounts, demoting a role), so
an identity whose request was refused as unauthenticated, disabled or not permitted is checked
again before its next use, and repaired through the API itself: logged in again, re-enabled or
given its role back by the admin (who cannot disable or demote themselves).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import requests
from schemathesis.python.asgi import ASGIClient

REPAIR_REASON = "contract fuzz: restore the test identity"
# Answers that may mean the identity, not the request, is the problem.
_IDENTITY_CODES = frozenset(
    {"AUTH_TOKEN_INVALID", "AUTH_TOKEN_EXPIRED", "AUTH_SESSION_REVOKED", "ACCOUNT_DISABLED", "PERMISSION_DENIED"}
)


@dataclass
class Identity:
    name: str
    phone: str
    password: str
    role: str
    token: str | None = None
    user_id: int | None = None
    suspect: bool = True

    @property
    def header(self) -> str:
        return f"Bearer {self.token}"


class Identities:
    def __init__(self, client: ASGIClient, admin: Identity, operator: Identity, scraper: Identity) -> None:
        self.client = client
        self.admin = admin
        self.operator = operator
        self.scraper = scraper  # Prometheus: the metrics token, which no user session can end
        self._lock = threading.Lock()
        self.repairs = 0
        self._issued: dict[str, Identity] = {}  # every header ever given out, to its identity
        self.schema: Any = None  # the schema being fuzzed (hooks of other runs leave it alone)
        self.calls = 0

    def current_header(self, sent: str | None) -> str | None:
        """The live token's header for a case that carries one of ours, perhaps stale: cases of
        the coverage phase are made before they run, and meanwhile the fuzzer may have ended the
        session their token belonged to."""
        identity = self._issued.get(sent or "")
        return None if identity is None else f"Bearer {self.token(identity)}"

    def for_operation(self, operation: dict[str, Any]) -> Identity | None:
        requirements = operation.get("security", [])
        if any("MetricsToken" in requirement for requirement in requirements):
            return self.scraper
        if not any("HTTPBearer" in requirement for requirement in requirements):
            return None
        permission = operation.get("x-permission")
        if permission is not None and self.operator.role not in permission["roles"]:
            return self.admin
        return self.operator

    def token(self, identity: Identity) -> str:
        if identity is self.scraper:
            assert identity.token is not None
            return identity.token
        with self._lock:
            if identity.suspect:
                self._make_sound(identity)
            assert identity.token is not None
            return identity.token

    def observe(self, sent_authorization: str | None, response: requests.Response | Any) -> None:
        """After each call: an identity refused for who it is gets checked before its next use."""
        if response.status_code not in (401, 403) or sent_authorization is None:
            return
        try:
            code = response.json().get("code")
        except ValueError:
            return
        if code not in _IDENTITY_CODES:
            return
        for identity in (self.admin, self.operator):
            if identity.token is not None and sent_authorization == identity.header:
                identity.suspect = True

    def _me(self, identity: Identity) -> dict[str, Any] | None:
        if identity.token is None:
            return None
        resp = self.client.get("/api/v1/users/me", headers={"Authorization": identity.header})
        return resp.json()["data"] if resp.status_code == 200 else None

    def _make_sound(self, identity: Identity) -> None:
        me = self._me(identity)
        if me is None:
            self._log_in(identity)
            me = self._me(identity)
            assert me is not None, f"{identity.name} cannot use its fresh token"
        identity.user_id = int(me["id"])
        if me["role"] != identity.role:
            self._admin_restores(identity, {"role": identity.role})
        identity.suspect = False

    def _log_in(self, identity: Identity) -> None:
        body = {"method": "password", "phone": identity.phone, "password": identity.password}
        resp = self.client.post("/api/v1/auth/login", json=body)
        if resp.status_code == 403 and resp.json()["code"] == "ACCOUNT_DISABLED" and identity is not self.admin:
            self._admin_restores(identity, {"status": "active"})
            resp = self.client.post("/api/v1/auth/login", json=body)
        assert resp.status_code == 200, f"{identity.name} cannot log in again: {resp.text}"
        identity.token = resp.json()["data"]["access_token"]
        self._issued[identity.header] = identity
        identity.user_id = int(resp.json()["data"]["user"]["id"])
        self.repairs += 1

    def _admin_restores(self, identity: Identity, change: dict[str, str]) -> None:
        assert identity is not self.admin, "the admin cannot be demoted or disabled (by itself)"
        self._make_sound(self.admin)
        resp = self.client.patch(
            f"/api/v1/admin/users/{identity.user_id}",
            json={**change, "reason": REPAIR_REASON},
            headers={"Authorization": self.admin.header},
        )
        assert resp.status_code == 200, f"the admin cannot restore {identity.name}: {resp.text}"
        self.repairs += 1
