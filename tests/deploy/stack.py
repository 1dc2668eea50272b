"""The Compose stack's files as its tests read them: compose.yaml, the .env template, and Compose's
variable interpolation.

Docker is not on the machines that run the suite, so nothing here asks Compose: the file is checked
against the Compose specification's JSON schema (as shipped by check-jsonschema, which vendors it
from the compose-spec repository) after the interpolation Compose would do with the template's
values.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from dotenv import dotenv_values

from tests.fixtures.tasks import ROOT
from wardrobe.settings import Settings

COMPOSE_FILE = ROOT / "compose.yaml"
ENV_TEMPLATE = ROOT / "deploy" / "compose.env.example"
OPERATIONS_DOC = ROOT / "docs" / "operations.md"

# Compose's interpolation: $$ (a literal $), ${NAME}, ${NAME:-default}, ${NAME-default},
# ${NAME:?error}, ${NAME?error}, $NAME. Written here because no Python package implements Compose's
# rules (docker-compose v1, which did, is retired); compose.yaml uses nothing nested.
_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)
_PLACEHOLDER = re.compile(r"^<(?P<hint>.*)>$")
_TEMPLATE_LINE = re.compile(r"^#?\s*(?P<name>[A-Z][A-Z0-9_]*)=", re.MULTILINE)


class MissingVariable(KeyError):
    """A ${NAME:?...} or ${NAME?...} whose variable is unset (Compose refuses to start)."""


def _substitute(text: str, env: Mapping[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["bare"]
        value = env.get(name)
        op, arg = match["op"], match["arg"] or ""
        unset = not value if op in (":-", ":?") else value is None
        if not unset:
            return value or ""
        if op and op.endswith("?"):
            raise MissingVariable(f"{name}: {arg}")
        return arg if op else ""

    return _VARIABLE.sub(one, text)


def interpolate(node: Any, env: Mapping[str, str]) -> Any:
    """``node`` (a loaded YAML tree) with every string value interpolated as Compose does."""
    if isinstance(node, str):
        return _substitute(node, env)
    if isinstance(node, dict):
        return {key: interpolate(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate(item, env) for item in node]
    return node


def referenced_variables(text: str) -> set[str]:
    """The variables a file's text names for interpolation ($$ is a literal dollar)."""
    return {m["braced"] or m["bare"] for m in _VARIABLE.finditer(text) if not m["escaped"]}


def raw_compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def template_values() -> dict[str, str]:
    """The template as Compose reads .env (placeholders left as they are)."""
    return {name: value or "" for name, value in dotenv_values(ENV_TEMPLATE).items()}


def template_names() -> set[str]:
    """Every variable the template sets or shows commented out."""
    return {m["name"] for m in _TEMPLATE_LINE.finditer(ENV_TEMPLATE.read_text(encoding="utf-8"))}


def _plausible(name: str, hint: str) -> str:
    """What an operator would put in place of ``<hint>``."""
    if "openssl rand -hex" in hint:
        return secrets.token_hex(int(hint.rsplit(" ", 1)[-1]))
    if hint.startswith("https://"):
        return hint.split("?", 1)[0] + ("?access_token=" + secrets.token_hex(32) if "?" in hint else "")
    field = Settings.model_fields.get(name.removeprefix("WARDROBE_").lower())
    if field is not None and field.annotation is int:
        return "1400000000"
    return f"filled-{name.lower()}"


def filled_template() -> dict[str, str]:
    """The template with every <placeholder> replaced by a plausible value."""
    values = template_values()
    for name, value in values.items():
        match = _PLACEHOLDER.match(value)
        if match:
            values[name] = _plausible(name, match["hint"])
    return values


def compose_with(env: Mapping[str, str]) -> dict[str, Any]:
    """compose.yaml after interpolation with ``env`` as the .env file."""
    return dict(interpolate(raw_compose(), env))


def container_environment(service: dict[str, Any], env_file: Mapping[str, str]) -> dict[str, str]:
    """The environment of a service's container: its env_file, then its `environment` over it."""
    result = dict(env_file) if service.get("env_file") else {}
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    result.update({key: "" if value is None else str(value) for key, value in environment.items()})
    return result


def compose_schema() -> dict[str, Any]:
    """The Compose specification's JSON schema, from the check-jsonschema package."""
    vendored = resources.files("check_jsonschema.builtin_schemas.vendor")
    schema = json.loads(vendored.joinpath("compose-spec.json").read_text(encoding="utf-8"))
    assert isinstance(schema, dict)
    return schema


def mount_sources(compose: dict[str, Any]) -> list[tuple[str, str]]:
    """(service, source) of every bind mount: the paths on the host, relative to compose.yaml."""
    found: list[tuple[str, str]] = []
    for name, service in compose["services"].items():
        for volume in service.get("volumes") or []:
            source = volume["source"] if isinstance(volume, dict) else volume.split(":", 1)[0]
            if source.startswith((".", "/")):
                found.append((name, source))
    return found


def repo_path(source: str) -> Path:
    return (ROOT / source).resolve()
