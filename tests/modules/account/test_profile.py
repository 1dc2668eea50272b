"""Profile and two-step registration."""

from __future__ import annotations

from tests.conftest import Api
from tests.fixtures.auth import data, sms_login


async def test_completing_the_profile(api: Api) -> None:
    s = await sms_login(api.client)
    assert s.user["profile_completed"] is False
    body = {
        "nickname": "  小衣  ",
        "gender": "female",
        "birthday": "1995-05-01",
        "bio": "第一行\n第二行",
        "region": "上海",
        "avatar_url": "https://cdn.example.com/a.png",
    }
    user = data(await api.client.patch("/api/v1/users/me", json=body, headers=s.headers))
    assert user["nickname"] == "小衣"
    assert user["profile_completed"] is True
    assert user["bio"] == "第一行\n第二行"
    me = data(await api.client.get("/api/v1/users/me", headers=s.headers))
    assert me == user


async def test_unsafe_or_invalid_profile_input_is_refused_and_nothing_changes(api: Api) -> None:
    s = await sms_login(api.client)
    bad = [
        ({"nickname": "<script>alert(1)</script>"}, "nickname"),
        ({"nickname": "a\u202eb"}, "nickname"),
        ({"nickname": "x" * 33}, "nickname"),
        ({"nickname": "   "}, "nickname"),
        ({"avatar_url": "javascript:alert(1)"}, "avatar_url"),
        ({"avatar_url": "http://plain.example.com/a.png"}, "avatar_url"),
        ({"gender": "other"}, "gender"),
        ({"birthday": "2999-01-01"}, "birthday"),
        ({"bio": "a\x00b"}, "bio"),
        ({"role": "admin"}, "role"),
    ]
    for body, field in bad:
        resp = await api.client.patch("/api/v1/users/me", json=body, headers=s.headers)
        assert resp.status_code == 422, body
        assert resp.json()["data"][0]["field"] == field, body
    me = data(await api.client.get("/api/v1/users/me", headers=s.headers))
    assert me["nickname"] is None
    assert me["role"] == "user"
    assert me["profile_completed"] is False
