"""No phone number, code or token appears unmasked in the logs."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator

import pytest

from tests.conftest import Api
from tests.fixtures.auth import new_phone, request_code
from wardrobe.core.logging import redact_processor, redact_text


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    """Everything the root handler renders (after redaction), as it would reach stdout."""
    buffer = io.StringIO()
    root = logging.getLogger()
    formatter = root.handlers[0].formatter if root.handlers else None
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(formatter)
    root.addHandler(handler)
    yield buffer
    root.removeHandler(handler)


async def test_auth_flows_leave_no_personal_data_in_logs(api: Api, captured_logs: io.StringIO) -> None:
    phone = new_phone()
    code = await request_code(api.client, phone)
    resp = await api.client.post("/api/v1/auth/login", json={"method": "sms", "phone": phone, "code": code})
    tokens = resp.json()["data"]
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    await api.client.get("/api/v1/users/me", headers=headers)
    await api.client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    await api.client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})  # reuse: warns
    # Deliberately log the secrets through both loggers: redaction must still catch them.
    from wardrobe.core.logging import get_logger

    get_logger("test").warning(
        "leak attempt", phone=phone, code=code, note=f"user {phone} sent {tokens['access_token']}"
    )
    logging.getLogger("plain").warning("plain %s Bearer %s", phone, tokens["access_token"])

    text = captured_logs.getvalue()
    assert "sms code issued" in text or "http_request" in text  # the capture did see the flow
    assert phone not in text
    assert tokens["access_token"] not in text
    assert tokens["refresh_token"] not in text
    assert f'"{code}"' not in text
    assert phone[:3] + "****" + phone[-4:] in text


def test_redact_text_masks_ids_phones_and_jwts() -> None:
    out = redact_text("id 11010519491231002X phone +8613812345678 jwt eyJabcdefgh.eyJpayload123.sig")
    assert "11010519491231002X" not in out
    assert "110105********002X" in out
    assert "13812345678" not in out
    assert re.search(r"138\*{4}5678", out)
    assert "eyJpayload123" not in out


def test_a_task_id_is_logged_whole_and_phones_elsewhere_are_still_masked() -> None:
    # A real public id of the multi-host test's: its digits "14373446288" read as a mobile number.
    task = "304ccf14373446288f315e0061b499a7"
    event = redact_processor(None, "info", {"event": "task_finished", "task": task, "note": "from 13912345678"})
    assert event["task"] == task
    assert event["note"] == "from 139****5678"
