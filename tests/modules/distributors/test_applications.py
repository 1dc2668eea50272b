"""Apply, review, reveal: the ID number is sealed at rest, masked in every answer and log, and
revealed only to holders of ``distributors:reveal``, every time with an audit record."""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

import pytest

from tests.conftest import Api
from tests.fixtures.auth import data, login_as
from tests.modules.distributors.flows import ADMIN_APPLICATIONS, APPLICATIONS, apply, audit, reveal, stored
from tests.modules.distributors.helpers import id_number_with_check, make_id_number, wrong_check
from tests.peers.fixtures import ServedTencentCloudPeer
from tests.peers.tencent_kms import TEST_KMS_KEY_ID


async def test_apply_approve_grants_the_role_and_never_shows_the_number(
    local_api: Api, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    api = local_api
    number = id_number_with_check("X")
    user, operator = await login_as(api, "user"), await login_as(api, "operator")
    answers: list[str] = []

    resp = await api.client.post(
        APPLICATIONS,
        json={"real_name": "李四", "id_number": number.lower(), "phone": "13912345678"},
        headers=user.headers,
    )
    answers.append(resp.text)
    created = data(resp, 201)
    assert created["id_number_masked"] == number[:4] + "*" * 10 + number[-4:]
    assert created["status"] == "pending"
    assert created["phone_masked"] == "139****5678"
    assert "id_number" not in created

    resp = await api.client.get("/api/v1/distributors/me", headers=user.headers)
    answers.append(resp.text)
    mine = data(resp)
    assert mine["is_distributor"] is False
    assert mine["application"]["id_number_masked"] == created["id_number_masked"]

    resp = await api.client.get(ADMIN_APPLICATIONS, params={"status": "pending"}, headers=operator.headers)
    answers.append(resp.text)
    assert [item["id"] for item in data(resp)["items"]] == [created["id"]]

    resp = await api.client.post(
        f"{ADMIN_APPLICATIONS}/{created['id']}/approve", json={"reason": "materials complete"}, headers=operator.headers
    )
    answers.append(resp.text)
    approved = data(resp)
    assert approved["status"] == "approved"
    assert approved["reviewer_id"] == operator.user["id"]

    resp = await api.client.get("/api/v1/users/me", headers=user.headers)
    answers.append(resp.text)
    assert data(resp)["role"] == "distributor"
    resp = await api.client.get("/api/v1/distributors/me", headers=user.headers)
    answers.append(resp.text)
    assert data(resp)["is_distributor"] is True
    # Approved is final: no second review, no second application.
    data(
        await api.client.post(
            f"{ADMIN_APPLICATIONS}/{created['id']}/reject", json={"reason": "oops"}, headers=operator.headers
        ),
        409,
    )
    await apply(api, user, make_id_number(), status=409)

    assert await audit(api, "user.role") == [
        (
            operator.user["id"],
            "user.role",
            str(user.user["id"]),
            f"application {created['id']} approved",
        )
    ]
    assert await audit(api) == [
        (operator.user["id"], "distributor_application.approve", str(created["id"]), "materials complete")
    ]

    # At rest: only the masked form, the wrapped key, the nonce and the ciphertext.
    [row] = await stored(api)
    assert row.id_number_masked == created["id_number_masked"]
    for column in ("real_name", "phone", "id_number_masked", "id_wrapped_key", "id_key_ref"):
        assert number not in getattr(row, column)
    assert number.encode() not in row.id_ciphertext
    assert number.encode() not in row.id_nonce
    assert row.id_key_ref == "local:1"
    assert len(row.id_nonce) == 12

    for text in answers:
        assert number not in text
        assert number.lower() not in text
    logged = capsys.readouterr().out + caplog.text
    assert created["id_number_masked"] in logged  # the application was logged, masked
    assert number not in logged
    assert number.lower() not in logged


async def test_reject_lets_the_user_apply_again(local_api: Api) -> None:
    api = local_api
    user, operator = await login_as(api, "user"), await login_as(api, "operator")
    first = await apply(api, user, make_id_number())
    await apply(api, user, make_id_number(), status=409)  # one pending at a time
    data(await api.client.post(f"{ADMIN_APPLICATIONS}/{first['id']}/reject", json={}, headers=operator.headers), 422)
    rejected = data(
        await api.client.post(
            f"{ADMIN_APPLICATIONS}/{first['id']}/reject", json={"reason": "photo unreadable"}, headers=operator.headers
        )
    )
    assert (rejected["status"], rejected["review_reason"]) == ("rejected", "photo unreadable")
    assert data(await api.client.get("/api/v1/users/me", headers=user.headers))["role"] == "user"
    again = await apply(api, user, make_id_number())
    assert again["id"] != first["id"]
    mine = data(await api.client.get("/api/v1/distributors/me", headers=user.headers))
    assert (mine["is_distributor"], mine["application"]["id"]) == (False, again["id"])
    assert await audit(api) == [
        (operator.user["id"], "distributor_application.reject", str(first["id"]), "photo unreadable")
    ]


async def test_concurrent_applications_of_one_user_leave_one(local_api: Api) -> None:
    api = local_api
    user = await login_as(api, "user")
    body = {"real_name": "王五", "phone": "13912345678"}
    rng = random.Random(5)
    answers = await asyncio.gather(
        *(
            api.client.post(APPLICATIONS, json={**body, "id_number": make_id_number(rng)}, headers=user.headers)
            for _ in range(5)
        )
    )
    assert sorted(resp.status_code for resp in answers) == [201, 409, 409, 409, 409]
    assert len(await stored(api)) == 1


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (wrong_check, "校验位"),
        (lambda n: n[:17], "18 位"),
        (lambda n: "99" + n[2:], "地区码"),
    ],
)
async def test_an_invalid_id_number_is_refused_without_echoing_it(local_api: Api, mutate: Any, message: str) -> None:
    api = local_api
    user = await login_as(api, "user")
    bad = mutate(make_id_number(random.Random(3)))
    resp = await api.client.post(
        APPLICATIONS, json={"real_name": "赵六", "id_number": bad, "phone": "13912345678"}, headers=user.headers
    )
    [problem] = data(resp, 422)
    assert problem["field"] == "id_number"
    assert message in problem["message"]
    assert bad not in resp.text
    assert await stored(api) == []


