"""The production process model: `wardrobe serve --workers N` answers from N processes whose
metrics add up in every scrape (Prometheus multiprocess mode), and refuses to split an embedded
service across processes."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import Api
from tests.fixtures.nginx import free_ports
from tests.fixtures.tasks import OWN_PROCESSES, ROOT, spawn_worker, stop_workers, wait_until, worker_env

pytestmark = OWN_PROCESSES

SCRAPE_TOKEN = "process-model-scrape-token-0123456789abcdef"
SCRAPER = {"Authorization": f"Bearer {SCRAPE_TOKEN}"}


def test_several_processes_need_redis(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "WARDROBE_VAR_DIR": str(tmp_path), "WARDROBE_REDIS_URL": "", "HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "wardrobe.cli", "serve", "--workers", "2"],
        cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT / "src")},
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert b"WARDROBE_REDIS_URL" in done.stderr


@pytest.mark.parametrize("backend", ["mariadb"], indirect=True)
async def test_metrics_of_all_processes_add_up_in_every_scrape(api: Api, tmp_path: Path) -> None:
    env = worker_env(api, tmp_path, worker_in_process="false", extra_providers="[]", var_dir=str(tmp_path / "var"))
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env["WARDROBE_METRICS_TOKEN"] = SCRAPE_TOKEN
    port = free_ports(3)  # the shared port, then each process's own (for nginx's Socket.IO routing)
    server = spawn_worker(
        env, tmp_path / "serve.log", "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:

            async def up() -> bool:
                # Both processes, each on its own port too: the shared port answers as soon as one
                # is up, and all the requests below could then land on that one alone.
                assert server.poll() is None, (tmp_path / "serve.log").read_text()[-2000:]
                try:
                    answers = [await client.get(f"http://127.0.0.1:{p}/health") for p in (port, port + 1, port + 2)]
                except httpx.HTTPError:
                    return False
                return all(a.status_code == 200 for a in answers)

            await wait_until(up, within=90, every=0.2)
            answers = await asyncio.gather(*(client.get("/api/v1/billing/plans") for _ in range(30)))
            assert all(a.status_code == 200 for a in answers)
            pattern = re.compile(
                r'^wardrobe_http_requests_total\{method="GET",route="/api/v1/billing/plans",status="200"\} (\S+)$',
                re.MULTILINE,
            )
            for _ in range(6):  # new connections: the scrapes land on either process
                async with httpx.AsyncClient(base_url=base, timeout=30, headers=SCRAPER) as scraper:
                    text = (await scraper.get("/metrics")).text
                found = pattern.search(text)
                assert found is not None, text[:2000]
                assert float(found.group(1)) == 30.0
            assert (await client.get("/metrics")).status_code == 401  # Prometheus' token, or nothing
        files = list((tmp_path / "var" / "prometheus").glob("*.db"))
        assert len({f.name.split("_")[-1] for f in files}) >= 2  # one set of files per process
    finally:
        stop_workers([server])
