"""The product-side adapter for the fault vendor: a provider that is both sync and async."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import httpx

from wardrobe.core.tracing import vendor_http_hooks
from wardrobe.modules.providers.base import JobState, JobStatus, ProviderError, StepContext


class FaultVendorProvider:
    def __init__(self, base_url: str, slug: str = "fault") -> None:
        self.slug = slug
        # Our vendors' hooks: the trace id goes out as X-Request-Id, every answer is logged.
        self._http = httpx.AsyncClient(
            base_url=base_url, timeout=httpx.Timeout(30.0, connect=2.0), event_hooks=vendor_http_hooks(slug)
        )

    def supports(self, action: str) -> bool:
        return action in ("work", "job")

    def _key(self, inputs: Mapping[str, Any], ctx: StepContext) -> str:
        # Scenarios are per provider, so one can fail while the fallback succeeds.
        return f"{self.slug}:{inputs.get('key') or ctx.task_id + ':' + ctx.step_id}"

    @staticmethod
    def _raise_for(resp: httpx.Response) -> None:
        if resp.status_code >= 500:
            raise ProviderError("vendor_unavailable", retryable=True)
        if resp.status_code >= 400:
            code = str(resp.json().get("error", "vendor_rejected"))
            raise ProviderError(code, retryable=False, broken=code == "provider_broken")

    async def run(self, action: str, inputs: Mapping[str, Any], ctx: StepContext) -> dict[str, Any]:
        resp = await self._http.post("/run", json={"key": self._key(inputs, ctx), "payload": inputs.get("payload")})
        self._raise_for(resp)
        body = resp.json()
        return {"result": body["result"], "provider": self.slug}

    async def submit(self, action: str, inputs: Mapping[str, Any], ctx: StepContext) -> str:
        resp = await self._http.post("/jobs", json={"key": self._key(inputs, ctx)})
        self._raise_for(resp)
        return str(resp.json()["job_id"])

    async def poll(self, job_id: str, ctx: StepContext) -> JobStatus:
        resp = await self._http.get(f"/jobs/{job_id}")
        self._raise_for(resp)
        body = resp.json()
        if body["state"] == "succeeded":
            return JobStatus(JobState.SUCCEEDED, {"result": body["result"], "provider": self.slug})
        return JobStatus(JobState.RUNNING)


def build() -> list[FaultVendorProvider]:
    """Entry point for ``WARDROBE_EXTRA_PROVIDERS=["tests.providers.fault:build"]`` in worker
    processes: two providers ("fault" and "fault2") on the vendor at WARDROBE_TEST_FAULT_VENDOR_URL."""
    url = os.environ["WARDROBE_TEST_FAULT_VENDOR_URL"]
    return [FaultVendorProvider(url, "fault"), FaultVendorProvider(url, "fault2")]
