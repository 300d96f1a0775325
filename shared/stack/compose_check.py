"""A structural check of docker-compose.yml for machines without `docker compose`.

python -m shared.stack.compose_check docker-compose.yml

Every service needs an image or a build, and a healthcheck; every service built from this
repository needs an env_file (that exists), a Dockerfile (that exists) and no container_name;
every `depends_on` names a service of the file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _env_files(service: dict[str, Any]) -> list[str]:
    files = []
    for item in _as_list(service.get("env_file")):
        files.append(item["path"] if isinstance(item, dict) else str(item))
    return files


def _check_build(name: str, service: dict[str, Any], root: Path) -> list[str]:
    problems = []
    build = service["build"]
    context = root / (build if isinstance(build, str) else build.get("context", "."))
    dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
    if not (context / dockerfile).is_file():
        problems.append(f"{name}: Dockerfile {context / dockerfile} does not exist")
    env_files = _env_files(service)
    if not env_files:
        problems.append(f"{name}: no env_file")
    problems += [
        f"{name}: env_file {path} does not exist"
        for path in env_files
        if not (root / path).is_file()
    ]
    if "container_name" in service:
        problems.append(f"{name}: container_name prevents scaling; remove it")
    return problems


def check(path: Path) -> list[str]:
    """Every problem found in the compose file (empty when it is fine)."""
    document = yaml.safe_load(path.read_text())
    if not isinstance(document, dict) or not isinstance(document.get("services"), dict):
        return [f"{path}: no services mapping"]
    services: dict[str, Any] = document["services"]
    root = path.parent
    problems: list[str] = []
    for name, service in services.items():
        if not isinstance(service, dict):
            problems.append(f"{name}: not a mapping")
            continue
        if "image" not in service and "build" not in service:
            problems.append(f"{name}: neither image nor build")
        healthcheck = service.get("healthcheck")
        if not isinstance(healthcheck, dict) or not healthcheck.get("test"):
            problems.append(f"{name}: no healthcheck")
        if "build" in service:
            problems += _check_build(name, service, root)
        depends = service.get("depends_on") or {}
        for dependency in depends if isinstance(depends, list | dict) else []:
            if dependency not in services:
                problems.append(f"{name}: depends_on unknown service {dependency!r}")
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
    print(f"compose check: {args.file} is valid (structural check; docker compose not installed)")


if __name__ == "__main__":
    main()
