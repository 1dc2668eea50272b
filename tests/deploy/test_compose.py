"""compose.yaml, the production shape on one Docker host (docs/operations.md, "Deploy with Docker
Compose"), checked without Docker: against the Compose specification's schema after Compose's own
interpolation with the .env template, and against what the docs, the settings and the repository
say it must have."""

from __future__ import annotations

import copy
import os
import re
from typing import Any

import jsonschema
import pytest

from tests.deploy.stack import (
    COMPOSE_FILE,
    ENV_TEMPLATE,
    OPERATIONS_DOC,
    MissingVariable,
    compose_schema,
    compose_with,
    container_environment,
    filled_template,
    mount_sources,
    raw_compose,
    referenced_variables,
    repo_path,
    template_names,
    template_values,
)
from wardrobe.modules.crypto.factory import build_key_manager
from wardrobe.settings import Settings

WARDROBE_SERVICES = ("migrate", "api", "worker", "scheduler", "nginx-config")
# Services whose data outlives their container, and where they keep it.
DATA_PATHS = {
    "api": "/var/lib/wardrobe",
    "worker": "/var/lib/wardrobe",
    "scheduler": "/var/lib/wardrobe",
    "mariadb": "/var/lib/mysql",
    "redis": "/data",
    "prometheus": "/prometheus",
    "alertmanager": "/alertmanager",
    "grafana": "/var/lib/grafana",
}


