"""Local peer of the Tencent Cloud API 3.0 (TC3-HMAC-SHA256): SMS ``SendSms`` and the Hunyuan
image jobs (``SubmitHunyuanImageJob``/``QueryHunyuanImageJob``, in ``tests.peers.tencent_hunyuan``),
the aiart image actions (``tests.peers.tencent_aiart``) and SCF ``Invoke`` with signed result
callbacks (``tests.peers.tencent_scf``), TMS/IMS content moderation
(``tests.peers.tencent_moderation``), KMS data keys (``tests.peers.tencent_kms``), STS temporary
keys for COS uploads (``tests.peers.tencent_sts``) and Captcha ticket checks
(``tests.peers.tencent_captcha``).

It checks requests the way Tencent does (design/protocols.md §5 and §6) so that the official SDK
and our adapters are exercised against the real protocol: signature, scope, clock skew, action
version, then the service's rules. Requests are dispatched to a service by the Host (a
``<service>.tencentcloudapi.com`` host names it) or, on a local host, by the service that owns
``X-TC-Action``; the credential scope must name that service. Where Tencent answers per number, the peer answers inside
``SendStatusSet[i].Code`` (limits, malformed numbers, unapproved template or signature); problems
with the request as a whole come back as ``Response.Error``. Every answer is HTTP 200 with a
Content-Type of exactly ``application/json``, because the SDK only parses errors for that type.

Handling is synchronous under one lock: the server thread and the test thread share the state.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.peers.tencent_aiart import AIART_REGIONS, AIART_RESULT_PREFIX, AiartService
from tests.peers.tencent_captcha import CaptchaService
from tests.peers.tencent_hunyuan import (
    HUNYUAN_REGIONS,
    HUNYUAN_VERSION,
    RESULT_PATH_PREFIX,
    HunyuanService,
)
from tests.peers.tencent_kms import KmsService
from tests.peers.tencent_moderation import ModerationService
from tests.peers.tencent_scf import SCF_RESULT_PREFIX, ScfService
from tests.peers.tencent_sts import StsService

Clock = Callable[[], float]

# Obviously fake credentials and identifiers, shared by the peer fixtures and the tests.
TEST_SECRET_ID = "AKID-wardrobe-test-only"
TEST_SECRET_KEY = "wardrobe-test-secret-key-not-real"
# A second key pair the peer knows: a vendor account's (accounts.py), distinct from the default.
TEST_ACCOUNT_SECRET_ID = "AKID-wardrobe-test-account"
TEST_ACCOUNT_SECRET_KEY = "wardrobe-test-account-key-not-real"
TEST_SDK_APP_ID = "1400000001"
TEST_SIGN_NAME = "衣柜测试"
TEST_TEMPLATE_ID = "100001"  # verification template: "{1} is your code, valid for {2} minutes"
TEST_NOTICE_TEMPLATE_ID = "100002"  # notice: "your account is now bound to {1}; not you? contact us"
TEST_REGION = "ap-guangzhou"

SMS_VERSION = "2021-01-11"
MAX_SKEW_SECONDS = 300
MAX_NUMBERS_PER_REQUEST = 200
# ``handle`` returns this status when a fault hook says to swallow the answer: the action has
# happened, but the caller never hears back (its read times out).
DROP_ANSWER = -1
_DROPPED_ANSWER_HOLD_SECONDS = 60.0
_ALGORITHM = "TC3-HMAC-SHA256"
_REQUIRED_SIGNED_HEADERS = ("content-type", "host")
_AUTHORIZATION = re.compile(
    r"TC3-HMAC-SHA256 Credential=(?P<secret_id>[^/\s,]+)/(?P<date>\d{4}-\d{2}-\d{2})/"
    r"(?P<service>[a-z0-9-]+)/tc3_request,\s*SignedHeaders=(?P<signed>[a-z0-9;-]+),\s*"
    r"Signature=(?P<signature>[0-9a-f]{64})"
)
# Tencent counts the daily cap per natural day in China Standard Time.
_CHINA_TZ = timezone(timedelta(hours=8))
_MAINLAND = re.compile(r"(?:\+86|0086|86)?(1[3-9]\d{9})")
_E164 = re.compile(r"\+([1-9]\d{6,14})")
_VERIFICATION_PARAM = re.compile(r"\d{0,6}")
_ISO_BY_PREFIX = {"1": "US", "44": "GB", "65": "SG", "81": "JP", "852": "HK", "853": "MO", "886": "TW"}

_MESSAGES = {
    "Ok": "send success",
    "InvalidParameterValue.IncorrectPhoneNumber": "invalid mobile number",
    "FailedOperation.TemplateIncorrectOrUnapproved": "template is not approved or does not exist",
    "FailedOperation.TemplateParamSetNotMatchApprovedTemplate": "template parameter count mismatch",
    "FailedOperation.SignatureIncorrectOrUnapproved": "signature is not approved or format error",
    "LimitExceeded.PhoneNumberThirtySecondLimit": "too many messages to this number within 30 seconds",
    "LimitExceeded.PhoneNumberOneHourLimit": "too many messages to this number within 1 hour",
    "LimitExceeded.PhoneNumberDailyLimit": "too many messages to this number today",
}


class TencentCloudError(Exception):
    """An answer the peer gives as ``Response.Error``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class SmsTemplate:
    """An approved template: how many variables it has and whether it is a verification template
    (whose variables Tencent restricts to 0-6 digits)."""

    param_count: int
    verification: bool = False


