"""The launcher's decisions that need no process: options, ports, and each child's environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from devstack.__main__ import parse_options
from devstack.config import ADMIN, FLEET, StackOptions, fleet_named
from devstack.supervisor import TANSU_FETCH_MAX_WAIT_MS, TANSU_IDLE_AFTER_SECONDS, Supervisor
from fleet.demo import DEMO_ADMIN_EMAIL
from shared.services import GATEWAY


def environment_of(environ: dict[str, str], *, smtp: str = "127.0.0.1:2525") -> dict[str, str]:
    supervisor = Supervisor(StackOptions(environ=environ))
    supervisor.kafka = "127.0.0.1:9092"
    supervisor.redis = "redis://127.0.0.1:6379/0"
    supervisor.smtp = smtp
    supervisor._service_ports = {spec.name: spec.port for spec in FLEET}
    return supervisor._child_environment()


def test_defaults_fill_in_what_the_environment_does_not_name() -> None:
    env = environment_of({"PATH": "/bin"})
    assert env["PATH"] == "/bin"
    assert env["MONGO_URI"] == "memory://"
    assert len(env["JWT_SECRET"]) >= 32
    assert env["KAFKA_BROKER"] == "127.0.0.1:9092"
    assert env["REDIS_URL"] == "redis://127.0.0.1:6379/0"
    assert (env["SMTP_HOST"], env["SMTP_PORT"]) == ("127.0.0.1", "2525")
    assert env["HOST"] == "127.0.0.1"
    assert env["USER_SERVICE_URL"] == "http://127.0.0.1:5000"
    assert env["PUBLIC_BASE_URL"] == env[GATEWAY.url_env] == "http://127.0.0.1:4000"
    # The demo's admin (make demo) may become admin: nobody else is named.
    assert env["ADMIN_EMAILS"] == DEMO_ADMIN_EMAIL == "admin@demo.fleet"


def test_every_service_gets_the_same_random_secret_per_stack() -> None:
    first = environment_of({})["JWT_SECRET"]
    assert first != environment_of({})["JWT_SECRET"]


def test_what_the_environment_names_passes_through() -> None:
    env = environment_of(
        {
            "MONGO_URI": "mongodb://db:27017",
            "JWT_SECRET": "x" * 40,
            "SMTP_HOST": "mail.example.com",
            "SMTP_PORT": "587",
            "PUBLIC_BASE_URL": "https://shop.example.com",
            "ADMIN_EMAILS": "boss@example.com",
            "CATALOG_URL": "https://catalog.example.com/products",
            "HOST": "localhost",
            "SERVICE_NAME": "everyone",
        },
        smtp="",
    )
    assert env["MONGO_URI"] == "mongodb://db:27017"
    assert env["JWT_SECRET"] == "x" * 40
    assert (env["SMTP_HOST"], env["SMTP_PORT"]) == ("mail.example.com", "587")
    assert env["PUBLIC_BASE_URL"] == "https://shop.example.com"
    assert env["ADMIN_EMAILS"] == "boss@example.com"
    assert env["CATALOG_URL"] == "https://catalog.example.com/products"
    # Services bind loopback, and each keeps its own name.
    assert env["HOST"] == "127.0.0.1"
    assert "SERVICE_NAME" not in env


def test_the_embedded_broker_gets_a_short_fetch_wait_and_a_named_one_keeps_kafkas() -> None:
    assert environment_of({})["KAFKA_FETCH_MAX_WAIT_MS"] == str(TANSU_FETCH_MAX_WAIT_MS)
    assert environment_of({})["KAFKA_IDLE_AFTER_SECONDS"] == str(TANSU_IDLE_AFTER_SECONDS)
    assert environment_of({"KAFKA_FETCH_MAX_WAIT_MS": "200"})["KAFKA_FETCH_MAX_WAIT_MS"] == "200"
    # Apache Kafka answers a fetch as soon as data arrives: its default (500) stays.
    assert "KAFKA_FETCH_MAX_WAIT_MS" not in environment_of({"KAFKA_BROKER": "kafka:9092"})
    assert "KAFKA_IDLE_AFTER_SECONDS" not in environment_of({"KAFKA_BROKER": "kafka:9092"})


def test_named_parts_replace_the_embedded_ones() -> None:
    options = StackOptions(
        environ={"KAFKA_BROKER": "k:9092", "REDIS_URL": "redis://r/0", "SMTP_HOST": "m"}
    )
    assert options.kafka_broker == "k:9092"
    assert options.redis_url == "redis://r/0"
    assert options.smtp_host == "m"
    empty = StackOptions(environ={"KAFKA_BROKER": ""})
    assert (empty.kafka_broker, empty.redis_url, empty.smtp_host) == (None, None, None)


def test_options_from_the_command_line(tmp_path: Path) -> None:
    options = parse_options(
        [
            "--free-ports",
            "--state-file",
            str(tmp_path / "state.json"),
            "--mail-dir",
            str(tmp_path / "mail"),
            "--ready-timeout",
            "12.5",
            "--services",
            "order_service, graphql_gateway",
        ]
    )
    assert options.free_ports
    assert options.state_file == tmp_path / "state.json"
    assert options.mail_dir == tmp_path / "mail"
    assert options.ready_timeout == 12.5
    assert [s.name for s in options.services] == [ADMIN.name, "order_service", GATEWAY.name]
    defaults = parse_options([])
    assert defaults.services == FLEET
    assert not defaults.free_ports
    assert defaults.state_file is None


@pytest.mark.parametrize("argv", [["--services", "billing_service"], ["--ready-timeout", "0"]])
def test_bad_options_are_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        parse_options(argv)


def test_the_admin_service_always_starts_first() -> None:
    assert FLEET[0] == ADMIN
    assert fleet_named(["scheduler_service"])[0] == ADMIN
    assert len({spec.port for spec in FLEET}) == len(FLEET)


class _Terminal:
    """A stream that says a person is reading it."""

    def __init__(self) -> None:
        self.text = ""

    def isatty(self) -> bool:
        return True

    def write(self, text: str) -> None:
        self.text += text

    def flush(self) -> None:
        pass


def test_on_a_terminal_the_services_log_readable_lines_unless_told_otherwise() -> None:
    from devstack.output import Console

    def environment_on_terminal(environ: dict[str, str]) -> dict[str, str]:
        supervisor = Supervisor(StackOptions(environ=environ), Console(["stack"], _Terminal()))
        supervisor._service_ports = {spec.name: spec.port for spec in FLEET}
        return supervisor._child_environment()

    assert environment_on_terminal({})["LOG_FORMAT"] == "console"
    assert environment_on_terminal({"LOG_FORMAT": "json"})["LOG_FORMAT"] == "json"
    # Piped (CI, a file): the services decide for themselves, which means JSON.
    assert "LOG_FORMAT" not in environment_of({})
