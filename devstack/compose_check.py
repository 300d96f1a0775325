"""A check of docker-compose.yml, offline: the Compose Specification's JSON schema
(deploy/compose-spec, no Docker needed) and the house rules the schema does not know.

python -m devstack.compose_check docker-compose.yml

`make compose-check` (part of `make test`) runs it. Besides the schema, it checks:
every service has an image or a build, and a healthcheck; every service built from this
repository is built from the one shared Dockerfile (deploy/docker/service.Dockerfile, existing)
with a SERVICE build arg naming its own package (in the build context), a PORT build arg
equal to its contract port (shared/services.py; and to its PORT variable when set) and as
target the Dockerfile's stage named after it if there is one, else `service`; has env_files
that exist (but those marked `required: false`) and no container_name (so it can be scaled),
and every one but the admin service waits for the admin service to be healthy;
every `depends_on` names a service of the file; every named volume a service mounts is
declared; there is exactly one network and every service is on it.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from devstack.config import ADMIN, FLEET

ADMIN_SERVICE = ADMIN.name
# The one Dockerfile of every service, relative to the build context (the repository root).
SERVICE_DOCKERFILE = "deploy/docker/service.Dockerfile"
CONTRACT_PORTS = {spec.name: spec.port for spec in FLEET}
# The target of a service without a stage of its own in that Dockerfile.
DEFAULT_TARGET = "service"
SCHEMA = Path(__file__).resolve().parents[1] / "deploy" / "compose-spec" / "compose-spec.json"
_STAGE = re.compile(r"^FROM\s+\S+\s+AS\s+(\S+)\s*$", re.IGNORECASE | re.MULTILINE)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def env_files(service: dict[str, Any]) -> list[str]:
    """The env_file entries of a service (short and long syntax)."""
    return [
        item["path"] if isinstance(item, dict) else str(item)
        for item in _as_list(service.get("env_file"))
    ]


def required_env_files(service: dict[str, Any]) -> list[str]:
    """The env_file entries compose refuses to start without (not `required: false`)."""
    return [
        item["path"] if isinstance(item, dict) else str(item)
        for item in _as_list(service.get("env_file"))
        if not (isinstance(item, dict) and item.get("required") is False)
    ]


@cache
def _validator() -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))


def schema_problems(document: Any) -> list[str]:
    """Where a compose document breaks the Compose Specification's JSON schema."""
    return [
        f"schema: {error.json_path}: {error.message}"
        for error in sorted(_validator().iter_errors(document), key=lambda error: error.json_path)
    ]


def stages(dockerfile: Path) -> list[str]:
    """The named stages (`FROM ... AS name`) of a Dockerfile."""
    return _STAGE.findall(dockerfile.read_text())


def build_target(service: dict[str, Any]) -> str | None:
    """The Dockerfile stage a service with `build` is built to (None: the last one)."""
    build = service["build"]
    return None if isinstance(build, str) else build.get("target")


def build_context(service: dict[str, Any], root: Path) -> Path:
    """The build context of a service with `build`."""
    build = service["build"]
    return root / (build if isinstance(build, str) else build.get("context", "."))


def dockerfile_path(service: dict[str, Any], root: Path) -> Path:
    """The Dockerfile a service with `build` is built from."""
    build = service["build"]
    dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
    return build_context(service, root) / dockerfile


def _as_mapping(value: Any) -> dict[str, str]:
    """`args` or `environment`, mapping or `KEY=value` list, as strings (None: absent)."""
    if isinstance(value, dict):
        return {str(key): str(item) for key, item in value.items() if item is not None}
    pairs = (str(item).partition("=") for item in _as_list(value))
    return {key: item for key, sep, item in pairs if sep}


def build_args(service: dict[str, Any]) -> dict[str, str]:
    """The build args of a service with `build` (mapping or list syntax)."""
    build = service["build"]
    return {} if isinstance(build, str) else _as_mapping(build.get("args"))


