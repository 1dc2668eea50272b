"""A local S3 server for the S3-compatible storage backend: moto, behind a SigV4 gate.

moto's server keeps buckets and objects like S3 but checks no signature on presigned URLs (its IAM
mode only reads ``Authorization`` headers) and never expires them. ``SigV4Gate`` is WSGI middleware
in front of it that does what COS and S3 do before moto sees a request:

- a signed request (``Authorization: AWS4-HMAC-SHA256 ...`` or ``X-Amz-Signature`` in the query)
  must carry a known access key, its session token if it has one, a SigV4 signature that this
  side recomputes over the method, path, query, signed headers and payload hash, and a date that
  has not passed (presigned: ``X-Amz-Date + X-Amz-Expires``; headers: 15 minutes of skew);
- DeleteObjects must carry a ``Content-MD5`` matching its body (S3 and COS document it);
- a key pair registered with a scope (``S3Peer.grant``: what the STS peer issues, see
  ``tests.peers.tencent_sts``) may only do the COS actions its policy allowed (PutObject,
  UploadPart …, named from the method and query) on keys its policy's resources match, until it
  expires (``AccessDenied``, ``ExpiredToken``);
- unsigned requests go through to moto, which refuses them unless the object's ACL is public.

Every request is recorded (``S3Peer.requests``), so tests can count calls as the store saw them.
``S3Peer.skew`` moves the gate's clock forward to check expiry without waiting.

The server starts once per session; each test gets an emptied store with a fresh bucket.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, quote, unquote

import botocore.session
import httpx
import pytest
from botocore.config import Config
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from moto.s3.models import s3_backends
from werkzeug.serving import make_server

from wardrobe.modules.storage.s3 import S3Credentials, S3ObjectStorage

S3_BUCKET = "imgs-1250000000"  # COS naming: <name>-<appid>
S3_REGION = "ap-guangzhou"
# Obviously fake key pairs: a permanent one, and a temporary one that needs its session token.
S3_CREDENTIALS = S3Credentials("AKIDWARDROBETEST00000001", "wardrobe-test-s3-secret-key-000000000001")
S3_TEMP_CREDENTIALS = S3Credentials(
    "AKIDWARDROBETEMP00000001", "wardrobe-test-s3-secret-key-temp000000001", "wardrobe-test-session-token-0001"
)

_UNSIGNED = ("UNSIGNED-PAYLOAD", "STREAMING-UNSIGNED-PAYLOAD-TRAILER")
_MAX_HEADER_SKEW = 15 * 60
_MAX_PRESIGN_SECONDS = 7 * 24 * 3600


@dataclass(frozen=True)
class S3Request:
    """One request as the store received it (before the gate decided)."""

    method: str
    path: str  # decoded, e.g. /imgs-1250000000/uploads/1/a.png
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    status: int | None  # the gate's refusal, None if passed on to moto

    @property
    def is_delete_objects(self) -> bool:
        return self.method == "POST" and "delete" in self.query

    @property
    def deleted_keys(self) -> int:
        return self.body.count(b"<Key>") if self.is_delete_objects else 0


@dataclass(frozen=True)
class CredentialScope:
    """What a temporary key pair may do: COS action names ("PutObject", "UploadPart" …) on
    resources "<bucket>/<key pattern>" (a trailing * matches any rest), until ``expires_at``."""

    actions: frozenset[str]
    resources: tuple[str, ...]
    expires_at: float

    def allows(self, action: str, resource: str) -> bool:
        return action in self.actions and any(
            resource.startswith(pattern[:-1]) if pattern.endswith("*") else resource == pattern
            for pattern in self.resources
        )


@dataclass
class S3PeerState:
    region: str
    credentials: dict[str, S3Credentials]
    scopes: dict[str, CredentialScope] = field(default_factory=dict)
    skew: float = 0.0  # seconds added to the gate's clock
    requests: list[S3Request] = field(default_factory=list)
    # One botocore session for the tests' own clients: it parses the S3 model once, not per test.
    session: botocore.session.Session = field(default_factory=botocore.session.get_session)

    def now(self) -> float:
        return time.time() + self.skew


class _Refused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def _signature(secret: str, date: str, region: str, string_to_sign: str) -> str:
    key = _hmac(f"AWS4{secret}".encode(), date)
    for part in (region, "s3", "aws4_request"):
        key = _hmac(key, part)
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


def _canonical_query(pairs: Iterable[tuple[str, str]]) -> str:
    # Decoded, then encoded the SigV4 way: clients may send "/" or ";" raw or escaped.
    encoded = sorted((quote(k, safe="-_.~"), quote(v, safe="-_.~")) for k, v in pairs)
    return "&".join(f"{k}={v}" for k, v in encoded)


def verify_sigv4(
    state: S3PeerState, method: str, raw_path: str, raw_query: str, headers: dict[str, str], body: bytes
) -> str | None:
    """Raise ``_Refused`` unless the request is unsigned or correctly signed and current; the
    access key that signed it (None: unsigned)."""
    pairs = parse_qsl(raw_query, keep_blank_values=True)
    query = dict(pairs)
    authorization = headers.get("authorization", "")
    if "X-Amz-Signature" in query:
        credential = query.get("X-Amz-Credential", "")
        signed_headers = query.get("X-Amz-SignedHeaders", "")
        provided = query["X-Amz-Signature"]
        amz_date, token = query.get("X-Amz-Date", ""), query.get("X-Amz-Security-Token")
        payload_hash = "UNSIGNED-PAYLOAD"
        pairs = [(k, v) for k, v in pairs if k != "X-Amz-Signature"]
    elif authorization.startswith("AWS4-HMAC-SHA256 "):
        parts = (part.strip().partition("=") for part in authorization[len("AWS4-HMAC-SHA256 ") :].split(","))
        fields = {name: value for name, _, value in parts}
        credential = fields.get("Credential", "")
        signed_headers = fields.get("SignedHeaders", "")
        provided = fields.get("Signature", "")
        amz_date, token = headers.get("x-amz-date", ""), headers.get("x-amz-security-token")
        payload_hash = headers.get("x-amz-content-sha256", "")
        if payload_hash not in _UNSIGNED and payload_hash != hashlib.sha256(body).hexdigest():
            raise _Refused(400, "XAmzContentSHA256Mismatch", "The provided payload hash does not match the body")
        if token is not None and "x-amz-security-token" not in signed_headers.split(";"):
            raise _Refused(403, "AccessDenied", "The session token is not signed")
    else:
        return None  # anonymous: moto applies the object's ACL
    access_key, _, scope = credential.partition("/")
    known = state.credentials.get(access_key)
    if known is None:
        raise _Refused(403, "InvalidAccessKeyId", "The access key does not exist")
    if token != known.session_token:
        raise _Refused(403, "InvalidToken", "The provided token is malformed or otherwise invalid")
    if scope != f"{amz_date[:8]}/{state.region}/s3/aws4_request":
        raise _Refused(400, "AuthorizationHeaderMalformed", f"bad credential scope {scope!r}")
    if "host" not in signed_headers.split(";"):
        raise _Refused(400, "AuthorizationHeaderMalformed", "the host header must be signed")
    canonical_headers = "".join(
        f"{name}:{' '.join(headers.get(name, '').split())}\n" for name in signed_headers.split(";")
    )
    canonical_request = "\n".join(
        [
            method,
            quote(unquote(raw_path), safe="/~"),
            _canonical_query(pairs),
            canonical_headers,
            signed_headers,
            payload_hash,
        ]
    )
    string_to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical_request.encode()).hexdigest()]
    )
    expected = _signature(known.secret_access_key, amz_date[:8], state.region, string_to_sign)
    if not hmac.compare_digest(expected, provided):
        raise _Refused(403, "SignatureDoesNotMatch", "The request signature we calculated does not match")
    # Checked after the signature, as a store does: only then are date and lifetime believed.
    signed_at = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()
    now = state.now()
    if "X-Amz-Signature" in query:
        lifetime = int(query.get("X-Amz-Expires", "0"))
        if not 0 < lifetime <= _MAX_PRESIGN_SECONDS:
            raise _Refused(400, "AuthorizationQueryParametersError", "X-Amz-Expires out of range")
        if now > signed_at + lifetime:
            raise _Refused(403, "AccessDenied", "Request has expired")
    elif abs(now - signed_at) > _MAX_HEADER_SKEW:
        raise _Refused(403, "RequestTimeTooSkewed", "The difference between the request time and now is too large")
    return access_key


def cos_action(method: str, path: str, query: dict[str, str], headers: dict[str, str]) -> tuple[str, str]:
    """The COS action a path-style request performs and its resource "<bucket>/<key>"."""
    bucket, _, key = path.lstrip("/").partition("/")
    resource = f"{bucket}/{key}"
    copy = "x-amz-copy-source" in headers
    if method == "PUT" and key:
        if "uploadId" in query:
            return ("UploadPartCopy" if copy else "UploadPart"), resource
        return ("PutObjectCopy" if copy else "PutObject"), resource
    if method == "POST":
        if not key:
            return ("DeleteMultipleObjects" if "delete" in query else "PostObject"), resource
        if "uploads" in query:
            return "InitiateMultipartUpload", resource
        if "uploadId" in query:
            return "CompleteMultipartUpload", resource
    if method == "GET" and key:
        return ("ListParts" if "uploadId" in query else "GetObject"), resource
    if method == "DELETE" and key:
        return ("AbortMultipartUpload" if "uploadId" in query else "DeleteObject"), resource
    if method == "HEAD":
        return ("HeadObject" if key else "HeadBucket"), resource
    return f"{method}Bucket", resource


def _check_scope(
    state: S3PeerState, access_key: str | None, method: str, path: str, query: dict[str, str], headers: dict[str, str]
) -> None:
    scope = state.scopes.get(access_key or "")
    if scope is None:
        return  # a permanent key (or anonymous): moto decides
    if state.now() >= scope.expires_at:
        raise _Refused(400, "ExpiredToken", "The provided token has expired")
    action, resource = cos_action(method, path, query, headers)
    if not scope.allows(action, resource):
        raise _Refused(403, "AccessDenied", f"{action} on {resource} is not allowed by the policy")


def _check_delete_objects(headers: dict[str, str], body: bytes) -> None:
    provided = headers.get("content-md5")
    if provided is None:
        raise _Refused(400, "InvalidRequest", "Missing required header for this request: Content-MD5")
    if provided != base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode():
        raise _Refused(400, "BadDigest", "The Content-MD5 you specified did not match what we received")


class SigV4Gate:
    """WSGI middleware: record, verify, then hand the request to moto (see the module docstring)."""

    def __init__(self, app: Any, state: S3PeerState) -> None:
        self.app = app
        self.state = state

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "").startswith("/moto-api/"):
            return self.app(environ, start_response)  # type: ignore[no-any-return]
        stream = environ["wsgi.input"]
        if environ.get("wsgi.input_terminated"):
            body = stream.read()
        else:
            body = stream.read(int(environ.get("CONTENT_LENGTH") or 0))
        environ["wsgi.input"] = io.BytesIO(body)
        headers = {
            key[5:].replace("_", "-").lower(): value for key, value in environ.items() if key.startswith("HTTP_")
        }
        for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            if environ.get(key):
                headers[key.replace("_", "-").lower()] = environ[key]
        # The path and query exactly as sent (PATH_INFO is already decoded).
        raw_path, _, raw_query = environ.get("RAW_URI", "").encode("latin-1").decode("utf-8").partition("?")
        method = environ["REQUEST_METHOD"]
        query = dict(parse_qsl(raw_query, keep_blank_values=True))
        refused: _Refused | None = None
        try:
            access_key = verify_sigv4(self.state, method, raw_path, raw_query, headers, body)
            _check_scope(self.state, access_key, method, unquote(raw_path), query, headers)
            if method == "POST" and "delete" in query:
                _check_delete_objects(headers, body)
        except _Refused as exc:
            refused = exc
        status = refused.status if refused is not None else None
        self.state.requests.append(S3Request(method, unquote(raw_path), query, headers, body, status))
        if refused is not None:
            return self._refuse(start_response, refused)
        return self.app(environ, start_response)  # type: ignore[no-any-return]

    @staticmethod
    def _refuse(start_response: Any, refused: _Refused) -> list[bytes]:
        payload = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            f"<Error><Code>{refused.code}</Code><Message>{refused.message}</Message></Error>"
        ).encode()
        start_response(
            f"{refused.status} {HTTPStatus(refused.status).phrase}",
            [("Content-Type", "application/xml"), ("Content-Length", str(len(payload)))],
        )
        return [payload]


class GatedMotoServer(ThreadedMotoServer):
    """moto's threaded server with ``SigV4Gate`` in front. ``ThreadedMotoServer`` offers no hook for
    WSGI middleware, so this repeats its small ``_server_entry`` with the app wrapped."""

    def __init__(self, state: S3PeerState) -> None:
        super().__init__(ip_address="127.0.0.1", port=0, verbose=False)  # port 0: a free one
        self.state = state

    def _server_entry(self) -> None:
        app = SigV4Gate(DomainDispatcherApplication(create_backend_app), self.state)
        self._server = make_server(self._ip_address, self._port, app, True, request_handler=MotoRequestHandler)
        self._server_ready_event.set()
        self._server.serve_forever()


@dataclass
class S3Peer:
    """The running server as one test sees it."""

    endpoint_url: str
    bucket: str
    region: str
    state: S3PeerState

    @property
    def requests(self) -> list[S3Request]:
        return self.state.requests

    @property
    def skew(self) -> float:
        return self.state.skew

    @skew.setter
    def skew(self, seconds: float) -> None:
        self.state.skew = seconds

    def seed(self, keys: Iterable[str], data: bytes = b"x") -> None:
        """Objects put straight into moto's store (the server runs in this process): a thousand
        PUTs over HTTP would take seconds and test nothing the contract tests do not."""
        backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]  # moto keeps S3 per account and partition
        for key in keys:
            backend.put_object(self.bucket, key, data)

    def grant(self, credentials: S3Credentials, scope: CredentialScope) -> None:
        """Let a temporary key pair in, limited to ``scope`` (what an STS policy allowed)."""
        self.state.credentials[credentials.access_key_id] = credentials
        self.state.scopes[credentials.access_key_id] = scope

    def client(self, credentials: S3Credentials = S3_CREDENTIALS) -> Any:
        """A plain (sync) botocore client on the bucket's store, to arrange and inspect state."""
        return self.state.session.create_client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=credentials.access_key_id,
            aws_secret_access_key=credentials.secret_access_key,
            aws_session_token=credentials.session_token,
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": "path"},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )

    def storage(self, credentials: S3Credentials = S3_CREDENTIALS, *, conditional_put: bool = True) -> S3ObjectStorage:
        return S3ObjectStorage(
            bucket=self.bucket,
            region=self.region,
            credentials=credentials,
            endpoint_url=self.endpoint_url,
            addressing_style="path",
            conditional_put=conditional_put,
        )


