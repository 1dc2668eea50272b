"""The STS service of the Tencent Cloud peer (2018-08-13): ``GetFederationToken`` and ``AssumeRole``
(design/protocols.md §4).

Requests arrive TC3-verified by the shared verifier. The ``Policy`` is URL-decoded and checked the
way the account's CAM would let it through: a ``{"version": "2.0", "statement": [...]}`` document
whose every resource starts with ``qcs::cos:<region>:uid/<appid>:<bucket>/<allowed prefix>``
(else ``InvalidParameter.GrantOtherResource``; not a COS resource at all:
``InvalidParameter.ResouceError``, Tencent's spelling) and whose every action is in the allow-list
(else ``InvalidParameter.StrategyInvalid``); an unparsable policy is
``InvalidParameter.StrategyFormatError``; ``DurationSeconds`` out of range
``InvalidParameter.OverTimeError``. The answer is ``{Credentials: {TmpSecretId, TmpSecretKey,
Token}, ExpiredTime, Expiration}``.

Each issued key pair is handed to ``on_issue`` (the S3 peer registers it, limited to the policy's
actions and resources: see ``tests.peers.s3_fixtures``). The peer's lock is held by the caller of
every action.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

if TYPE_CHECKING:
    from tests.peers.tencent_cloud import Tc3Caller

STS_VERSION = "2018-08-13"
TEST_COS_APPID = "1250000000"
TEST_COS_BUCKET = "imgs-1250000000"
TEST_COS_REGION = "ap-guangzhou"
TEST_ROLE_ARN = "qcs::cam::uin/100000000001:roleName/wardrobe-uploads"
# What the account lets its federated users do (the COS upload actions of protocols.md §4).
ALLOWED_ACTIONS = frozenset(
    {
        "name/cos:PutObject",
        "name/cos:PostObject",
        "name/cos:InitiateMultipartUpload",
        "name/cos:ListParts",
        "name/cos:UploadPart",
        "name/cos:CompleteMultipartUpload",
        "name/cos:AbortMultipartUpload",
    }
)
MAX_FEDERATION_SECONDS = 7200  # a root account's limit (a sub-account's is 129600)
MAX_ROLE_SECONDS = 43200
MAX_POLICY_CHARS = 2048
_NAME = re.compile(r"^[\w+=,.@-]{1,64}$")

RaiseError = Callable[[str, str], Exception]
Handler = Callable[["Tc3Caller", dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A temporary key pair as STS issued it, with what its policy allows."""

    tmp_secret_id: str
    tmp_secret_key: str
    token: str
    expired_time: int
    actions: frozenset[str]  # COS action names without "name/cos:", e.g. "PutObject"
    resources: tuple[str, ...]  # "<bucket>/<key pattern>", a trailing * matching any rest