# Settings the worker's and scheduler's metrics server reads (/work contract "metrics"): set by
# compose.yaml before Settings has them in this branch; empty this once it does.
def _errors(document: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft202012Validator(compose_schema())
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


def _is_one_shot(service: dict[str, Any]) -> bool:
    return service.get("restart") == "no"


def test_the_schema_is_the_compose_specification() -> None:
    schema = compose_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["title"] == "Compose Specification"


def test_compose_file_validates_against_the_specification() -> None:
    assert _errors(compose_with(filled_template())) == []


def _typo_in_a_service_key(doc: dict[str, Any]) -> None:
    doc["services"]["api"]["healthcheck"]["intervall"] = "5s"


def _unknown_dependency_condition(doc: dict[str, Any]) -> None:
    doc["services"]["api"]["depends_on"]["migrate"]["condition"] = "service_finished"


def _unknown_top_level_key(doc: dict[str, Any]) -> None:
    doc["service"] = doc.pop("services")


def _restart_as_a_list(doc: dict[str, Any]) -> None:
    doc["services"]["redis"]["restart"] = ["unless-stopped"]


@pytest.mark.parametrize(
    "breakage",
    [_typo_in_a_service_key, _unknown_dependency_condition, _unknown_top_level_key, _restart_as_a_list],
)
def test_a_broken_compose_file_fails_the_schema(breakage: Any) -> None:
    document = copy.deepcopy(compose_with(filled_template()))
    breakage(document)
    assert _errors(document), "the schema accepted a broken file: it checks nothing"


def test_every_variable_compose_reads_is_in_the_template() -> None:
    used = referenced_variables(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert used, "no ${...} found: the scan is broken"
    assert sorted(used - set(template_values())) == []


def test_compose_refuses_to_start_without_the_secrets() -> None:
    values = filled_template()
    for name in ("MARIADB_PASSWORD", "REDIS_PASSWORD", "GRAFANA_ADMIN_PASSWORD", "DINGTALK_WEBHOOK_URL"):
        missing = {key: value for key, value in values.items() if key != name}
        with pytest.raises(MissingVariable, match=name):
            compose_with(missing)


def test_every_wardrobe_variable_is_a_setting() -> None:
    fields = {f"WARDROBE_{name.upper()}" for name in Settings.model_fields}
    in_template = {name for name in template_names() if name.startswith("WARDROBE_")}
    assert len(in_template) > 20
    assert sorted(in_template - fields) == []
    compose = compose_with(filled_template())
    in_compose = {
        key
        for name in WARDROBE_SERVICES
        for key in (compose["services"][name].get("environment") or {})
        if key.startswith("WARDROBE_")
    }
    assert sorted(in_compose - fields) == []


def _settings_of(service: str, values: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    compose = compose_with(values)
    environment = container_environment(compose["services"][service], values)
    for key in [key for key in os.environ if key.startswith("WARDROBE_")]:
        monkeypatch.delenv(key)
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    return Settings(_env_file=None)


@pytest.mark.parametrize("service", WARDROBE_SERVICES)
def test_the_filled_template_passes_the_production_guard(service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings_of(service, filled_template(), monkeypatch)
    assert settings.env == "production"
    assert settings.production_problems() == []
    assert settings.database_url.startswith("mysql+asyncmy://wardrobe:")
    assert settings.redis_url.startswith("redis://:")
    assert not settings.auto_migrate
    build_key_manager(settings)  # production refuses the local key file


def test_the_template_left_unfilled_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="WARDROBE_JWT_SECRET"):
        _settings_of("api", template_values(), monkeypatch)


def test_the_api_trusts_the_stack_network_only() -> None:
    values = filled_template()
    compose = compose_with(values)
    subnet = compose["networks"]["default"]["ipam"]["config"][0]["subnet"]
    assert subnet == values["STACK_SUBNET"]
    assert compose["services"]["api"]["environment"]["WARDROBE_TRUSTED_PROXIES"] == f'["{subnet}"]'
    assert "ports" not in compose["services"]["api"], "the API is reached through nginx only"


def _documented_services() -> list[str]:
    text = OPERATIONS_DOC.read_text(encoding="utf-8")
    section = text.split("## Deploy with Docker Compose", 1)[1].split("\n## ", 1)[0]
    table = section.split("### The services", 1)[1].split("\n### ", 1)[0]
    return re.findall(r"^\| `([a-z-]+)` \|", table, flags=re.MULTILINE)


def test_every_service_the_docs_name_runs_with_a_healthcheck() -> None:
    documented = _documented_services()
    services = raw_compose()["services"]
    assert len(documented) >= 10
    assert sorted(documented) == sorted(services), "docs/operations.md and compose.yaml name different services"
    for name in documented:
        service = services[name]
        if _is_one_shot(service):
            continue
        check = service.get("healthcheck") or {}
        assert check.get("test"), f"{name} has no healthcheck"
        assert not check.get("disable"), f"{name} has its healthcheck disabled"
        assert service.get("restart") == "unless-stopped", name


def test_one_shots_finish_before_what_needs_them() -> None:
    services = raw_compose()["services"]
    one_shots = {name for name, service in services.items() if _is_one_shot(service)}
    assert one_shots == {"migrate", "nginx-config"}
    waited = {
        (dependency, name)
        for name, service in services.items()
        for dependency, how in (service.get("depends_on") or {}).items()
        if how["condition"] == "service_completed_successfully"
    }
    assert {("migrate", name) for name in ("api", "worker", "scheduler")} <= waited
    assert ("nginx-config", "nginx") in waited
    for name in one_shots:
        assert services[name]["healthcheck"] == {"disable": True}, "the image's API check would fail them"


def test_every_dependency_can_reach_its_condition() -> None:
    """A service_healthy dependency needs a healthcheck, a completed one must exit (not restart)."""
    services = raw_compose()["services"]
    for name, service in services.items():
        for dependency, how in (service.get("depends_on") or {}).items():
            assert dependency in services, f"{name} depends on {dependency}, which is not a service"
            target = services[dependency]
            if how["condition"] == "service_healthy":
                assert (target.get("healthcheck") or {}).get("test"), f"{name} waits for {dependency}'s health"
            if how["condition"] == "service_completed_successfully":
                assert _is_one_shot(target), f"{name} waits for {dependency} to exit"


def test_data_lives_in_named_volumes() -> None:
    compose = raw_compose()
    declared = set(compose["volumes"])
    used: set[str] = set()
    for name, service in compose["services"].items():
        for volume in service.get("volumes") or []:
            source, target = volume.split(":")[:2]
            if not source.startswith((".", "/", "$")):
                used.add(source)
                assert source in declared, f"{name}: volume {source} is not declared"
            if DATA_PATHS.get(name) == target:
                assert source in declared, f"{name} keeps {target} in a bind mount or nowhere"
    for name, path in DATA_PATHS.items():
        targets = [v.split(":")[1] for v in compose["services"][name].get("volumes") or []]
        assert path in targets, f"{name} keeps no volume at {path}"
    assert used == declared


@pytest.mark.parametrize("edge", ["http", "https"])
def test_every_mounted_file_is_in_the_repository(edge: str) -> None:
    values = {**filled_template(), "NGINX_EDGE": edge}
    compose = compose_with(values)
    sources = mount_sources(compose)
    assert len(sources) >= 8
    for service, source in sources:
        assert repo_path(source).exists(), f"{service} mounts {source}, which is not in the repository"
    assert repo_path(compose["services"]["api"]["build"]["context"]).joinpath("Dockerfile").is_file()


def test_third_party_images_are_pinned() -> None:
    compose = compose_with(filled_template())
    for name, service in compose["services"].items():
        image = service["image"]
        if "build" in service:
            assert image.startswith("wardrobe:"), name
            continue
        repository, _, tag = image.rpartition(":")
        assert repository.startswith("docker.io/"), f"{name}: IMAGE_REGISTRY must prefix {image}"
        assert re.search(r"\d+\.\d+", tag), f"{name}: {image} is not pinned"
    mirrored = compose_with({**filled_template(), "IMAGE_REGISTRY": "docker.m.daocloud.io"})
    assert mirrored["services"]["mariadb"]["image"].startswith("docker.m.daocloud.io/library/mariadb:")


def test_the_template_needs_nothing_from_the_development_env_example() -> None:
    """The production template stands alone; .env.example stays the development one."""
    development = (ENV_TEMPLATE.parents[1] / ".env.example").read_text(encoding="utf-8")
    assert "WARDROBE_ENV=development" in development
    assert template_values()["WARDROBE_ENV"] == "production"


def test_workers_scale_and_are_scraped_by_dns() -> None:
    compose = raw_compose()
    worker = compose["services"]["worker"]
    # --scale needs no fixed name and no published port.
    assert "container_name" not in worker
    assert "ports" not in worker
    assert worker["environment"]["WARDROBE_METRICS_PORT"] == "9100"
