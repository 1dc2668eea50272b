"""``wardrobe crypto rotate``: data keys move to the current master key in batches while the
service runs; records on an old version open before, during and after; running again is a no-op."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from tests.conftest import Api
from tests.fixtures.auth import login_as
from tests.modules.distributors.conftest import kms_settings
from tests.modules.distributors.flows import apply, reveal, stored
from tests.modules.distributors.helpers import make_id_number
from tests.peers.fixtures import ServedTencentCloudPeer
from tests.peers.tencent_cloud import TEST_SECRET_ID, TEST_SECRET_KEY
from tests.peers.tencent_kms import TEST_KMS_KEY_ID
from wardrobe.cli import app as cli
from wardrobe.core.db import create_engine, create_session_factory, unit_of_work
from wardrobe.models import DistributorApplication, User
from wardrobe.modules.crypto.envelope import EnvelopeCipher, SealedValue
from wardrobe.modules.crypto.keys import LocalKeyFile, LocalKeyManager
from wardrobe.modules.distributors.commands import run_rotation
from wardrobe.settings import get_settings


async def _apply_many(api: Api, count: int) -> dict[int, str]:
    numbers: dict[int, str] = {}
    for _ in range(count):
        number = make_id_number()
        created = await apply(api, await login_as(api, "user"), number)
        numbers[created["id"]] = number
    return numbers


def _drop_version(path: Path, version: str) -> None:
    body = json.loads(path.read_text())
    del body["keys"][version]
    path.write_text(json.dumps(body))


def _sealed(row: DistributorApplication) -> tuple[str, str, bytes, bytes]:
    return (row.id_wrapped_key, row.id_key_ref, row.id_nonce, row.id_ciphertext)


async def test_local_rotation_moves_every_record_and_keeps_them_open(local_api: Api, key_file_path: Path) -> None:
    api = local_api
    admin = await login_as(api, "admin")
    numbers = await _apply_many(api, 5)
    before = {row.id: _sealed(row) for row in await stored(api)}
    assert {ref for _, ref, _, _ in before.values()} == {"local:1"}

    # A new master version (another process); the running app uses it for new records and still
    # opens the old ones.
    LocalKeyFile(key_file_path).add_version()
    numbers.update(await _apply_many(api, 1))
    refs = {row.id: row.id_key_ref for row in await stored(api)}
    assert sorted(refs.values()) == ["local:1"] * 5 + ["local:2"]
    for application_id, number in numbers.items():
        assert (await reveal(api, admin, application_id, "check before rotation"))["id_number"] == number

    lines: list[str] = []
    report, totp_secrets = await run_rotation(api.settings, new_key=False, batch_size=2, echo=lines.append)
    assert (report.total, report.rewrapped, report.changed_meanwhile) == (5, 5, 0)
    assert (totp_secrets.name, totp_secrets.total) == ("user_totp.secret", 0)
    assert "re-wrapping data keys under local:2" in lines
    after = {row.id: _sealed(row) for row in await stored(api)}
    for application_id, (wrapped, ref, nonce, ciphertext) in after.items():
        assert ref == "local:2"
        if application_id in before:
            # The data key is re-wrapped; the record itself is untouched.
            assert wrapped != before[application_id][0]
            assert (nonce, ciphertext) == before[application_id][2:]
    for application_id, number in numbers.items():
        assert (await reveal(api, admin, application_id, "check after rotation"))["id_number"] == number

    # Version 1 can now go: nothing needs it.
    _drop_version(key_file_path, "1")
    for application_id, number in numbers.items():
        assert (await reveal(api, admin, application_id, "check without v1"))["id_number"] == number

    again, _ = await run_rotation(api.settings, new_key=False, batch_size=2, echo=lines.append)
    assert (again.total, again.rewrapped) == (0, 0)
    assert {row.id: _sealed(row) for row in await stored(api)} == after


async def test_kms_rotation_moves_records_to_the_new_cmk(
    api_factory: Any, tencent_peer: ServedTencentCloudPeer
) -> None:
    api: Api = await api_factory(**kms_settings(tencent_peer))
    admin = await login_as(api, "admin")
    numbers = await _apply_many(api, 3)
    new_cmk = tencent_peer.kms.create_key()
    rotated_settings = api.settings.model_copy(update={"kms_key_id": new_cmk})

    report, _ = await run_rotation(rotated_settings, new_key=False, batch_size=2, echo=lambda _: None)
    assert (report.total, report.rewrapped) == (3, 3)
    for row in await stored(api):
        assert row.id_key_ref == f"tencent:{new_cmk}"
        assert tencent_peer.kms.key_id_of(row.id_wrapped_key) == new_cmk
    # The old CMK is no longer needed to read them.
    tencent_peer.kms.set_state(TEST_KMS_KEY_ID, "Disabled")
    for application_id, number in numbers.items():
        assert (await reveal(api, admin, application_id, "after CMK change"))["id_number"] == number

    again, _ = await run_rotation(rotated_settings, new_key=False, batch_size=2, echo=lambda _: None)
    assert again.rewrapped == 0


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Path]]:
    paths = {"db": tmp_path / "cli.db", "keys": tmp_path / "keys.json"}
    monkeypatch.setenv("WARDROBE_DATABASE_URL", f"sqlite+aiosqlite:///{paths['db']}")
    monkeypatch.setenv("WARDROBE_KMS_LOCAL_KEY_FILE", str(paths["keys"]))
    monkeypatch.setenv("WARDROBE_LOG_LEVEL", "WARNING")
    get_settings.cache_clear()
    yield paths
    get_settings.cache_clear()


def test_the_rotate_command(cli_env: dict[str, Path]) -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["migrate"]).exit_code == 0
    keys = LocalKeyManager(LocalKeyFile(cli_env["keys"]))
    number = make_id_number()

    async def seed() -> None:
        engine = create_engine(get_settings())
        try:
            async with unit_of_work(create_session_factory(engine)) as session:
                user = User(phone="13712345678", invite_code="CLIROT01")
                session.add(user)
                await session.flush()
                sealed = await EnvelopeCipher(keys).seal(number, {"user_id": str(user.id)})
                session.add(
                    DistributorApplication(
                        user_id=user.id,
                        active_user_id=user.id,
                        real_name="孙八",
                        phone="13712345678",
                        id_number_masked="masked",
                        id_wrapped_key=sealed.wrapped_key,
                        id_key_ref=sealed.key_ref,
                        id_nonce=sealed.nonce,
                        id_ciphertext=sealed.ciphertext,
                    )
                )
        finally:
            await engine.dispose()

    async def read() -> tuple[str, str]:
        engine = create_engine(get_settings())
        try:
            async with create_session_factory(engine)() as session:
                [row] = list(await session.scalars(select(DistributorApplication)))
                sealed = SealedValue(row.id_wrapped_key, row.id_key_ref, row.id_nonce, row.id_ciphertext)
                return row.id_key_ref, await EnvelopeCipher(keys).open(sealed, {"user_id": str(row.user_id)})
        finally:
            await engine.dispose()

    asyncio.run(seed())
    result = runner.invoke(cli, ["crypto", "rotate", "--new-key", "--batch-size", "1"])
    assert result.exit_code == 0, result.output
    assert "new master key: local:2" in result.output
    assert "distributor_applications.id_number: 1 of 1 re-wrapped" in result.output
    assert asyncio.run(read()) == ("local:2", number)
    result = runner.invoke(cli, ["crypto", "rotate"])
    assert result.exit_code == 0, result.output
    assert "0 of 0 re-wrapped" in result.output
    assert json.loads(cli_env["keys"].read_text())["current"] == 2


def test_rotate_refuses_a_new_key_for_kms(cli_env: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WARDROBE_KMS_BACKEND", "tencent")
    monkeypatch.setenv("WARDROBE_KMS_KEY_ID", TEST_KMS_KEY_ID)
    get_settings.cache_clear()
    result = CliRunner().invoke(cli, ["crypto", "rotate", "--new-key"])
    assert (result.exit_code, result.output) == (
        1,
        "error: the tencent KMS backend needs WARDROBE_TENCENT_SECRET_ID and WARDROBE_TENCENT_SECRET_KEY\n",
    )
    monkeypatch.setenv("WARDROBE_TENCENT_SECRET_ID", TEST_SECRET_ID)
    monkeypatch.setenv("WARDROBE_TENCENT_SECRET_KEY", TEST_SECRET_KEY)
    get_settings.cache_clear()
    result = CliRunner().invoke(cli, ["crypto", "rotate", "--new-key"])
    assert result.exit_code == 1
    assert "--new-key works with the local key file; for KMS set WARDROBE_KMS_KEY_ID" in result.output
