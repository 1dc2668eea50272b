"""The STS service of the Tencent Cloud peer answers as protocols.md §4 describes, checked with the
SDK's common async client: policies are held to the allowed bucket prefix and actions, lifetimes to
their range, and what it issues is what the S3 peer then lets in."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import quote

import pytest
from botocore.exceptions import ClientError
from tencentcloud.common.common_client_async import CommonClient
from tencentcloud.common.credential import Credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile

from tests.peers.fixtures import ServedTencentCloudPeer
from tests.peers.s3_fixtures import S3Peer
from tests.peers.tencent_cloud import TEST_REGION, TEST_SECRET_ID, TEST_SECRET_KEY
from tests.peers.tencent_sts import ALLOWED_ACTIONS, STS_VERSION, TEST_ROLE_ARN
from wardrobe.modules.storage.s3 import S3Credentials

BUCKET_RESOURCE = "qcs::cos:ap-guangzhou:uid/1250000000:imgs-1250000000"


def _client(peer: ServedTencentCloudPeer, secret_key: str = TEST_SECRET_KEY) -> CommonClient:
    profile = ClientProfile(httpProfile=HttpProfile(endpoint=peer.host_port, protocol="http", reqTimeout=5))
    return CommonClient("sts", STS_VERSION, Credential(TEST_SECRET_ID, secret_key), TEST_REGION, profile)


@pytest.fixture
async def sts(tencent_peer: ServedTencentCloudPeer) -> AsyncIterator[CommonClient]:
    client = _client(tencent_peer)
    yield client
    await client.close()


def _policy(resources: list[str], actions: list[str] | None = None) -> str:
    statement = {"effect": "allow", "action": actions or sorted(ALLOWED_ACTIONS), "resource": resources}
    return quote(json.dumps({"version": "2.0", "statement": [statement]}), safe="")


async def _federate(sts: CommonClient, policy: str, duration: int = 1800, name: str = "uploads") -> dict[str, Any]:
    answer: dict[str, Any] = await sts.call_and_deserialize(
        "GetFederationToken", {"Name": name, "Policy": policy, "DurationSeconds": duration}
    )
    return dict(answer["Response"])


async def _code(call: object) -> str:
    with pytest.raises(TencentCloudSDKException) as info:
        await call  # type: ignore[misc]
    return str(info.value.code)


async def test_a_prefix_policy_gets_keys_the_s3_peer_holds_to_it(
    sts: CommonClient, tencent_peer: ServedTencentCloudPeer, sts_s3_peer: S3Peer
) -> None:
    answer = await _federate(sts, _policy([f"{BUCKET_RESOURCE}/uploads/7/*"]))
    credentials = answer["Credentials"]
    assert set(credentials) == {"TmpSecretId", "TmpSecretKey", "Token"}
    assert answer["ExpiredTime"] == int(tencent_peer.clock()) + 1800
    assert answer["Expiration"].endswith("Z")
    [issued] = tencent_peer.sts.issued
    assert issued.resources == ("imgs-1250000000/uploads/7/*",)
    assert issued.actions == {a.removeprefix("name/cos:") for a in ALLOWED_ACTIONS}

    temp = S3Credentials(credentials["TmpSecretId"], credentials["TmpSecretKey"], credentials["Token"])
    client = sts_s3_peer.client(temp)
    bucket = sts_s3_peer.bucket
    try:
        client.put_object(Bucket=bucket, Key="uploads/7/a.png", Body=b"png", ContentType="image/png")
        refused_calls: list[Callable[[], object]] = [
            lambda: client.put_object(Bucket=bucket, Key="uploads/8/a.png", Body=b"png"),
            lambda: client.get_object(Bucket=bucket, Key="uploads/7/a.png"),
            lambda: client.delete_object(Bucket=bucket, Key="uploads/7/a.png"),
        ]
        for call in refused_calls:
            with pytest.raises(ClientError) as refused:
                call()
            assert refused.value.response["Error"]["Code"] == "AccessDenied"
        # Without its token the pair is nobody's.
        bare = sts_s3_peer.client(S3Credentials(temp.access_key_id, temp.secret_access_key))
        with pytest.raises(ClientError) as refused:
            bare.put_object(Bucket=bucket, Key="uploads/7/b.png", Body=b"png")
        assert refused.value.response["Error"]["Code"] == "InvalidToken"
        bare.close()
    finally:
        client.close()
    short = (await _federate(sts, _policy([f"{BUCKET_RESOURCE}/uploads/7/*"]), duration=600))["Credentials"]
    client = sts_s3_peer.client(S3Credentials(short["TmpSecretId"], short["TmpSecretKey"], short["Token"]))
    try:
        sts_s3_peer.skew = 601  # past the keys' life, within the store's tolerance of clock skew
        with pytest.raises(ClientError) as refused:
            client.put_object(Bucket=bucket, Key="uploads/7/c.png", Body=b"png")
        assert refused.value.response["Error"]["Code"] == "ExpiredToken"
        sts_s3_peer.skew = 0
    finally:
        client.close()
    assert sts_s3_peer.client().get_object(Bucket=bucket, Key="uploads/7/a.png")["Body"].read() == b"png"


async def test_policies_beyond_the_allowed_prefix_and_actions_are_refused(
    sts: CommonClient, tencent_peer: ServedTencentCloudPeer
) -> None:
    cases = [
        (_policy([f"{BUCKET_RESOURCE}/results/7/*"]), "InvalidParameter.GrantOtherResource"),
        (_policy([f"{BUCKET_RESOURCE}/*"]), "InvalidParameter.GrantOtherResource"),
        (
            _policy(["qcs::cos:ap-beijing:uid/1250000000:imgs-1250000000/uploads/7/*"]),
            "InvalidParameter.GrantOtherResource",
        ),
        (
            _policy(["qcs::cos:ap-guangzhou:uid/1250000001:other-1250000001/uploads/7/*"]),
            "InvalidParameter.GrantOtherResource",
        ),
        (_policy(["*"]), "InvalidParameter.ResouceError"),
        (
            _policy([f"{BUCKET_RESOURCE}/uploads/7/*"], ["name/cos:PutObject", "name/cos:GetObject"]),
            "InvalidParameter.StrategyInvalid",
        ),
        (_policy([f"{BUCKET_RESOURCE}/uploads/7/*"], ["name/cos:*"]), "InvalidParameter.StrategyInvalid"),
        (quote("{not json", safe=""), "InvalidParameter.StrategyFormatError"),
        (quote(json.dumps({"version": "2.0", "statement": []}), safe=""), "InvalidParameter.StrategyFormatError"),
        (quote(json.dumps(["version", "2.0"]), safe=""), "InvalidParameter.StrategyFormatError"),
        (quote("x" * 3000, safe=""), "InvalidParameter.PolicyTooLong"),
    ]
    for policy, code in cases:
        assert await _code(_federate(sts, policy)) == code, policy
    good = _policy([f"{BUCKET_RESOURCE}/uploads/7/*"])
    assert await _code(_federate(sts, good, duration=7201)) == "InvalidParameter.OverTimeError"
    assert await _code(_federate(sts, good, duration=0)) == "InvalidParameter.OverTimeError"
    assert await _code(_federate(sts, good, name="no spaces allowed")) == "InvalidParameter.ParamError"
    assert await _code(sts.call_and_deserialize("GetFederationToken", {"Name": "x"})) == "MissingParameter"
    assert tencent_peer.sts.issued == []
    assert await _federate(sts, good, duration=7200)


async def test_assume_role_and_tc3(sts: CommonClient, tencent_peer: ServedTencentCloudPeer) -> None:
    params = {"RoleArn": TEST_ROLE_ARN, "RoleSessionName": "uploads", "DurationSeconds": 900}
    answer = (await sts.call_and_deserialize("AssumeRole", params))["Response"]
    assert answer["ExpiredTime"] == int(tencent_peer.clock()) + 900
    assert tencent_peer.sts.issued[-1].resources == ("imgs-1250000000/uploads/*",)
    wrong_role = {**params, "RoleArn": "qcs::cam::uin/1:roleName/other"}
    assert await _code(sts.call_and_deserialize("AssumeRole", wrong_role)) == "ResourceNotFound.RoleNotFound"
    too_long = {**params, "DurationSeconds": 43201}
    assert await _code(sts.call_and_deserialize("AssumeRole", too_long)) == "InvalidParameter.OverTimeError"
    forged = _client(tencent_peer, secret_key="not-the-key")
    try:
        assert await _code(_federate(forged, _policy([f"{BUCKET_RESOURCE}/uploads/7/*"]))) == (
            "AuthFailure.SignatureFailure"
        )
    finally:
        await forged.close()
    assert tencent_peer.sts.calls == {"AssumeRole": 1}
