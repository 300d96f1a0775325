"""What uv.lock says: whether it still matches pyproject.toml, and which packages a given install
(the runtime set, a dependency group, an image's `uv export`) brings in.

python -m devstack.lockfile            # the packages of each group, from uv.lock

Read with the standard library and `packaging` only, so a test can check the lock and the
images without uv or a network. `make lock` rewrites the lock (see the Makefile).
"""

from __future__ import annotations

import re
import shlex
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.markers import Marker
from packaging.requirements import Requirement

RUNTIME = "runtime"  # the project's own `dependencies`, next to the dependency groups
LOCK_COMMAND = "make lock"
# The machine of an image (python:3.11 on Linux), as PEP 508 marker variables.
LINUX = {
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "platform_python_implementation": "CPython",
    "implementation_name": "cpython",
    "os_name": "posix",
    "python_version": "3.11",
    "python_full_version": "3.11.14",
}


def normalize(name: str) -> str:
    """A distribution name as the lock writes it (PEP 503: lower case, runs of -_. as -)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_key(name: str, extras: Iterable[str], specifier: str, marker: str) -> str:
    extra = f"[{','.join(sorted(normalize(item) for item in extras))}]" if extras else ""
    spec = ",".join(sorted(str(specifier).split(","))) if specifier else ""
    return f"{normalize(name)}{extra}{spec}" + (f"; {marker}" if marker else "")


def pyproject_requirements(pyproject: Mapping[str, Any]) -> dict[str, set[str]]:
    """Each group's requirements in pyproject.toml (RUNTIME: `[project] dependencies`)."""
    groups = {RUNTIME: list(pyproject["project"].get("dependencies", []))}
    groups |= {name: list(items) for name, items in pyproject.get("dependency-groups", {}).items()}
    result: dict[str, set[str]] = {}
    for group, items in groups.items():
        keys = set()
        for item in items:
            if isinstance(item, dict):  # {include-group = "..."}: the lock lists it expanded
                continue
            requirement = Requirement(item)
            marker = str(requirement.marker) if requirement.marker else ""
            keys.add(
                _requirement_key(
                    requirement.name, requirement.extras, str(requirement.specifier), marker
                )
            )
        result[group] = keys
    return result


@dataclass(frozen=True)
class Lock:
    """uv.lock, parsed."""

    document: dict[str, Any]

    @classmethod
    def read(cls, path: Path) -> Lock:
        """The lock file at `path`."""
        with path.open("rb") as file:
            return cls(tomllib.load(file))

    def root(self, project: str) -> dict[str, Any]:
        """The project's own entry (its requirements as they were when locked)."""
        for package in self.document["package"]:
            if package["name"] == normalize(project):
                return dict(package)
        raise KeyError(f"{project} is not in the lock")

    def locked_requirements(self, project: str) -> dict[str, set[str]]:
        """Each group's requirements as pyproject.toml had them when the lock was written."""
        metadata = self.root(project).get("metadata", {})
        groups = {RUNTIME: metadata.get("requires-dist", [])}
        groups |= metadata.get("requires-dev", {})
        return {
            group: {
                _requirement_key(
                    item["name"],
                    item.get("extras", []),
                    item.get("specifier", ""),
                    item.get("marker", ""),
                )
                for item in items
            }
            for group, items in groups.items()
        }

    def _package(self, name: str, version: str | None) -> dict[str, Any]:
        found = [
            package
            for package in self.document["package"]
            if package["name"] == name and (version is None or package.get("version") == version)
        ]
        if len(found) != 1:
            raise KeyError(f"{name} {version or ''}: {len(found)} entries in the lock")
        return dict(found[0])

    def packages(
        self, project: str, groups: Iterable[str], environment: Mapping[str, str]
    ) -> set[str]:
        """Every distribution an install of `groups` (RUNTIME and/or dependency groups) takes
        from the lock on a machine described by `environment` (PEP 508 marker variables)."""
        root = self.root(project)
        wanted: list[dict[str, Any]] = []
        for group in groups:
            if group == RUNTIME:
                wanted += root.get("dependencies", [])
            else:
                wanted += root.get("dev-dependencies", {}).get(group, [])
        found: set[str] = set()
        seen: set[tuple[str, str | None, str]] = set()
        while wanted:
            item = wanted.pop()
            if "marker" in item and not Marker(item["marker"]).evaluate(dict(environment)):
                continue
            extras = item.get("extra", [])
            key = (item["name"], item.get("version"), ",".join(extras))
            if key in seen:
                continue
            seen.add(key)
            package = self._package(item["name"], item.get("version"))
            found.add(package["name"])
            wanted += package.get("dependencies", [])
            for extra in extras:
                wanted += package.get("optional-dependencies", {}).get(extra, [])
        return found - {normalize(project)}


def disagreements(pyproject_path: Path, lock_path: Path) -> list[str]:
    """How pyproject.toml's requirements differ from those the lock was written for."""
    with pyproject_path.open("rb") as file:
        pyproject = tomllib.load(file)
    project = pyproject["project"]["name"]
    lock = Lock.read(lock_path)
    wanted = pyproject_requirements(pyproject)
    locked = lock.locked_requirements(project)
    problems = []
    for group in sorted(set(wanted) | set(locked)):
        for item in sorted(wanted.get(group, set()) - locked.get(group, set())):
            problems.append(f"{group}: {item} is in pyproject.toml, not in the lock")
        for item in sorted(locked.get(group, set()) - wanted.get(group, set())):
            problems.append(f"{group}: {item} is in the lock, not in pyproject.toml")
    if lock.document.get("requires-python") != pyproject["project"].get("requires-python"):
        problems.append("requires-python differs")
    return problems


def export_groups(
    command: str, all_groups: Iterable[str], default_groups: Iterable[str]
) -> set[str]:
    """The groups (RUNTIME included or not) a `uv export` / `uv sync` command line installs."""
    words = shlex.split(command)
    groups = {RUNTIME, *default_groups}
    for index, word in enumerate(words):
        value = words[index + 1] if index + 1 < len(words) else ""
        if word == "--no-default-groups":
            groups -= set(default_groups)
        elif word == "--no-dev":
            groups.discard("dev")
        elif word == "--all-groups":
            groups |= set(all_groups)
        elif word == "--group":
            groups.add(value)
        elif word == "--no-group":
            groups.discard(value)
        elif word == "--only-group":
            groups = {value}
        elif word == "--only-dev":
            groups = {"dev"}
    return groups


def _main() -> None:
    root = Path.cwd()
    with (root / "pyproject.toml").open("rb") as file:
        project = tomllib.load(file)["project"]["name"]
    lock = Lock.read(root / "uv.lock")
    groups = [RUNTIME, *lock.root(project).get("dev-dependencies", {})]
    for group in groups:
        print(f"{group}: {' '.join(sorted(lock.packages(project, [group], LINUX)))}")


if __name__ == "__main__":
    _main()