@dataclass(frozen=True, slots=True)
class SentSms:
    phone: str
    template_id: str
    params: tuple[str, ...]
    sign_name: str
    sdk_app_id: str
    serial_no: str
    sent_at: float


@dataclass(frozen=True, slots=True)
class Tc3Caller:
    secret_id: str
    action: str
    version: str
    region: str
    timestamp: int
    host: str = ""


ActionHandler = Callable[[Tc3Caller, dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class _Action:
    service: str
    version: str
    handler: ActionHandler
    regions: frozenset[str] | None = None  # None: every region the peer knows
    regional: bool = True  # False: the API takes no region (Captcha), so none is checked


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


def utc_date(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")


def tc3_signature(
    secret_key: str,
    *,
    service: str,
    timestamp: int,
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    signed_headers: Sequence[str],
    payload: bytes,
) -> str:
    """The TC3-HMAC-SHA256 signature; ``headers`` are keyed by lower-case name."""
    canonical_headers = "".join(f"{name}:{headers[name].strip().lower()}\n" for name in signed_headers)
    canonical_request = "\n".join(
        [method, path, query, canonical_headers, ";".join(signed_headers), _sha256_hex(payload)]
    )
    date = utc_date(timestamp)
    scope = f"{date}/{service}/tc3_request"
    string_to_sign = "\n".join([_ALGORITHM, str(timestamp), scope, _sha256_hex(canonical_request.encode("utf-8"))])
    signing_key = _hmac(_hmac(_hmac(f"TC3{secret_key}".encode(), date), service), "tc3_request")
    return hmac.new(signing_key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def signed_headers_for(
    *,
    host: str,
    body: bytes,
    timestamp: int,
    secret_id: str = TEST_SECRET_ID,
    secret_key: str = TEST_SECRET_KEY,
    service: str = "sms",
    action: str = "SendSms",
    version: str = SMS_VERSION,
    region: str = TEST_REGION,
) -> dict[str, str]:
    """Headers of a signed JSON POST to ``/``, for tests that need to choose the timestamp (the SDK
    always signs with the wall clock)."""
    headers = {"content-type": "application/json", "host": host}
    signature = tc3_signature(
        secret_key,
        service=service,
        timestamp=timestamp,
        method="POST",
        path="/",
        query="",
        headers=headers,
        signed_headers=_REQUIRED_SIGNED_HEADERS,
        payload=body,
    )
    scope = f"{utc_date(timestamp)}/{service}/tc3_request"
    return {
        "Content-Type": "application/json",
        "Host": host,
        "Authorization": f"{_ALGORITHM} Credential={secret_id}/{scope}, "
        f"SignedHeaders=content-type;host, Signature={signature}",
        "X-TC-Action": action,
        "X-TC-Version": version,
        "X-TC-Timestamp": str(timestamp),
        "X-TC-Region": region,
    }


def normalize_phone(raw: str) -> str | None:
    """E.164 form of a number Tencent would accept, or None. Mainland numbers may also come as
    ``0086…``, ``86…`` or eleven bare digits (SendSms documentation)."""
    mainland = _MAINLAND.fullmatch(raw)
    if mainland:
        return f"+86{mainland.group(1)}"
    if raw.startswith("+86"):
        return None
    return raw if _E164.fullmatch(raw) else None


def _iso_code(phone: str) -> str:
    if phone.startswith("+86"):
        return "CN"
    digits = phone[1:]
    for length in (3, 2, 1):
        iso = _ISO_BY_PREFIX.get(digits[:length])
        if iso:
            return iso
    return ""


def _china_day(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, _CHINA_TZ).strftime("%Y-%m-%d")


class TencentCloudPeer:
    """State and behaviour of the peer; the Starlette app only moves bytes in and out."""

    def __init__(
        self,
        credentials: Mapping[str, str] | None = None,
        *,
        clock: Clock = time.time,
        service: str = "sms",
        session_tokens: Mapping[str, str] | None = None,
        regions: Iterable[str] = ("ap-guangzhou", "ap-beijing", "ap-nanjing"),
        sdk_app_ids: Iterable[str] = (TEST_SDK_APP_ID,),
        templates: Mapping[str, SmsTemplate] | None = None,
        sign_names: Iterable[str] = (TEST_SIGN_NAME,),
        per_30s: int = 1,
        per_hour: int = 5,
        per_day: int = 10,
    ) -> None:
        self.credentials = dict(
            credentials or {TEST_SECRET_ID: TEST_SECRET_KEY, TEST_ACCOUNT_SECRET_ID: TEST_ACCOUNT_SECRET_KEY}
        )
        self.clock = clock
        self.service = service
        self.session_tokens = dict(session_tokens or {})
        self.regions = set(regions)
        self.sdk_app_ids = set(sdk_app_ids)
        self.templates = dict(
            templates or {TEST_TEMPLATE_ID: SmsTemplate(2, verification=True), TEST_NOTICE_TEMPLATE_ID: SmsTemplate(1)}
        )
        self.sign_names = set(sign_names)
        self.per_30s = per_30s
        self.per_hour = per_hour
        self.per_day = per_day
        self.sent: list[SentSms] = []
        self.requests_received = 0
        self.action_calls: Counter[str] = Counter()
        # The X-Request-Id of each signed request taken (our trace id; "" without one).
        self.request_ids: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self.hunyuan = HunyuanService(clock=clock, error=TencentCloudError, lock=self._lock)
        self._actions: dict[str, _Action] = {
            "SendSms": _Action("sms", SMS_VERSION, self._send_sms),
            "SubmitHunyuanImageJob": _Action(
                "hunyuan",
                HUNYUAN_VERSION,
                lambda caller, params: self.hunyuan.submit(caller.secret_id, caller.host, params),
                HUNYUAN_REGIONS,
            ),
            "QueryHunyuanImageJob": _Action(
                "hunyuan",
                HUNYUAN_VERSION,
                lambda caller, params: self.hunyuan.query(caller.secret_id, params),
                HUNYUAN_REGIONS,
            ),
        }
        self.aiart = AiartService(clock=clock, error=TencentCloudError, lock=self._lock)
        self.scf = ScfService(clock=clock, error=TencentCloudError, lock=self._lock)
        for name, (service_name, version, handler) in self.aiart.actions().items():
            self._actions[name] = _Action(service_name, version, handler, AIART_REGIONS)
        for name, (service_name, version, handler) in self.scf.actions().items():
            self._actions[name] = _Action(service_name, version, handler)
        self.moderation = ModerationService(clock=clock, error=TencentCloudError, lock=self._lock)
        for name, (service_name, version, handler) in self.moderation.actions().items():
            self._actions[name] = _Action(service_name, version, handler)
        self.kms = KmsService(error=TencentCloudError, lock=self._lock)
        for name, (service_name, version, handler) in self.kms.actions().items():
            self._actions[name] = _Action(service_name, version, handler)
        self.sts = StsService(error=TencentCloudError, lock=self._lock, clock=clock)
        for name, (service_name, version, handler) in self.sts.actions().items():
            self._actions[name] = _Action(service_name, version, handler)
        self.captcha = CaptchaService(clock=clock, error=TencentCloudError, lock=self._lock)
        for name, (service_name, version, handler) in self.captcha.actions().items():
            self._actions[name] = _Action(service_name, version, handler, regional=False)
        self._deliveries: dict[str, list[float]] = {}
        self._faults: list[str] = []
        self._http_faults: list[int] = []
        self._dropped_actions: list[str] = []
        self.answers_dropped = 0
        # Set to let go of every swallowed answer (the fixture does at teardown).
        self.dropped_answers_released = threading.Event()
        self._serial = 0

    # -- test controls -------------------------------------------------------------------------

    def fail_next(self, count: int, code: str = "InternalError.OtherError") -> None:
        """Answer the next ``count`` authenticated requests with ``Response.Error`` ``code``."""
        with self._lock:
            self._faults.extend([code] * count)

    def http_error_next(self, count: int, status: int = 502) -> None:
        """Answer the next ``count`` requests with a bare HTTP error, as a broken gateway would."""
        with self._lock:
            self._http_faults.extend([status] * count)

    def drop_answer_next(self, action: str) -> None:
        """Perform the next ``action`` request, then never answer it: the caller's read times out
        as if the answer had been lost on the way back."""
        with self._lock:
            self._dropped_actions.append(action)

    def release_dropped_answers(self) -> None:
        self.dropped_answers_released.set()

    def sent_to(self, phone: str) -> list[SentSms]:
        normalized = normalize_phone(phone) or phone
        with self._lock:
            return [sms for sms in self.sent if sms.phone == normalized]

    def last_params_for(self, phone: str) -> list[str] | None:
        sent = self.sent_to(phone)
        return list(sent[-1].params) if sent else None

    # -- protocol ------------------------------------------------------------------------------

    def handle(
        self, *, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, str, bytes]:
        """Answer one request; ``headers`` are keyed by lower-case name. Returns status, media
        type and body."""
        with self._lock:
            self.requests_received += 1
            if self._http_faults:
                status = self._http_faults.pop(0)
                return status, "text/plain", b"Bad Gateway"
            try:
                payload = self._dispatch(method, path, query, headers, body)
            except TencentCloudError as exc:
                payload = {"Error": {"Code": exc.code, "Message": exc.message}}
            action = headers.get("x-tc-action", "")
            if "Error" not in payload and action in self._dropped_actions:
                self._dropped_actions.remove(action)
                self.answers_dropped += 1
                return DROP_ANSWER, "", b""
            payload["RequestId"] = str(uuid.uuid4())
            return 200, "application/json", json.dumps({"Response": payload}).encode("utf-8")

    def _dispatch(self, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
        if method != "POST":
            raise TencentCloudError("UnsupportedRequestMethod", f"The request method {method} is not supported.")
        caller = self.verify_tc3(method=method, path=path, query=query, headers=headers, body=body)
        if self._faults:
            code = self._faults.pop(0)
            raise TencentCloudError(code, "An internal error occurred. Please retry later.")
        known = self._action_for(headers.get("host", ""), caller.action)
        if known is None:
            raise TencentCloudError("InvalidAction", f"The action `{caller.action}` does not exist.")
        if caller.version != known.version:
            raise TencentCloudError("NoSuchVersion", f"The version `{caller.version}` does not exist.")
        regions = self.regions if known.regions is None else self.regions & known.regions
        if known.regional and caller.region not in regions:
            raise TencentCloudError("UnsupportedRegion", f"The region `{caller.region}` is not supported.")
        try:
            params = json.loads(body)
        except ValueError:
            raise TencentCloudError("InvalidParameter", "The request body is not valid JSON.") from None
        if not isinstance(params, dict):
            raise TencentCloudError("InvalidParameter", "The request body must be a JSON object.")
        self.action_calls[caller.action] += 1
        self.request_ids.append((caller.action, headers.get("x-request-id", "")))
        return known.handler(caller, params)

    @staticmethod
    def _host_service(host: str) -> str | None:
        hostname = host.split(":", 1)[0]
        if hostname.endswith(".tencentcloudapi.com"):
            return hostname.split(".", 1)[0]
        return None

    def _action_for(self, host: str, action: str) -> _Action | None:
        known = self._actions.get(action)
        host_service = self._host_service(host)
        if known is None or (host_service is not None and known.service != host_service):
            return None
        return known

    def _expected_service(self, host: str, action: str) -> str:
        # A real host names its service (sms.tencentcloudapi.com); a local one cannot, so there
        # the action says which service the request is for.
        host_service = self._host_service(host)
        if host_service is not None:
            return host_service
        known = self._actions.get(action)
        return known.service if known is not None else self.service

    def verify_tc3(self, *, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes) -> Tc3Caller:
        authorization = headers.get("authorization", "")
        match = _AUTHORIZATION.fullmatch(authorization.strip())
        if match is None:
            raise TencentCloudError("AuthFailure.InvalidAuthorization", "Authorization header is invalid.")
        secret_id = match.group("secret_id")
        secret_key = self.credentials.get(secret_id)
        if secret_key is None:
            raise TencentCloudError("AuthFailure.SecretIdNotFound", "The SecretId is not found.")
        raw_timestamp = headers.get("x-tc-timestamp", "")
        if not raw_timestamp.isdigit():
            raise TencentCloudError("MissingParameter", "X-TC-Timestamp is missing or invalid.")
        timestamp = int(raw_timestamp)
        if abs(self.clock() - timestamp) > MAX_SKEW_SECONDS:
            raise TencentCloudError(
                "AuthFailure.SignatureExpire",
                "Signature expired. Timestamp differs from server time by more than 5 minutes.",
            )
        signed = match.group("signed").split(";")
        if not set(_REQUIRED_SIGNED_HEADERS) <= set(signed) or any(name not in headers for name in signed):
            raise TencentCloudError(
                "AuthFailure.InvalidAuthorization", "SignedHeaders must include content-type and host."
            )
        # The date and service feed the signing key, so Tencent reports a wrong scope as a
        # signature failure.
        if match.group("date") != utc_date(timestamp):
            raise TencentCloudError("AuthFailure.SignatureFailure", "Credential date is not the UTC date.")
        expected_service = self._expected_service(headers.get("host", ""), headers.get("x-tc-action", ""))
        if match.group("service") != expected_service:
            raise TencentCloudError("AuthFailure.SignatureFailure", "Credential service is incorrect.")
        token = headers.get("x-tc-token")
        if token is not None and self.session_tokens.get(secret_id) != token:
            raise TencentCloudError("AuthFailure.TokenFailure", "The token is invalid.")
        payload = body
        if headers.get("x-tc-content-sha256") == "UNSIGNED-PAYLOAD":
            payload = b"UNSIGNED-PAYLOAD"
        expected = tc3_signature(
            secret_key,
            service=match.group("service"),
            timestamp=timestamp,
            method=method,
            path=path,
            query=query,
            headers=headers,
            signed_headers=signed,
            payload=payload,
        )
        if not hmac.compare_digest(expected, match.group("signature")):
            raise TencentCloudError(
                "AuthFailure.SignatureFailure",
                "The provided credentials could not be validated. Please check your signature is correct.",
            )
        action = headers.get("x-tc-action", "")
        version = headers.get("x-tc-version", "")
        if not action or not version:
            raise TencentCloudError("MissingParameter", "X-TC-Action and X-TC-Version are required.")
        return Tc3Caller(secret_id, action, version, headers.get("x-tc-region", ""), timestamp, headers.get("host", ""))

    # -- SendSms -------------------------------------------------------------------------------

    def _send_sms(self, caller: Tc3Caller, params: dict[str, Any]) -> dict[str, Any]:
        phones = params.get("PhoneNumberSet")
        if phones is None:
            raise TencentCloudError("MissingParameter", "The parameter `PhoneNumberSet` is missing.")
        if not isinstance(phones, list) or not all(isinstance(phone, str) for phone in phones):
            raise TencentCloudError("InvalidParameter", "`PhoneNumberSet` must be a list of strings.")
        if not phones:
            raise TencentCloudError("MissingParameter.EmptyPhoneNumberSet", "`PhoneNumberSet` is empty.")
        if len(phones) > MAX_NUMBERS_PER_REQUEST:
            raise TencentCloudError(
                "LimitExceeded.PhoneNumberCountLimit", "At most 200 numbers may be sent in one request."
            )
        sdk_app_id = params.get("SmsSdkAppId")
        if not isinstance(sdk_app_id, str) or not sdk_app_id:
            raise TencentCloudError("MissingParameter", "The parameter `SmsSdkAppId` is missing.")
        if sdk_app_id not in self.sdk_app_ids:
            raise TencentCloudError("InvalidParameterValue.SdkAppIdNotExist", "SdkAppId does not exist.")
        template_id = params.get("TemplateId")
        if not isinstance(template_id, str) or not template_id:
            raise TencentCloudError("MissingParameter", "The parameter `TemplateId` is missing.")
        template_params = params.get("TemplateParamSet") or []
        if not isinstance(template_params, list) or not all(isinstance(p, str) for p in template_params):
            raise TencentCloudError("InvalidParameter", "`TemplateParamSet` must be a list of strings.")
        sign_name = params.get("SignName") or ""
        template = self.templates.get(template_id)
        verification = template is not None and template.verification
        if verification and not all(_VERIFICATION_PARAM.fullmatch(value) for value in template_params):
            raise TencentCloudError(
                "InvalidParameterValue.TemplateParameterFormatError",
                "Verification template parameters must be 0-6 digits.",
            )
        normalized = [normalize_phone(phone) for phone in phones]
        kinds = {phone.startswith("+86") for phone in normalized if phone is not None}
        if len(kinds) > 1:
            raise TencentCloudError(
                "UnsupportedOperation.ContainDomesticAndInternationalPhoneNumber",
                "The request contains both Chinese mainland and international numbers.",
            )
        shared_failure: str | None = None
        if template is None:
            shared_failure = "FailedOperation.TemplateIncorrectOrUnapproved"
        elif len(template_params) != template.param_count:
            shared_failure = "FailedOperation.TemplateParamSetNotMatchApprovedTemplate"
        elif True in kinds and sign_name not in self.sign_names:
            # A signature is required for Chinese mainland numbers and must be approved.
            shared_failure = "FailedOperation.SignatureIncorrectOrUnapproved"
        now = self.clock()
        session_context = params.get("SessionContext") or ""
        statuses: list[dict[str, Any]] = []
        for raw, phone in zip(phones, normalized, strict=True):
            if phone is None:
                code = "InvalidParameterValue.IncorrectPhoneNumber"
            else:
                code = shared_failure or self._limit_code(phone, now) or "Ok"
            serial_no = ""
            if code == "Ok" and phone is not None:
                serial_no = self._deliver(phone, template_id, template_params, sign_name, sdk_app_id, now)
            statuses.append(
                {
                    "SerialNo": serial_no,
                    "PhoneNumber": phone or raw,
                    "Fee": 1 if code == "Ok" else 0,
                    "SessionContext": session_context,
                    "Code": code,
                    "Message": _MESSAGES.get(code, code),
                    "IsoCode": _iso_code(phone) if phone else "",
                }
            )
        return {"SendStatusSet": statuses}

    def _limit_code(self, phone: str, now: float) -> str | None:
        deliveries = self._deliveries.get(phone, [])
        if sum(1 for at in deliveries if now - 30 < at <= now) >= self.per_30s:
            return "LimitExceeded.PhoneNumberThirtySecondLimit"
        if sum(1 for at in deliveries if now - 3600 < at <= now) >= self.per_hour:
            return "LimitExceeded.PhoneNumberOneHourLimit"
        today = _china_day(now)
        if sum(1 for at in deliveries if _china_day(at) == today) >= self.per_day:
            return "LimitExceeded.PhoneNumberDailyLimit"
        return None

    def _deliver(
        self, phone: str, template_id: str, params: list[str], sign_name: str, sdk_app_id: str, now: float
    ) -> str:
        self._serial += 1
        serial_no = f"5000:{self._serial:028d}"
        self._deliveries.setdefault(phone, []).append(now)
        self.sent.append(SentSms(phone, template_id, tuple(params), sign_name, sdk_app_id, serial_no, now))
        return serial_no


def create_tencent_cloud_app(peer: TencentCloudPeer) -> Starlette:
    """The ASGI app; tests may replace ``app.state.peer`` to start from fresh state."""

    async def endpoint(request: Request) -> Response:
        current: TencentCloudPeer = request.app.state.peer
        body = await request.body()
        headers = {name.lower(): value for name, value in request.headers.items()}
        status, media_type, content = current.handle(
            method=request.method,
            path=request.url.path,
            query=request.url.query,
            headers=headers,
            body=body,
        )
        if status == DROP_ANSWER:
            # The action has happened; hold the answer back until the caller has given up (or
            # the test ends), then answer nothing useful.
            await run_in_threadpool(current.dropped_answers_released.wait, _DROPPED_ANSWER_HOLD_SECONDS)
            return Response(b"", status_code=504)
        return Response(content, status_code=status, media_type=media_type)

    async def hunyuan_result(request: Request) -> Response:
        current: TencentCloudPeer = request.app.state.peer
        png = current.hunyuan.result_image(request.path_params["job_id"], request.path_params["index"])
        if png is None:
            return Response(b"NoSuchKey", status_code=404, media_type="text/plain")
        return Response(png, media_type="image/png")

    async def aiart_result(request: Request) -> Response:
        current: TencentCloudPeer = request.app.state.peer
        png = current.aiart.result_image(request.path_params["result_id"])
        if png is None:
            return Response(b"NoSuchKey", status_code=404, media_type="text/plain")
        return Response(png, media_type="image/png")

    async def scf_result(request: Request) -> Response:
        current: TencentCloudPeer = request.app.state.peer
        png = current.scf.result_image(request.path_params["request_id"])
        if png is None:
            return Response(b"NoSuchKey", status_code=404, media_type="text/plain")
        return Response(png, media_type="image/png")

    app = Starlette(
        routes=[
            Route("/", endpoint, methods=["POST"]),
            Route(RESULT_PATH_PREFIX + "/{job_id}/{index:int}.png", hunyuan_result, methods=["GET"]),
            Route(AIART_RESULT_PREFIX + "/{result_id}.png", aiart_result, methods=["GET"]),
            Route(SCF_RESULT_PREFIX + "/{request_id}.png", scf_result, methods=["GET"]),
        ]
    )
    app.state.peer = peer
    return app
