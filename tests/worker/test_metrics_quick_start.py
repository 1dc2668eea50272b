"""The quick start (embedded mode: SQLite, in-process queue) shows the probed gauges: its API process
runs the probe itself, since no worker or scheduler process exists there."""

from __future__ import annotations

import os
from pathlib import Path

import httpx

from tests.fixtures.tasks import OWN_PROCESSES, ROOT, free_port, spawn_worker, stop_workers, wait_until

pytestmark = OWN_PROCESSES


# What one probe round of the embedded API shows: its database and store answer, the outbox is read
# and the disk measured.
ROUND = (
    'wardrobe_dependency_up{dependency="database"} 1.0',
    'wardrobe_dependency_up{dependency="storage"} 1.0',
    "wardrobe_outbox_backlog ",
    "wardrobe_disk_free_ratio{",
)


def _text(log: Path) -> str:
    return log.read_text(errors="replace")


async def test_the_embedded_api_probes_its_own_gauges(tmp_path: Path) -> None:
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("WARDROBE_", "PROMETHEUS_"))}
    env.update({"PYTHONPATH": str(ROOT), "WARDROBE_ENV": "development", "WARDROBE_VAR_DIR": str(tmp_path / "var")})
    log = tmp_path / "serve.log"
    api = spawn_worker(env, log, "serve", "--host", "127.0.0.1", "--port", str(port))
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(timeout=10) as http:

            async def probed() -> bool:
                assert api.poll() is None, _text(log)
                try:
                    answer = await http.get(f"{base}/metrics")
                except httpx.TransportError:
                    return False
                # The probe sets each gauge as its own check answers: wait for the whole round.
                return all(line in answer.text for line in ROUND)

            await wait_until(probed, within=90, every=0.25)
            body = (await http.get(f"{base}/metrics")).text
            assert "wardrobe_queue_depth{" not in body  # no stream in embedded mode: no sample
    finally:
        stop_workers([api])