async def test_reveal_needs_the_permission_and_is_always_audited(local_api: Api) -> None:
    api = local_api
    number = make_id_number()
    user, operator, admin = [await login_as(api, role) for role in ("user", "operator", "admin")]
    created = await apply(api, user, number)

    # An operator reviews applications but may not decrypt them; nor may the applicant.
    for who in (operator, user):
        problem = await reveal(api, who, created["id"], "curious", status=403)
        assert problem is None
    refused = await audit(api)
    assert refused == [
        (operator.user["id"], "distributor_application.reveal_id_denied", str(created["id"]), "curious"),
        (user.user["id"], "distributor_application.reveal_id_denied", str(created["id"]), "curious"),
    ]

    data(await api.client.post(f"{ADMIN_APPLICATIONS}/{created['id']}/reveal-id", json={}, headers=admin.headers), 422)
    revealed = await reveal(api, admin, created["id"], "tax filing for settlement")
    assert revealed == {"application_id": created["id"], "id_number": number}
    assert (await audit(api))[2:] == [
        (admin.user["id"], "distributor_application.reveal_id", str(created["id"]), "tax filing for settlement")
    ]
    await reveal(api, admin, 999_999, "no such application", status=404)


async def test_kms_sealed_numbers_and_a_disabled_key(kms_api: Api, tencent_peer: ServedTencentCloudPeer) -> None:
    api = kms_api
    number = make_id_number()
    user, admin = await login_as(api, "user"), await login_as(api, "admin")
    tencent_peer.kms.set_state(TEST_KMS_KEY_ID, "Disabled")
    resp = await api.client.post(
        APPLICATIONS, json={"real_name": "钱七", "id_number": number, "phone": "13912345678"}, headers=user.headers
    )
    assert (resp.status_code, resp.json()["code"]) == (503, "DEPENDENCY_UNAVAILABLE")
    assert await stored(api) == []

    tencent_peer.kms.set_state(TEST_KMS_KEY_ID, "Enabled")
    created = await apply(api, user, number)
    [row] = await stored(api)
    assert row.id_key_ref == f"tencent:{TEST_KMS_KEY_ID}"
    assert tencent_peer.kms.key_id_of(row.id_wrapped_key) == TEST_KMS_KEY_ID
    assert tencent_peer.kms.calls["GenerateDataKey"] == 1

    tencent_peer.kms.set_state(TEST_KMS_KEY_ID, "Disabled")
    resp = await api.client.post(
        f"{ADMIN_APPLICATIONS}/{created['id']}/reveal-id", json={"reason": "audit"}, headers=admin.headers
    )
    assert (resp.status_code, resp.json()["code"]) == (503, "DEPENDENCY_UNAVAILABLE")
    assert [a for a in await audit(api) if a[1] == "distributor_application.reveal_id"] == []  # nothing revealed

    tencent_peer.kms.set_state(TEST_KMS_KEY_ID, "Enabled")
    assert (await reveal(api, admin, created["id"], "audit"))["id_number"] == number
    assert tencent_peer.kms.calls["Decrypt"] == 1
