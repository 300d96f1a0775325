"""A structural check of docker-compose.yml: the house rules `docker compose config` does not know.

python -m shared.stack.compose_check docker-compose.yml

`make compose-check` runs it after the schema validation of `docker compose config` (or Debian's
`docker-compose config`) when one is installed, and alone when none is. It checks:
every service has an image or a build, and a healthcheck; every service built from this
repository has an env_file and a Dockerfile (both existing) and no container_name (so it can
be scaled), and every one but the admin service waits for the admin service to be healthy;
every `depends_on` names a service of the file; every named volume a service mounts is
declared; there is exactly one network and every service is on it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

ADMIN_SERVICE = "kafka_admin_service"


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


def dockerfile_path(service: dict[str, Any], root: Path) -> Path:
    """The Dockerfile a service with `build` is built from."""
    build = service["build"]
    context = root / (build if isinstance(build, str) else build.get("context", "."))
    dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
    return context / dockerfile


def _depends_on(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    depends = service.get("depends_on") or {}
    if isinstance(depends, list):
        return {name: {"condition": "service_started"} for name in depends}
    return {name: (value or {}) for name, value in depends.items()}


def _check_build(name: str, service: dict[str, Any], root: Path) -> list[str]:
    problems = []
    dockerfile = dockerfile_path(service, root)
    if not dockerfile.is_file():
        problems.append(f"{name}: Dockerfile {dockerfile} does not exist")
    files = env_files(service)
    if not files:
        problems.append(f"{name}: no env_file")
    problems += [
        f"{name}: env_file {path} does not exist" for path in files if not (root / path).is_file()
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


def check(path: Path) -> list[str]:
    """Every problem found in the compose file (empty when it is fine)."""
    document = yaml.safe_load(path.read_text())
    if not isinstance(document, dict) or not isinstance(document.get("services"), dict):
        return [f"{path}: no services mapping"]
    problems: list[str] = []
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
    print(f"compose check: {args.file} follows the house rules")


if __name__ == "__main__":
    main()
