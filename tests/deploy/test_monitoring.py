"""The Compose stack's monitoring: Prometheus's configuration (with whatever alert rules
deploy/prometheus/rules/ holds) through `promtool check config`, Alertmanager's through `amtool
check-config`, both from Debian's packages (.ci/run installs them: devtools/services.py TOOLS), and
the wiring between them, Grafana and compose.yaml."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.stack import compose_with, filled_template, raw_compose
from tests.fixtures.tasks import ROOT

PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
ALERTMANAGER_FILE = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
GRAFANA_DIR = ROOT / "deploy" / "grafana"
# The job names the dashboards and alert rules select on (the metrics contract).
JOBS = {"wardrobe-api", "wardrobe-worker", "wardrobe-scheduler"}

VALID_RULES = """groups:
  - name: probe
    rules:
      - alert: ProbeDown
        expr: up == 0
        for: 1m
"""
BROKEN_RULES = VALID_RULES.replace("up == 0", "up ==")


def _tool(name: str) -> str:
    found = shutil.which(name)
    assert found, f"{name} is missing: install the Debian package (python3 dev.py services, or .ci/run, does)"
    return found


def _load(path: Path) -> dict[str, Any]:
    loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def _prometheus_as_in_the_container(home: Path) -> Path:
    """deploy/prometheus laid out as the container sees /etc/prometheus: the configuration, rules/
    and the scrape token Compose mounts beside them as a secret."""
    shutil.copytree(PROMETHEUS_DIR, home)
    secret = raw_compose()["services"]["prometheus"]["secrets"][0]["target"]
    (home / Path(secret).name).write_text("0" * 64, encoding="utf-8")
    return home / "prometheus.yml"


def _promtool(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - Debian's promtool on the test's copy
        [_tool("promtool"), "check", "config", str(config)], capture_output=True, text=True, timeout=60, check=False
    )


def test_prometheus_configuration_passes_promtool(tmp_path: Path) -> None:
    """As in the repository, whatever rule files are there (none yet is fine)."""
    done = _promtool(_prometheus_as_in_the_container(tmp_path / "prometheus"))
    assert done.returncode == 0, done.stdout + done.stderr
    rule_files = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
    assert f"{len(rule_files)} rule files found" in done.stdout or not rule_files, done.stdout


def test_promtool_reads_the_rule_files_prometheus_would(tmp_path: Path) -> None:
    config = _prometheus_as_in_the_container(tmp_path / "prometheus")
    (config.parent / "rules" / "zz-probe.yml").write_text(VALID_RULES, encoding="utf-8")
    done = _promtool(config)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "zz-probe.yml" in done.stdout
    (config.parent / "rules" / "zz-probe.yml").write_text(BROKEN_RULES, encoding="utf-8")
    assert _promtool(config).returncode != 0, "a broken rule file passed: rule_files reads nothing"


def test_promtool_needs_the_token_file_compose_mounts(tmp_path: Path) -> None:
    config = _prometheus_as_in_the_container(tmp_path / "prometheus")
    (config.parent / "metrics_token").unlink()
    done = _promtool(config)
    assert done.returncode != 0
    assert "metrics_token" in done.stdout + done.stderr


def test_prometheus_scrapes_what_compose_runs() -> None:
    config = _load(PROMETHEUS_DIR / "prometheus.yml")
    compose = compose_with(filled_template())
    services = compose["services"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) >= JOBS
    secret_target = services["prometheus"]["secrets"][0]["target"]
    for name in JOBS:
        assert jobs[name]["authorization"]["credentials_file"] == Path(secret_target).name, name
    assert jobs["wardrobe-api"]["static_configs"][0]["targets"] == ["api:8000"]
    assert "8000" in services["api"]["expose"]
    worker_sd = jobs["wardrobe-worker"]["dns_sd_configs"][0]
    assert worker_sd["names"] == ["worker"]
    assert worker_sd["port"] == int(services["worker"]["environment"]["WARDROBE_METRICS_PORT"])
    scheduler_port = services["scheduler"]["environment"]["WARDROBE_METRICS_PORT"]
    assert jobs["wardrobe-scheduler"]["static_configs"][0]["targets"] == [f"scheduler:{scheduler_port}"]
    assert config["rule_files"] == ["rules/*.yml"]
    assert "./deploy/prometheus/rules:/etc/prometheus/rules:ro" in services["prometheus"]["volumes"]
    assert compose["secrets"]["metrics_token"] == {"environment": "WARDROBE_METRICS_TOKEN"}
    alertmanagers = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert alertmanagers == ["alertmanager:9093"]


def _amtool(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - Debian's amtool on a configuration file
        [_tool("amtool"), "check-config", str(config)], capture_output=True, text=True, timeout=60, check=False
    )


def test_alertmanager_configuration_passes_amtool(tmp_path: Path) -> None:
    done = _amtool(ALERTMANAGER_FILE)
    assert done.returncode == 0, done.stdout + done.stderr
    broken = tmp_path / "alertmanager.yml"
    broken.write_text(
        ALERTMANAGER_FILE.read_text(encoding="utf-8").replace("receiver: dingtalk", "receiver: nobody"),
        encoding="utf-8",
    )
    assert _amtool(broken).returncode != 0, "a route to an unknown receiver passed: amtool checks nothing"


def test_alerts_reach_the_dingtalk_relay() -> None:
    config = _load(ALERTMANAGER_FILE)
    values = filled_template()
    compose = compose_with(values)
    relay = compose["services"]["dingtalk"]
    port = next(arg for arg in relay["command"] if arg.startswith("--web.listen-address=")).rsplit(":", 1)[1]
    relay_config = yaml.safe_load(compose["configs"]["dingtalk"]["content"])
    (target,) = relay_config["targets"]
    assert relay_config["targets"][target]["url"] == values["DINGTALK_WEBHOOK_URL"]
    (receiver,) = config["receivers"]
    assert config["route"]["receiver"] == receiver["name"]
    assert receiver["webhook_configs"][0]["url"] == f"http://dingtalk:{port}/dingtalk/{target}/send"
    mounted = relay["configs"][0]["target"]
    assert f"--config.file={mounted}" in relay["command"]


def test_grafana_is_provisioned_with_prometheus_and_the_dashboards() -> None:
    services = raw_compose()["services"]
    (datasource,) = _load(GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml")["datasources"]
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
    assert datasource["uid"] == "prometheus"
    assert datasource["isDefault"]
    (provider,) = _load(GRAFANA_DIR / "provisioning" / "dashboards" / "wardrobe.yml")["providers"]
    mounts = dict(volume.split(":")[:2] for volume in services["grafana"]["volumes"])
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"


def test_every_dashboard_is_json_grafana_can_load() -> None:
    """Whatever deploy/grafana/dashboards holds (a loop, not parameters: none is no skip)."""
    for path in sorted((GRAFANA_DIR / "dashboards").glob("*.json")):
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        assert dashboard.get("title"), path.name
        assert isinstance(dashboard.get("panels"), list), path.name