@pytest.fixture(scope="session")
def s3_peer_server() -> Iterator[GatedMotoServer]:
    state = S3PeerState(
        region=S3_REGION,
        credentials={c.access_key_id: c for c in (S3_CREDENTIALS, S3_TEMP_CREDENTIALS)},
    )
    server = GatedMotoServer(state)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_peer(s3_peer_server: GatedMotoServer) -> Iterator[S3Peer]:
    """An empty store with the bucket ``imgs-1250000000`` (path-style), clock unskewed, no requests."""
    host, port = s3_peer_server.get_host_and_port()
    peer = S3Peer(f"http://{host}:{port}", S3_BUCKET, S3_REGION, s3_peer_server.state)
    peer.skew = 0.0
    # Key pairs an earlier test's STS peer issued are gone.
    for access_key in list(peer.state.scopes):
        peer.state.credentials.pop(access_key, None)
    peer.state.scopes.clear()
    httpx.post(f"{peer.endpoint_url}/moto-api/reset").raise_for_status()  # every moto backend, emptied
    client = peer.client()
    client.create_bucket(Bucket=peer.bucket, CreateBucketConfiguration={"LocationConstraint": peer.region})
    client.close()
    peer.requests.clear()
    yield peer
    peer.skew = 0.0


@pytest.fixture
async def s3_storage(s3_peer: S3Peer) -> AsyncIterator[S3ObjectStorage]:
    """The backend on the peer's bucket; its client is closed afterwards."""
    storage = s3_peer.storage()
    try:
        yield storage
    finally:
        await storage.aclose()


@pytest.fixture
def sts_s3_peer(s3_peer: S3Peer, tencent_peer: Any) -> S3Peer:
    """The S3 peer with the Tencent Cloud peer's STS wired in: every key pair STS issues is let
    into the store, limited to its policy's actions and resources."""
    from tests.peers.tencent_sts import IssuedKey

    def register(key: IssuedKey) -> None:
        s3_peer.grant(
            S3Credentials(key.tmp_secret_id, key.tmp_secret_key, key.token),
            CredentialScope(key.actions, key.resources, float(key.expired_time)),
        )

    tencent_peer.sts.on_issue = register
    return s3_peer