def _depends_on(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    depends = service.get("depends_on") or {}
    if isinstance(depends, list):
        return {name: {"condition": "service_started"} for name in depends}
    return {name: (value or {}) for name, value in depends.items()}


def _check_image_args(name: str, service: dict[str, Any], root: Path) -> list[str]:
    """Built from the shared Dockerfile, for its own package and on its contract port."""
    problems = []
    build = service["build"]
    if isinstance(build, str) or build.get("dockerfile") != SERVICE_DOCKERFILE:
        problems.append(f"{name}: must be built from dockerfile {SERVICE_DOCKERFILE}")
    args = build_args(service)
    package = args.get("SERVICE")
    if package != name:
        problems.append(f"{name}: build arg SERVICE is {package!r}, not its package {name!r}")
    elif not (build_context(service, root) / name / "__main__.py").is_file():
        problems.append(f"{name}: no package {name} (with __main__.py) in the build context")
    port = args.get("PORT")
    if name not in CONTRACT_PORTS:
        problems.append(f"{name}: not a service of the fleet (shared/services.py)")
    elif port != str(CONTRACT_PORTS[name]):
        problems.append(
            f"{name}: build arg PORT is {port!r}, not its contract port {CONTRACT_PORTS[name]}"
        )
    variable = _as_mapping(service.get("environment")).get("PORT")
    if variable is not None and variable != port:
        problems.append(f"{name}: environment PORT {variable!r} differs from build arg PORT")
    return problems


def _check_build(name: str, service: dict[str, Any], root: Path) -> list[str]:
    problems = []
    dockerfile = dockerfile_path(service, root)
    if not dockerfile.is_file():
        problems.append(f"{name}: Dockerfile {dockerfile} does not exist")
    else:
        named = stages(dockerfile)
        wanted = name if name in named else DEFAULT_TARGET
        if build_target(service) != wanted:
            problems.append(f"{name}: must be built with target {wanted!r}")
    problems += _check_image_args(name, service, root)
    if not env_files(service):
        problems.append(f"{name}: no env_file")
    problems += [
        f"{name}: env_file {path} does not exist"
        for path in required_env_files(service)
        if not (root / path).is_file()
    ]
    if "container_name" in service:
        problems.append(f"{name}: container_name prevents scaling; remove it")
    if name != ADMIN_SERVICE:
        condition = _depends_on(service).get(ADMIN_SERVICE, {}).get("condition")
        if condition != "service_healthy":
            problems.append(f"{name}: must depend on {ADMIN_SERVICE} with service_healthy")
    return problems


def _named_volumes(service: dict[str, Any]) -> list[str]:
    names = []
    for mount in _as_list(service.get("volumes")):
        if isinstance(mount, dict):
            source = mount.get("source", "") if mount.get("type", "volume") == "volume" else ""
        else:
            source = str(mount).split(":", 1)[0] if ":" in str(mount) else ""
        if source and not source.startswith((".", "/", "~", "$")):
            names.append(source)
    return names


def _service_networks(service: dict[str, Any]) -> list[str]:
    networks = service.get("networks")
    if isinstance(networks, dict):
        return list(networks)
    return [str(item) for item in _as_list(networks)]


def _check_service(
    name: str, service: dict[str, Any], document: dict[str, Any], root: Path
) -> list[str]:
    services: dict[str, Any] = document["services"]
    problems: list[str] = []
    if "image" not in service and "build" not in service:
        problems.append(f"{name}: neither image nor build")
    healthcheck = service.get("healthcheck")
    if not isinstance(healthcheck, dict) or not healthcheck.get("test"):
        problems.append(f"{name}: no healthcheck")
    if "build" in service:
        problems += _check_build(name, service, root)
    problems += [
        f"{name}: depends_on unknown service {dependency!r}"
        for dependency in _depends_on(service)
        if dependency not in services
    ]
    declared_volumes = document.get("volumes") or {}
    problems += [
        f"{name}: volume {volume!r} is not declared under volumes"
        for volume in _named_volumes(service)
        if volume not in declared_volumes
    ]
    networks = set(document.get("networks") or {})
    on = _service_networks(service)
    if not on:
        problems.append(f"{name}: on no network (put it on {', '.join(sorted(networks))})")
    problems += [f"{name}: network {net!r} is not declared" for net in on if net not in networks]
    return problems


# `$$`, `${NAME}`, `${NAME:-default}`, `${NAME-default}`, `${NAME:?error}`, `${NAME:+other}`,
# `$NAME`: compose's interpolation (without nesting, which the file does not use).
_VARIABLE = re.compile(r"\$(?:(\$)|\{(\w+)(?:(:?[-?+])([^}]*))?\}|(\w+))")


class RenderError(ValueError):
    """A `${NAME:?error}` whose variable is unset or empty."""


def _interpolate(text: str, environ: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        if match[1]:
            return "$"
        name = match[2] or match[5]
        operator, argument = match[3], match[4] or ""
        value = environ.get(name)
        if operator is None:
            return value or ""
        missing = value is None or (operator.startswith(":") and value == "")
        kind = operator[-1]
        if kind == "?" and missing:
            raise RenderError(f"{name}: {argument}")
        if kind == "+":
            return "" if missing else argument
        return argument if missing and kind == "-" else (value or "")

    return _VARIABLE.sub(replace, text)


def _interpolated(value: Any, environ: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return _interpolate(value, environ)
    if isinstance(value, dict):
        return {key: _interpolated(item, environ) for key, item in value.items()}
    if isinstance(value, list):
        return [_interpolated(item, environ) for item in value]
    return value


def render(path: Path, environ: Mapping[str, str]) -> dict[str, Any]:
    """The compose file as compose sees it with `environ`: anchors and merge keys resolved, and
    every variable replaced (RenderError for a required one that is missing)."""
    document: dict[str, Any] = _interpolated(yaml.safe_load(path.read_text()), environ)
    return document


def check(path: Path) -> list[str]:
    """Every problem found in the compose file (empty when it is fine)."""
    document = yaml.safe_load(path.read_text())
    if not isinstance(document, dict) or not isinstance(document.get("services"), dict):
        return [f"{path}: no services mapping"]
    problems = schema_problems(document)
    networks = document.get("networks") or {}
    if len(networks) != 1:
        problems.append(f"{path}: expected exactly one network, found {len(networks)}")
    for name, service in document["services"].items():
        if not isinstance(service, dict):
            problems.append(f"{name}: not a mapping")
            continue
        problems += _check_service(name, service, document, path.parent)
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("file", type=Path, nargs="?", default=Path("docker-compose.yml"))
    args = parser.parse_args()
    problems = check(args.file)
    for problem in problems:
        print(f"compose check: {problem}", file=sys.stderr)
    if problems:
        sys.exit(1)
    print(
        f"compose check: {args.file} is valid (Compose Specification) and follows the house rules"
    )


if __name__ == "__main__":
    main()
