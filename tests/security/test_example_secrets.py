"""No example secret runs (issue 13): every service refuses to start with a secret copied from a
`.env.example`, the Makefile's compose-check placeholder or another known placeholder, and says
what to do; the local stack replaces such a value with one it generates."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from notification_service.settings import NotificationSettings
from shared.settings import RANDOM_KEY_COMMAND, placeholder_marker
from tests.fixtures.parts import TEST_JWT_SECRET
from tests.unit.test_env_examples import SERVICES, settings_class
from tests.unit.test_stack_launcher import environment_of

ROOT = Path(__file__).resolve().parents[2]
SECRET_LINE = re.compile(r"^#?\s*JWT_SECRET=(\S+)", flags=re.MULTILINE)
TELLS_WHAT_TO_DO = "set it to a random secret"


def example_secrets() -> list[str]:
    """Every JWT_SECRET value written in the repository's examples and its Makefile."""
    found = set()
    for example in ROOT.glob("*/.env.example"):
        found.update(SECRET_LINE.findall(example.read_text()))
    found.update(re.findall(r"JWT_SECRET \?= (\S+)", (ROOT / "Makefile").read_text()))
    return sorted(found)


def test_the_examples_are_found() -> None:
    secrets = example_secrets()
    assert len(secrets) >= 2
    assert any(secret.startswith("change-me") for secret in secrets)


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("secret", example_secrets())
def test_every_service_refuses_an_example_secret(service: str, secret: str) -> None:
    with pytest.raises(ValidationError, match=TELLS_WHAT_TO_DO) as refused:
        settings_class(service)(_env_file=None, jwt_secret=secret)
    assert "JWT_SECRET is an example placeholder" in str(refused.value)
    assert RANDOM_KEY_COMMAND in str(refused.value)


@pytest.mark.parametrize(
    "secret",
    ["CHANGE_ME" + "x" * 40, "replace-me-with-32-random-characters-please", "your-secret-" * 4],
)
def test_known_placeholders_are_refused_whatever_their_case(secret: str) -> None:
    assert placeholder_marker(secret) is not None
    with pytest.raises(ValidationError, match=TELLS_WHAT_TO_DO):
        settings_class("order_service")(_env_file=None, jwt_secret=secret)


def test_every_secret_setting_is_checked_not_only_the_token_key() -> None:
    with pytest.raises(ValidationError, match="SMTP_PASSWORD is an example placeholder"):
        NotificationSettings(
            _env_file=None, jwt_secret=TEST_JWT_SECRET, smtp_password=SecretStr("change-me")
        )


def test_random_secrets_are_accepted() -> None:
    for service in SERVICES:
        settings = settings_class(service)(_env_file=None, jwt_secret=TEST_JWT_SECRET)
        assert settings.jwt_secret.get_secret_value() == TEST_JWT_SECRET


def test_a_service_started_with_the_example_secret_exits_and_says_what_to_do(
    tmp_path: Path,
) -> None:
    secret = next(s for s in example_secrets() if s.startswith("change-me"))
    env = {**os.environ, "JWT_SECRET": secret, "PORT": "1", "PYTHONPATH": str(ROOT)}
    started = subprocess.run(
        [sys.executable, "-m", "order_service"],
        env=env,
        cwd=tmp_path,  # no .env here
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert started.returncode != 0
    assert "JWT_SECRET is an example placeholder" in started.stderr
    assert RANDOM_KEY_COMMAND in started.stderr


def test_the_local_stack_replaces_a_placeholder_with_a_secret_of_its_own() -> None:
    secret = environment_of({"JWT_SECRET": example_secrets()[0]})["JWT_SECRET"]
    assert secret != example_secrets()[0]
    assert placeholder_marker(secret) is None
    assert len(secret) >= 32