@dataclass
class StsService:
    error: RaiseError
    lock: threading.Lock
    clock: Callable[[], float]
    region: str = TEST_COS_REGION
    appid: str = TEST_COS_APPID
    bucket: str = TEST_COS_BUCKET
    allowed_prefix: str = "uploads/"
    on_issue: Callable[[IssuedKey], None] | None = None
    issued: list[IssuedKey] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)  # answered actions (successes only)

    def actions(self) -> dict[str, tuple[str, str, Handler]]:
        """Action -> (service, version, handler), for the Tencent Cloud peer's dispatch."""
        return {
            "GetFederationToken": ("sts", STS_VERSION, self._get_federation_token),
            "AssumeRole": ("sts", STS_VERSION, self._assume_role),
        }

    # -- checks --------------------------------------------------------------------------------

    def _duration(self, params: dict[str, Any], default: int, limit: int) -> int:
        duration = params.get("DurationSeconds", default)
        if isinstance(duration, bool) or not isinstance(duration, int) or not 1 <= duration <= limit:
            raise self.error("InvalidParameter.OverTimeError", f"DurationSeconds must be 1 to {limit}.")
        return duration

    def _policy(self, raw: object) -> tuple[frozenset[str], tuple[str, ...]]:
        """The actions and resources a URL-encoded policy grants, once it passes the checks."""
        if not isinstance(raw, str) or not raw:
            raise self.error("MissingParameter", "The parameter `Policy` is missing.")
        text = unquote(raw)
        if len(text) > MAX_POLICY_CHARS:
            raise self.error("InvalidParameter.PolicyTooLong", "The policy is too long.")
        try:
            policy = json.loads(text)
        except ValueError:
            raise self.error("InvalidParameter.StrategyFormatError", "The policy is not valid JSON.") from None
        statements = policy.get("statement") if isinstance(policy, dict) else None
        if not isinstance(policy, dict) or policy.get("version") != "2.0" or not isinstance(statements, list):
            raise self.error("InvalidParameter.StrategyFormatError", "The policy needs version 2.0 and statements.")
        if not statements:
            raise self.error("InvalidParameter.StrategyFormatError", "The policy has no statement.")
        actions: set[str] = set()
        resources: list[str] = []
        for statement in statements:
            if not isinstance(statement, dict) or statement.get("effect") not in ("allow", "deny"):
                raise self.error("InvalidParameter.StrategyFormatError", "A statement needs an effect.")
            stated_actions = _strings(statement.get("action"))
            stated_resources = _strings(statement.get("resource"))
            if stated_actions is None or stated_resources is None:
                raise self.error("InvalidParameter.StrategyFormatError", "A statement needs actions and resources.")
            for action in stated_actions:
                if action not in ALLOWED_ACTIONS:
                    raise self.error("InvalidParameter.StrategyInvalid", f"The action {action} may not be granted.")
            for resource in stated_resources:
                resources.append(self._resource(resource))
            if statement["effect"] == "allow":
                actions.update(action.removeprefix("name/cos:") for action in stated_actions)
        return frozenset(actions), tuple(resources)

    def _resource(self, resource: str) -> str:
        if not resource.startswith("qcs::cos:"):
            raise self.error("InvalidParameter.ResouceError", f"The resource {resource} is not a COS resource.")
        allowed = f"qcs::cos:{self.region}:uid/{self.appid}:{self.bucket}/{self.allowed_prefix}"
        if not resource.startswith(allowed):
            raise self.error(
                "InvalidParameter.GrantOtherResource", f"The resource {resource} is outside what may be granted."
            )
        return resource.split(":", 5)[-1]  # "<bucket>/<key pattern>"

    def _issue(self, actions: frozenset[str], resources: tuple[str, ...], duration: int) -> dict[str, Any]:
        expired_time = int(self.clock()) + duration
        key = IssuedKey(
            tmp_secret_id="AKIDTMP" + secrets.token_hex(14).upper(),
            tmp_secret_key=secrets.token_urlsafe(30),
            token=secrets.token_urlsafe(48),
            expired_time=expired_time,
            actions=actions,
            resources=resources,
        )
        self.issued.append(key)
        if self.on_issue is not None:
            self.on_issue(key)
        return {
            "Credentials": {"Token": key.token, "TmpSecretId": key.tmp_secret_id, "TmpSecretKey": key.tmp_secret_key},
            "ExpiredTime": expired_time,
            "Expiration": datetime.fromtimestamp(expired_time, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }

    # -- actions (called under the lock) -------------------------------------------------------

    def _get_federation_token(self, caller: Tc3Caller, params: dict[str, Any]) -> dict[str, Any]:
        name = params.get("Name")
        if not isinstance(name, str) or not name:
            raise self.error("MissingParameter", "The parameter `Name` is missing.")
        if not _NAME.fullmatch(name):
            raise self.error("InvalidParameter.ParamError", "Name has invalid characters.")
        actions, resources = self._policy(params.get("Policy"))
        duration = self._duration(params, 1800, MAX_FEDERATION_SECONDS)
        answer = self._issue(actions, resources, duration)
        self.calls["GetFederationToken"] += 1
        return answer

    def _assume_role(self, caller: Tc3Caller, params: dict[str, Any]) -> dict[str, Any]:
        if params.get("RoleArn") != TEST_ROLE_ARN:
            raise self.error("ResourceNotFound.RoleNotFound", "The role does not exist.")
        session_name = params.get("RoleSessionName")
        if not isinstance(session_name, str) or not _NAME.fullmatch(session_name):
            raise self.error("InvalidParameter.ParamError", "RoleSessionName is missing or invalid.")
        duration = self._duration(params, 7200, MAX_ROLE_SECONDS)
        if params.get("Policy") is None:
            # The role's own permissions: the upload actions on the whole allowed prefix.
            actions = frozenset(a.removeprefix("name/cos:") for a in ALLOWED_ACTIONS)
            resources: tuple[str, ...] = (f"{self.bucket}/{self.allowed_prefix}*",)
        else:
            actions, resources = self._policy(params.get("Policy"))
        answer = self._issue(actions, resources, duration)
        self.calls["AssumeRole"] += 1
        return answer


def _strings(value: object) -> list[str] | None:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return list(value)
    return None
