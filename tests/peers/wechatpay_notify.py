"""WeChat Pay's side of notifications, for the local peer (design/protocols.md §2): its keys,
RSA-SHA256 signatures, the AEAD_AES_256_GCM resource, and delivery with retries.

Written with ``cryptography`` rather than taken from ``wechatpayv3``: the SDK only holds the
merchant's half (it verifies and decrypts), and the peer must not share code with the client it
checks.

Deliveries run in whichever event loop started them and report through a condition variable, so a
test can wait for "delivered" or "attempt n" from its own loop without sleeping.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import cache

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SIGNATURE_TYPE = "WECHATPAY2-SHA256-RSA2048"

# WeChat Pay's notification retry intervals in seconds (15s/15s/30s/3m/10m/20m/30m/30m/30m/60m/
# 3h/3h/3h/6h/6h); the peer waits them multiplied by ``time_scale``.
WECHAT_RETRY_INTERVALS: tuple[float, ...] = (
    15,
    15,
    30,
    180,
    600,
    1200,
    1800,
    1800,
    1800,
    3600,
    10800,
    10800,
    10800,
    21600,
    21600,
)
DEFAULT_TIME_SCALE = 1 / 10000  # the whole 24 h schedule in under 9 s
NOTIFY_TIMEOUT = 5.0  # WeChat Pay counts a slower answer as a failure

_CHINA = timezone(timedelta(hours=8))


def china_time(moment: float) -> str:
    return datetime.fromtimestamp(moment, _CHINA).replace(microsecond=0).isoformat()


def nonce32() -> str:
    return uuid.uuid4().hex.upper()


@dataclass(frozen=True)
class KeyPair:
    private_pem: str
    public_pem: str

    @property
    def private_key(self) -> rsa.RSAPrivateKey:
        key = serialization.load_pem_private_key(self.private_pem.encode(), password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        return key

    @property
    def public_key(self) -> rsa.RSAPublicKey:
        key = serialization.load_pem_public_key(self.public_pem.encode())
        assert isinstance(key, rsa.RSAPublicKey)
        return key

    @classmethod
    def generate(cls) -> KeyPair:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        private_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        public_pem = (
            key.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )
        return cls(private_pem, public_pem)


@dataclass(frozen=True)
class WeChatPayKeys:
    """The merchant's key pair (the SUT signs with it), the platform's (the peer signs with it)
    and the APIv3 key (notification encryption)."""

    merchant: KeyPair
    platform: KeyPair
    apiv3_key: str


@cache
def generated_keys() -> WeChatPayKeys:
    """Generated once per test run (RSA generation takes a while); never written to disk."""
    return WeChatPayKeys(KeyPair.generate(), KeyPair.generate(), secrets.token_hex(16))


def rsa_sign(key: rsa.RSAPrivateKey, message: str) -> str:
    return base64.b64encode(key.sign(message.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()


def rsa_verify(key: rsa.RSAPublicKey, message: str, signature: str) -> bool:
    try:
        key.verify(base64.b64decode(signature, validate=True), message.encode(), padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


def aes_gcm_encrypt(apiv3_key: str, plaintext: str, associated_data: str) -> dict[str, str]:
    """The ``resource`` of a notification: a random 12-character nonce, base64(ciphertext‖tag)."""
    nonce = secrets.token_hex(6)
    sealed = AESGCM(apiv3_key.encode()).encrypt(nonce.encode(), plaintext.encode(), associated_data.encode())
    return {"algorithm": "AEAD_AES_256_GCM", "ciphertext": base64.b64encode(sealed).decode(), "nonce": nonce}


@dataclass(frozen=True)
class Notice:
    """One signed notification, ready to POST: exactly these bytes with exactly these headers."""

    body: bytes
    headers: dict[str, str]
    event_id: str
    url: str


@dataclass
class Attempt:
    status: int | None  # None: no answer within the timeout, or the connection failed
    body: bytes


class Delivery:
    """One notification being delivered with retries; safe to wait on from any thread's loop."""

    def __init__(self, notice: Notice, intervals: tuple[float, ...], *, hold_retries: bool) -> None:
        self.notice = notice
        self.intervals = intervals
        self.hold_retries = hold_retries
        self.attempts: list[Attempt] = []
        self.probe: Attempt | None = None
        self.delivered = False
        self.finished = False  # delivered, or the schedule ran out
        self._changed = threading.Condition()
        self._nudge = threading.Event()

    @property
    def statuses(self) -> list[int | None]:
        with self._changed:
            return [a.status for a in self.attempts]

    def retry_now(self) -> None:
        """Cut the current wait short (with ``hold_retries`` this is the only way to go on)."""
        self._nudge.set()

    async def wait_attempts(self, count: int, within: float = 30.0) -> list[Attempt]:
        """The first ``count`` attempts, once they have been answered."""
        await self._wait(lambda: len(self.attempts) >= count or self.finished, within)
        with self._changed:
            if len(self.attempts) < count:
                raise AssertionError(f"delivery ended after {len(self.attempts)} attempts")
            return list(self.attempts[:count])

    async def wait_delivered(self, within: float = 30.0) -> Attempt:
        await self._wait(lambda: self.finished, within)
        with self._changed:
            if not self.delivered:
                raise AssertionError(f"never delivered; answers {[a.status for a in self.attempts]}")
            return self.attempts[-1]

    async def _wait(self, predicate: Callable[[], bool], within: float) -> None:
        def block() -> bool:
            with self._changed:
                return self._changed.wait_for(predicate, within)

        if not await asyncio.to_thread(block):
            raise TimeoutError(f"delivery to {self.notice.url}: answers so far {self.statuses}")

    def _record(self, attempt: Attempt, *, probe: bool = False) -> None:
        with self._changed:
            if probe:
                self.probe = attempt
            else:
                self.attempts.append(attempt)
                self.delivered = attempt.status in (200, 204)
                self.finished = self.delivered or len(self.attempts) > len(self.intervals)
            self._changed.notify_all()

    async def _pause(self, seconds: float) -> None:
        """Wait for the scheduled interval, or until a test says "now"."""

        def block() -> None:
            self._nudge.wait(None if self.hold_retries else seconds)
            self._nudge.clear()

        await asyncio.to_thread(block)


async def post_notice(notice: Notice, url: str | None = None) -> Attempt:
    """One POST of a notification, as WeChat Pay sends it."""
    try:
        async with httpx.AsyncClient(timeout=NOTIFY_TIMEOUT) as http:
            answer = await http.post(url or notice.url, content=notice.body, headers=notice.headers)
    except httpx.HTTPError:
        return Attempt(None, b"")
    return Attempt(answer.status_code, answer.content)
