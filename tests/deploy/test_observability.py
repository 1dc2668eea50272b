"""The Grafana dashboards and Prometheus rules under deploy/: promtool accepts every rule file and
passes every rule unit test (and fails a broken one), each alert is tested firing and quiet and
links a runbook section that exists, the dashboards are well-formed, and every metric any of their
PromQL names is one the service really exports (scraped after a task has run)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml

from tests.conftest import Api
from tests.fixtures.auth import data, login_as, sms_login
from tests.fixtures.tasks import give_quota, make_feature, run_to_end, step
from tests.test_docs_links import anchors

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
RULE_FILES = sorted((PROMETHEUS / "rules").glob("*.yml"))
RULE_TESTS = sorted((PROMETHEUS / "tests").glob("*.yml"))
DASHBOARDS = sorted((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))
RUNBOOKS = ROOT / "docs" / "runbooks.md"
# Series Prometheus makes itself rather than scrapes.
PROMETHEUS_OWN = {"up", "ALERTS", "ALERTS_FOR_STATE"}
# Grafana's interval variables are not PromQL; any valid duration parses the same way.
GRAFANA_INTERVALS = re.compile(r"\$__(rate_interval|interval|range)\b")


def promtool(*args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:  # never skipped: `python3 dev.py test` installs it (devtools/services.py TOOLS)
        pytest.fail("promtool is missing: apt-get install prometheus")
    command = [binary, *map(str, args)]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False, timeout=120)  # noqa: S603


def rule_groups() -> list[dict[str, Any]]:
    return [group for path in RULE_FILES for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]]


def alerts() -> list[dict[str, Any]]:
    return [rule for group in rule_groups() for rule in group["rules"] if "alert" in rule]


def panels() -> list[tuple[str, dict[str, Any]]]:
    return [
        (path.name, panel) for path in DASHBOARDS for panel in json.loads(path.read_text(encoding="utf-8"))["panels"]
    ]


# --- promtool -----------------------------------------------------------------------------------


def test_there_are_rules_tests_and_dashboards() -> None:
    assert len(RULE_FILES) >= 2
    assert len(RULE_TESTS) >= 1
    assert {p.name for p in DASHBOARDS} == {"api.json", "tasks-providers.json", "money.json", "infrastructure.json"}


def test_promtool_checks_every_rule_file() -> None:
    result = promtool("check", "rules", *RULE_FILES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(RULE_FILES)


def test_promtool_unit_tests_pass() -> None:
    result = promtool("test", "rules", *RULE_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(RULE_TESTS)


def _copy_prometheus(tmp_path: Path) -> Path:
    copy = tmp_path / "prometheus"
    shutil.copytree(PROMETHEUS, copy)
    return copy


def test_promtool_fails_a_broken_rule_and_a_changed_threshold(tmp_path: Path) -> None:
    copy = _copy_prometheus(tmp_path)
    rules = copy / "rules" / "wardrobe-alerts.yml"
    original = rules.read_text(encoding="utf-8")
    threshold = 'job:wardrobe_http_error_ratio:rate5m{job="wardrobe-api"} > 0.05'
    assert threshold in original

    rules.write_text(original.replace(threshold, threshold.replace("> 0.05", "> > 0.05")), encoding="utf-8")
    broken = promtool("check", "rules", rules)
    assert broken.returncode != 0
    assert "wardrobe-alerts.yml" in broken.stdout + broken.stderr

    # Valid, but the API error alert now waits for 50% errors: its unit test must notice.
    rules.write_text(original.replace(threshold, threshold.replace("0.05", "0.5")), encoding="utf-8")
    assert promtool("check", "rules", rules).returncode == 0
    changed = promtool("test", "rules", *(copy / "tests").glob("*.yml"))
    assert changed.returncode != 0
    assert "alertname: WardrobeApiErrorRate" in changed.stdout + changed.stderr


def test_every_alert_is_unit_tested_firing_and_quiet() -> None:
    fired: set[str] = set()
    quiet: set[str] = set()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]:
            for check in case.get("alert_rule_test", []):
                (fired if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alerts()}
    assert names - fired == set(), "never seen firing"
    assert names - quiet == set(), "never seen quiet"
    assert (fired | quiet) - names == set(), "tests of alerts that do not exist"


def test_every_alert_has_a_severity_a_summary_and_a_runbook_section() -> None:
    runbook_anchors = anchors(RUNBOOKS)
    for rule in alerts():
        name = rule["alert"]
        assert rule["labels"]["severity"] in {"page", "ticket"}, name
        notes = rule["annotations"]
        assert notes["summary"], name
        assert notes["description"], name
        # One section per alert, named after it (GitHub's anchor of "### WardrobeApiErrorRate").
        assert notes["runbook_url"] == f"docs/runbooks.md#{name.lower()}", name
        assert name.lower() in runbook_anchors, name


# --- dashboards ---------------------------------------------------------------------------------


def test_dashboards_are_grafana_dashboards_on_the_templated_data_source() -> None:
    uids, titles = set(), set()
    for path in DASHBOARDS:
        board = json.loads(path.read_text(encoding="utf-8"))
        assert board["schemaVersion"] >= 36, path.name
        assert board["panels"], path.name
        (variable,) = [v for v in board["templating"]["list"] if v["name"] == "datasource"]
        assert (variable["type"], variable["query"]) == ("datasource", "prometheus"), path.name
        uids.add(board["uid"])
        titles.add(board["title"])
    assert len(uids) == len(titles) == len(DASHBOARDS)


def test_every_panel_has_the_data_source_a_query_a_unit_and_its_own_title() -> None:
    seen: dict[str, set[str]] = {}
    for board, panel in panels():
        where = f"{board}: {panel['title']}"
        assert panel["title"] not in seen.setdefault(board, set()), where
        seen[board].add(panel["title"])
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, where
        assert panel["targets"], where
        assert all(t["expr"].strip() and t["datasource"] == panel["datasource"] for t in panel["targets"]), where
        assert panel["fieldConfig"]["defaults"]["unit"], where
    for board in seen:
        ids = [p["id"] for b, p in panels() if b == board]
        assert len(ids) == len(set(ids)), board


# --- the metric names ---------------------------------------------------------------------------


def metric_names(expr: str) -> set[str]:
    """Every metric a PromQL expression selects, from its syntax tree (a regular expression would
    also catch function names, label names and strings)."""
    names: set[str] = set()

    def visit(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            assert node.name, f"a selector without a metric name in {expr!r}"
            names.add(node.name)

    promql_parser.walk(promql_parser.parse(GRAFANA_INTERVALS.sub("5m", expr)), visit)
    return names


def queried_metrics() -> dict[str, set[str]]:
    """Metric name → where it is queried."""
    found: dict[str, set[str]] = {}
    for board, panel in panels():
        for target in panel["targets"]:
            for name in metric_names(target["expr"]):
                found.setdefault(name, set()).add(f"{board}: {panel['title']}")
    for group in rule_groups():
        for rule in group["rules"]:
            for name in metric_names(rule["expr"]):
                found.setdefault(name, set()).add(f"rule {rule.get('alert') or rule['record']}")
    return found


def exported_names(exposition: str) -> set[str]:
    """The series names a scrape can hold, from its `# TYPE` lines: present even for a labelled
    family with no sample yet. Counters are typed under their `_total` name in this format."""
    names: set[str] = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", exposition, re.MULTILINE):
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        elif kind == "summary":
            names |= {name, f"{name}_sum", f"{name}_count"}
        else:
            names.add(name)
    return names


def test_metric_names_are_read_from_the_syntax_tree() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le) (rate(a_seconds_bucket{job="x", route=~"rate.*"}[$__rate_interval])))'
        " / on () group_left max(b_total offset 5m) or absent(c) unless vector(1)"
    )
    assert metric_names(expr) == {"a_seconds_bucket", "b_total", "c"}
    exposition = "# TYPE h histogram\nh_bucket 1\n# TYPE c_total counter\n# TYPE g gauge\n"
    assert exported_names(exposition) == {"h_bucket", "h_sum", "h_count", "c_total", "g"}


async def _run_a_task(api: Api) -> None:
    admin = await login_as(api, "admin")
    await make_feature(api, admin, "observed", [step("a")], {"r": "$steps.a.result"})
    user = await sms_login(api.client)
    await give_quota(api, user.user["id"], 1)
    body = {"feature": "observed", "inputs": {"key": "k"}}
    public_id = str(data(await api.client.post("/api/v1/tasks", json=body, headers=user.headers), 202)["id"])
    assert (await run_to_end(api, user, public_id))["status"] == "succeeded"


async def test_every_queried_metric_is_exported(
    api_factory: Any, fault_vendor: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WARDROBE_TEST_FAULT_VENDOR_URL", fault_vendor.base_url)
    api: Api = await api_factory(extra_providers=["tests.providers.fault:build"], worker_in_process=True)
    await _run_a_task(api)
    scrape = await api.client.get("/metrics")
    assert scrape.status_code == 200
    recorded = {rule["record"] for group in rule_groups() for rule in group["rules"] if "record" in rule}
    known = exported_names(scrape.text) | recorded | PROMETHEUS_OWN
    missing = {name: sorted(where) for name, where in queried_metrics().items() if name not in known}
    assert not missing, "not exported:\n" + "\n".join(f"{n} ({'; '.join(w)})" for n, w in sorted(missing.items()))


def test_alertmanager_routes_and_inhibits_only_what_the_rules_raise() -> None:
    """A matcher naming a severity or an alert that no rule raises would silently route or inhibit
    nothing (the two files were written apart once: `critical` against the rules' `page`)."""
    config = yaml.safe_load((ROOT / "deploy" / "alertmanager" / "alertmanager.yml").read_text(encoding="utf-8"))
    raised = {"alertname": {a["alert"] for a in alerts()}, "severity": {a["labels"]["severity"] for a in alerts()}}
    matchers = [m for route in config["route"].get("routes", []) for m in route["matchers"]]
    for rule in config.get("inhibit_rules", []):
        matchers += rule["source_matchers"] + rule["target_matchers"]
    assert matchers
    for matcher in matchers:
        name, value = re.fullmatch(r'(\w+)="([^"]*)"', matcher).groups()  # type: ignore[union-attr]
        assert value in raised[name], matcher
    routed = {m.split('"')[1] for route in config["route"]["routes"] for m in route["matchers"]}
    assert routed == raised["severity"]  # every severity has its own route
