"""Secrets stay out of the repository: every `.env` is ignored by git (`.env.example` is not)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from devstack.apidocs import REPO_ROOT
from devstack.config import FLEET

SERVICES = tuple(spec.name for spec in FLEET)


def ignored(path: str) -> bool:
    git = shutil.which("git")
    if git is None or not (REPO_ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    result = subprocess.run(  # noqa: S603 - git with fixed arguments
        [git, "check-ignore", "--quiet", "--no-index", path], cwd=REPO_ROOT, check=False
    )
    return result.returncode == 0


@pytest.mark.parametrize("folder", [".", *SERVICES])
def test_env_files_are_ignored_and_examples_are_not(folder: str) -> None:
    assert ignored(f"{folder}/.env")
    assert not ignored(f"{folder}/.env.example")
