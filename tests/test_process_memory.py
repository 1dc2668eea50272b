"""Vendor SDKs are loaded by the processes that use them, not by every process.

Every module an interpreter imports stays in its heap: botocore and aiobotocore cost an API process
~15 MiB beyond what it needs anyway, wechatpayv3 ~9, the Tencent Cloud clients and models up to
~13 each. Each check starts a fresh interpreter (this one has imported everything long since),
builds and starts the app from settings, and reports which modules it holds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# Runs in the fresh interpreter: argv[1] is the var dir, argv[2] the settings (JSON).
PROBE = """
import asyncio, json, sys

from asgi_lifespan import LifespanManager

from wardrobe.app import create_app
from wardrobe.settings import Settings


async def main() -> None:
    settings = Settings(_env_file=None, var_dir=sys.argv[1], **json.loads(sys.argv[2]))
    app = create_app(settings)
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=60):
        print(json.dumps(sorted(sys.modules)))


asyncio.run(main())
"""

# Imported by the modules that call these vendors, and by nothing an API process needs otherwise.
VENDOR_SDKS = ("botocore", "aiobotocore", "wechatpayv3", "tencentcloud.common.abstract_client")
# The SDKs' clients and request models (the exception classes are light and stay imported).
TENCENT_CLIENTS = ("tencentcloud.sms", "tencentcloud.captcha", "tencentcloud.ims", "tencentcloud.tms")
# OpenTelemetry's tracing SDK, exporter and instrumentations: only with WARDROBE_OTEL_ENDPOINT.
# (opentelemetry.sdk itself is imported by redis-py, and the API by FastAPI.)
OTEL_TRACING = ("opentelemetry.sdk.trace", "opentelemetry.exporter", "opentelemetry.instrumentation")


def modules_of_app(tmp_path: Path, **settings: object) -> set[str]:
    """The modules of a fresh interpreter that has created and started the app with ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WARDROBE_", "OTEL_"))}
    done = subprocess.run(  # noqa: S603 - this interpreter on our own probe
        [sys.executable, "-c", PROBE, str(tmp_path / "var"), json.dumps(settings)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    # The probe's one line that is a JSON list (log lines, which are JSON objects, may follow it).
    [listed] = [line for line in done.stdout.splitlines() if line.startswith("[")]
    return set(json.loads(listed))


def loaded(modules: set[str], package: str) -> bool:
    return any(name == package or name.startswith(package + ".") for name in modules)


@pytest.mark.timeout(600)
def test_the_embedded_api_loads_no_vendor_sdk(tmp_path: Path) -> None:
    modules = modules_of_app(tmp_path)
    assert "wardrobe.app" in modules  # the probe did build the app
    for package in (*VENDOR_SDKS, *TENCENT_CLIENTS, *OTEL_TRACING):
        assert not loaded(modules, package), f"{package} is loaded although nothing configured uses it"


@pytest.mark.timeout(600)
def test_a_configured_vendor_brings_its_sdk_when_used(tmp_path: Path) -> None:
    modules = modules_of_app(
        tmp_path,
        storage_backend="s3",
        storage_s3_bucket="wardrobe-test-1250000000",
        storage_s3_region="ap-guangzhou",
        storage_s3_access_key_id="AKIDtest",
        storage_s3_secret_access_key="test-secret",
        sms_backend="tencent",
        tencent_secret_id="AKIDtest",
        tencent_secret_key="test-secret",
        tencent_sms_sdk_app_id="1400000000",
        tencent_sms_template_id="100001",
        tencent_sms_phone_changed_template_id="100002",
        hunyuan_enabled=True,
    )
    # S3 storage: its presigning client is built with the storage, so botocore comes at start-up.
    assert loaded(modules, "botocore")
    # Tencent SMS: the sender's client and request models.
    assert loaded(modules, "tencentcloud.sms")
    # A provider is built in every process but only called where steps run: its SDK client (which
    # imports all the request models) waits for the first call.
    assert "wardrobe.modules.providers.adapters.hunyuan" in modules
    assert not loaded(modules, "tencentcloud.hunyuan")
    # Still nothing of the vendors left unconfigured.
    for package in ("wechatpayv3", "tencentcloud.captcha", "tencentcloud.ims", *OTEL_TRACING):
        assert not loaded(modules, package), f"{package} is loaded although nothing configured uses it"
