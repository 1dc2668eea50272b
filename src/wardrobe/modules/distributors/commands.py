"""``wardrobe crypto rotate``: every sealed value onto the current master key.

It lives with the distributors, the highest module that holds sealed values (their ID numbers; the
auth module's TOTP secrets are the others); the envelope machinery (crypto/) knows nothing of who
uses it."""

from __future__ import annotations

from collections.abc import Callable

from wardrobe.core.db import create_engine, create_session_factory
from wardrobe.modules.auth.totp import SEALED_TOTP_SECRETS
from wardrobe.modules.crypto.factory import build_key_manager
from wardrobe.modules.crypto.keys import KeyManager, LocalKeyManager
from wardrobe.modules.crypto.rotation import RotationReport, SealedColumns, rotate
from wardrobe.modules.distributors.service import SEALED_ID_NUMBERS
from wardrobe.settings import Settings


def sealed_columns() -> list[SealedColumns]:
    """Every kind of sealed value the schema holds."""
    return [SEALED_ID_NUMBERS, SEALED_TOTP_SECRETS]


def add_master_key(keys: KeyManager) -> str:
    """A new master key version, made current (the local key file only: a KMS CMK rotates its own
    key material under the same KeyId; to move to another CMK, set WARDROBE_KMS_KEY_ID)."""
    if not isinstance(keys, LocalKeyManager):
        raise ValueError("--new-key works with the local key file; for KMS set WARDROBE_KMS_KEY_ID to the new CMK")
    keys.key_file.add_version()
    return keys.current_key_ref()


async def run_rotation(
    settings: Settings, *, new_key: bool, batch_size: int, echo: Callable[[str], None]
) -> list[RotationReport]:
    keys = build_key_manager(settings)
    engine = create_engine(settings)
    try:
        if new_key:
            echo(f"new master key: {add_master_key(keys)}")
        echo(f"re-wrapping data keys under {keys.current_key_ref()}")
        session_factory = create_session_factory(engine)
        reports = []
        for columns in sealed_columns():
            done = 0

            def advance(count: int, name: str = columns.name) -> None:
                nonlocal done
                done += count
                echo(f"  {name}: {done} re-wrapped")

            report = await rotate(session_factory, keys, columns, batch_size=batch_size, progress=advance)
            echo(
                f"{report.name}: {report.rewrapped} of {report.total} re-wrapped"
                + (f", {report.changed_meanwhile} changed meanwhile (run again)" if report.changed_meanwhile else "")
            )
            reports.append(report)
        return reports
    finally:
        await keys.aclose()
        await engine.dispose()
