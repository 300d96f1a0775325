"""The GraphiQL browser test where chromium is missing: skipped with a one-line reason, but a
failure in CI (`CI` set); either way decided before any fleet is started."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e import test_graphiql_browser as browser
from tests.fixtures.tools import in_ci

ROOT = Path(__file__).resolve().parents[2]
SUMMARY_TIMEOUT_SECONDS = 120


def run_browser_test(tmp_path: Path, ci: str | None) -> str:
    """pytest on the browser test with chromium named somewhere it is not."""
    env = {key: value for key, value in os.environ.items() if key != "CI"}
    env["CHROMIUM_PATH"] = str(tmp_path / "no-chromium")
    if ci is not None:
        env["CI"] = ci
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-rs",
            "-p",
            "no:cacheprovider",
            "tests/e2e/test_graphiql_browser.py",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=SUMMARY_TIMEOUT_SECONDS,
        check=False,
    )
    return result.stdout


def test_without_chromium_the_browser_test_is_skipped_with_its_reason(tmp_path: Path) -> None:
    output = run_browser_test(tmp_path, ci=None)
    assert re.search(r"^1 passed, 1 skipped", output, re.MULTILINE), output
    reason = browser.missing_browser(tmp_path / "no-chromium")
    assert reason is not None and "\n" not in reason
    assert reason in output


def test_without_chromium_ci_fails(tmp_path: Path) -> None:
    output = run_browser_test(tmp_path, ci="true")
    assert re.search(r"^1 failed, 1 skipped", output, re.MULTILINE), output
    assert "(required in CI)" in output


@pytest.mark.parametrize(
    ("value", "expected"),
    [("true", True), ("1", True), ("", False), ("false", False), (None, False)],
)
def test_ci_is_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, value: str | None, expected: bool
) -> None:
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    assert in_ci() is expected
