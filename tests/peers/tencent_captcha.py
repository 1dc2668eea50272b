"""The Captcha service of the Tencent Cloud peer: ``DescribeCaptchaResult`` (2019-07-22), the
server-side check of a ticket the captcha widget gave a client.

The peer plays both halves of Tencent Captcha: tests ``issue`` a ticket and its ``randstr`` for a
captcha app (what the widget's callback hands the client after a solved puzzle), then the service
under test verifies them. The answer follows Tencent's documentation (API 1112/36926, and the
SDK's model docs): failures of the *ticket* are ``CaptchaCode`` values in a successful response,
problems with the *request* are ``Response.Error``:

- ``1`` ``OK``: a ticket issued for this ``CaptchaAppId``, with its ``Randstr``, within 5 minutes,
  verified for the first time (it is then used up);
- ``7`` ``captcha no match``: the ``Randstr`` is not the ticket's;
- ``8`` ``ticket expired``: older than ``TICKET_TTL_SECONDS``;
- ``9`` ``ticket reused``: verified successfully before;
- ``15`` ``decrypt fail``: not a ticket the service issued;
- ``16`` ``appid-ticket mismatch``: issued for another ``CaptchaAppId``;
- ``21`` ``diff``: a ``trerror…`` ticket, which the widget makes up on its own when it cannot
  reach Tencent (disaster recovery): it proves nothing;
- ``100`` ``appid-secretkey-ticket mismatch``: the ``AppSecretKey`` is not the app's;
- ``MissingParameter`` / ``InvalidParameter`` for absent or mistyped fields (``CaptchaType``
  must be 9), ``UnauthorizedOperation.Unauthorized`` while the account has no package
  (``unpaid``).

``EvilLevel`` is 100 for tickets issued with ``evil=True`` (the silent mode's "malicious" verdict).
The peer's lock is held by the caller of every action and taken by the test hooks.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.peers.tencent_cloud import Tc3Caller

CAPTCHA_VERSION = "2019-07-22"
CAPTCHA_TYPE = 9
TICKET_TTL_SECONDS = 300
# Obviously fake: a captcha app of the test account and its AppSecretKey, and a second app.
TEST_CAPTCHA_APP_ID = 190000001
TEST_CAPTCHA_APP_SECRET_KEY = "wardrobe-test-captcha-app-key"
OTHER_CAPTCHA_APP_ID = 190000002
OTHER_CAPTCHA_APP_SECRET_KEY = "wardrobe-other-captcha-app-key"

OK = 1
RANDSTR_MISMATCH = 7
TICKET_EXPIRED = 8
TICKET_REUSED = 9
DECRYPT_FAIL = 15
APPID_MISMATCH = 16
DIFF = 21
SECRET_KEY_MISMATCH = 100
MESSAGES = {
    OK: "OK",
    RANDSTR_MISMATCH: "captcha no match",
    TICKET_EXPIRED: "ticket expired",
    TICKET_REUSED: "ticket reused",
    DECRYPT_FAIL: "decrypt fail",
    APPID_MISMATCH: "appid-ticket mismatch",
    DIFF: "diff",
    SECRET_KEY_MISMATCH: "appid-secretkey-ticket mismatch",
}
_REQUIRED = ("CaptchaType", "Ticket", "UserIp", "Randstr", "CaptchaAppId", "AppSecretKey")

RaiseError = Callable[[str, str], Exception]
Handler = Callable[["Tc3Caller", dict[str, Any]], dict[str, Any]]


@dataclass
class IssuedTicket:
    app_id: int
    randstr: str
    issued_at: float
    evil: bool = False
    used: bool = False


@dataclass(frozen=True, slots=True)
class Verification:
    """One answered ``DescribeCaptchaResult``: what was asked and the code given."""

    ticket: str
    randstr: str
    user_ip: str
    app_id: int
    captcha_code: int


@dataclass
class CaptchaService:
    clock: Callable[[], float]
    error: RaiseError
    lock: threading.Lock
    apps: dict[int, str] = field(
        default_factory=lambda: {
            TEST_CAPTCHA_APP_ID: TEST_CAPTCHA_APP_SECRET_KEY,
            OTHER_CAPTCHA_APP_ID: OTHER_CAPTCHA_APP_SECRET_KEY,
        }
    )
    tickets: dict[str, IssuedTicket] = field(default_factory=dict)
    verifications: list[Verification] = field(default_factory=list)
    unpaid: bool = False  # the account has no valid package (or is in arrears)

    def actions(self) -> dict[str, tuple[str, str, Handler]]:
        """Action -> (service, version, handler), for the Tencent Cloud peer's dispatch."""
        return {"DescribeCaptchaResult": ("captcha", CAPTCHA_VERSION, self._describe)}

    # -- test controls -------------------------------------------------------------------------

    def issue(self, app_id: int = TEST_CAPTCHA_APP_ID, *, evil: bool = False, age: float = 0.0) -> tuple[str, str]:
        """A solved puzzle: the ``(ticket, randstr)`` the widget gives the client, issued ``age``
        seconds ago."""
        ticket = "tr0" + secrets.token_urlsafe(48)
        randstr = "@" + secrets.token_urlsafe(3)[:3]
        with self.lock:
            self.tickets[ticket] = IssuedTicket(app_id, randstr, self.clock() - age, evil)
        return ticket, randstr

    # -- the action (called under the lock) ----------------------------------------------------

    def _describe(self, caller: Tc3Caller, params: dict[str, Any]) -> dict[str, Any]:
        if self.unpaid:
            raise self.error("UnauthorizedOperation.Unauthorized", "No valid package, or the account is in arrears.")
        for name in _REQUIRED:
            if params.get(name) in (None, ""):
                raise self.error("MissingParameter", f"The parameter `{name}` is missing.")
        captcha_type, app_id = params["CaptchaType"], params["CaptchaAppId"]
        if not isinstance(captcha_type, int) or not isinstance(app_id, int):
            raise self.error("InvalidParameter", "CaptchaType and CaptchaAppId must be integers.")
        if captcha_type != CAPTCHA_TYPE:
            raise self.error("InvalidParameter", "CaptchaType must be 9.")
        if not all(isinstance(params[name], str) for name in ("Ticket", "UserIp", "Randstr", "AppSecretKey")):
            raise self.error("InvalidParameter", "Ticket, UserIp, Randstr and AppSecretKey must be strings.")
        code = self._verdict(params["Ticket"], params["Randstr"], app_id, params["AppSecretKey"])
        ticket = self.tickets.get(params["Ticket"])
        if code == OK and ticket is not None:
            ticket.used = True
        self.verifications.append(Verification(params["Ticket"], params["Randstr"], params["UserIp"], app_id, code))
        now = int(self.clock())
        issued_at = int(ticket.issued_at) if ticket is not None else 0
        return {
            "CaptchaCode": code,
            "CaptchaMsg": MESSAGES[code],
            "EvilLevel": 100 if ticket is not None and ticket.evil else 0,
            "GetCaptchaTime": issued_at if params.get("NeedGetCaptchaTime") == 1 else 0,
            "EvilBitmap": 0,
            "SubmitCaptchaTime": now,
            "DeviceRiskCategory": "",
            "Score": 95 if ticket is not None and ticket.evil else 5,
        }

    def _verdict(self, raw_ticket: str, randstr: str, app_id: int, secret_key: str) -> int:
        ticket = self.tickets.get(raw_ticket)
        if ticket is None:
            return DIFF if raw_ticket.startswith("trerror") else DECRYPT_FAIL
        if ticket.app_id != app_id:
            return APPID_MISMATCH
        if self.apps.get(app_id) != secret_key:
            return SECRET_KEY_MISMATCH
        if randstr != ticket.randstr:
            return RANDSTR_MISMATCH
        if self.clock() - ticket.issued_at > TICKET_TTL_SECONDS:
            return TICKET_EXPIRED
        if ticket.used:
            return TICKET_REUSED
        return OK
