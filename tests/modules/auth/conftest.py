"""The pinned TOTP clock for the staff sign-in tests."""

from __future__ import annotations

import pytest

from tests.fixtures.totp import PinnedClock
from wardrobe.modules.auth import totp


@pytest.fixture
def totp_clock(monkeypatch: pytest.MonkeyPatch) -> PinnedClock:
    clock = PinnedClock.mid_step()
    monkeypatch.setattr(totp, "clock", lambda: clock.now)
    return clock
