"""Production refuses insecure defaults; the embedded default needs no configuration."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from tests.fixtures.settings import production_settings
from wardrobe.settings import Settings


def test_embedded_default_is_sqlite_under_var() -> None:
    s = Settings(_env_file=None)
    assert s.database_url.startswith("sqlite+aiosqlite:///")
    assert s.database_url.endswith("var/wardrobe.db")
    assert s.embedded


def test_production_refuses_every_insecure_default() -> None:
    with pytest.raises(ValidationError) as info:
        Settings(env="production", _env_file=None)
    message = str(info.value)
    for needle in (
        "JWT_SECRET",
        "SMS_CODE_PEPPER",
        "SMS_BACKEND=console",
        "SMS_DEBUG_CODES",
        "SEED_DEMO_DATA",
        "VENDOR_CALLBACK_SECRET",
    ):
        assert needle in message


def test_production_starts_with_real_settings() -> None:
    s = Settings(_env_file=None, env="production", **production_settings())
    assert s.production_problems() == []
    assert not s.debug_codes_enabled


def test_env_example_lists_every_setting() -> None:
    import re
    from pathlib import Path

    text = (Path(__file__).parents[2] / ".env.example").read_text(encoding="utf-8")
    documented = set(re.findall(r"^(?:# )?(WARDROBE_[A-Z0-9_]+)=", text, re.MULTILINE))
    expected = {f"WARDROBE_{name.upper()}" for name in Settings.model_fields}
    assert documented == expected


def test_provider_rates_are_checked_at_start() -> None:
    assert Settings(_env_file=None, provider_rate_limits={"rh": "5/second;200/minute"}).provider_rate_limits
    with pytest.raises(ValidationError, match="provider_rate_limits\\['rh'\\]"):
        Settings(_env_file=None, provider_rate_limits={"rh": "five a second"})
    with pytest.raises(ValidationError):
        Settings(_env_file=None, user_max_running_tasks=-1)


def test_production_payments_need_https_callbacks_and_a_real_apiv3_key() -> None:
    real = production_settings()
    with pytest.raises(ValidationError) as info:
        Settings(
            _env_file=None,
            env="production",
            wechatpay_mchid="1900000001",
            wechatpay_apiv3_key="short",
            payment_notify_base_url="http://api.example.com",
            **real,
        )
    assert "PAYMENT_NOTIFY_BASE_URL" in str(info.value)
    assert "APIV3_KEY" in str(info.value)
    ok = Settings(
        _env_file=None,
        env="production",
        wechatpay_mchid="1900000001",
        wechatpay_apiv3_key="k" * 32,
        payment_notify_base_url="https://api.example.com",
        **real,
    )
    assert ok.production_problems() == []


def test_captcha_is_off_unless_configured_and_production_warns_without_it() -> None:
    from wardrobe.modules.auth.captcha import build_captcha

    real: dict[str, Any] = {"env": "production", **production_settings()}
    keys: dict[str, Any] = {
        "captcha_app_id": 190000001,
        "captcha_app_secret_key": "app-secret",
        "tencent_secret_id": "AKID-x",
        "tencent_secret_key": "k",
    }
    embedded = Settings(_env_file=None)
    without = Settings(_env_file=None, **real)
    with_captcha = Settings(_env_file=None, captcha_enabled=True, **real, **keys)

    assert build_captcha(embedded) is None
    assert any("WARDROBE_CAPTCHA_ENABLED" in w for w in without.production_warnings())
    assert with_captcha.production_warnings() == []
    with pytest.raises(ValidationError, match="WARDROBE_CAPTCHA_APP_ID"):
        Settings(_env_file=None, captcha_enabled=True, **{**keys, "captcha_app_id": 0})
    with pytest.raises(ValidationError, match="captcha_rule_per_device"):
        Settings(_env_file=None, captcha_rule_per_device="three an hour")
