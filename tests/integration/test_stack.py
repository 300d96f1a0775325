"""The launcher (`python -m devstack`, what `make run` runs): it starts the fleet in order,
every service answers `/ready`, a signal stops everything, and a dying service stops the rest."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from devstack.config import ADMIN, FLEET
from devstack.parts import EmbeddedPart, broker_binary, start_broker
from devstack.ports import PortPlan, StackError
from shared.services import Service
from tests.fixtures.fleet import REPO_ROOT, launch_fleet

pytestmark = pytest.mark.integration

# What a crashed stack still has running after this long is a leak.
EXIT_DEADLINE_SECONDS = 12
FLEET_NAMES = (
    "kafka_admin_service",
    "user_service",
    "notification_service",
    "order_service",
    "recommendation_service",
    "scheduler_service",
    "graphql_gateway",
)


@pytest.fixture
def own_broker() -> Iterator[EmbeddedPart]:
    """A broker of this test's own (the fleet's consumer groups stay off the session broker)."""
    part = start_broker()
    try:
        yield part
    finally:
        part.stop()


def runs_the_broker_binary(proc: psutil.Process) -> bool:
    try:
        return any(Path(arg).name == Path(broker_binary()).name for arg in proc.cmdline())
    except psutil.Error:
        return False


def test_the_fleet_starts_on_a_given_broker_and_stops_on_sigint(
    tmp_path: Path, own_broker: EmbeddedPart
) -> None:
    fleet = launch_fleet(tmp_path, env={"KAFKA_BROKER": own_broker.url})
    try:
        state = fleet.state
        assert sorted(state["services"]) == sorted(FLEET_NAMES)
        assert state["graphql"] == f"{state['services']['graphql_gateway']}/graphql"
        # KAFKA_BROKER names a broker: every service uses it and none is embedded.
        assert state["kafka"] == own_broker.url
        assert "kafka" not in state["pids"]
        assert not [p for p in fleet.descendants if runs_the_broker_binary(p)]
        # The other parts are embedded.
        assert state["redis"].startswith("redis://127.0.0.1:")
        assert Path(state["mail_dir"]).is_dir()
        with httpx.Client(timeout=5) as client:
            for name, url in state["services"].items():
                assert url.startswith("http://127.0.0.1:"), name
                ready = client.get(f"{url}/ready")
                assert ready.status_code == 200, (name, ready.text)
                assert ready.json()["service"] == name
                assert client.get(f"{url}/health").status_code == 200
                assert client.get(f"{url}/metrics").status_code == 200
            # The sink's mail page answers where the table says.
            mail_page = client.get(state["mail_page"])
            assert mail_page.status_code == 200 and "Mail sent by the fleet" in mail_page.text
        launched = {p.pid for p in fleet.descendants}
        assert set(state["pids"].values()) <= launched

        assert fleet.stop(signal.SIGINT) == 0, fleet.log_tail()
        assert fleet.leftovers() == [], fleet.log_tail()
        assert not (tmp_path / "stack-state.json").exists()
    finally:
        fleet.kill_everything()


def test_a_service_that_dies_stops_the_whole_stack_with_an_error(tmp_path: Path) -> None:
    fleet = launch_fleet(tmp_path, services=["order_service"])
    try:
        # With nothing named by the environment, the broker is embedded.
        assert "kafka" in fleet.state["pids"]
        assert [p for p in fleet.descendants if runs_the_broker_binary(p)]
        psutil.Process(fleet.state["pids"]["order_service"]).kill()
        code = fleet.process.wait(timeout=EXIT_DEADLINE_SECONDS)
        assert code != 0
        assert "order_service exited unexpectedly" in fleet.log_tail()
        assert fleet.leftovers() == [], fleet.log_tail()
    finally:
        fleet.kill_everything()


def test_an_embedded_part_that_dies_stops_the_whole_stack(tmp_path: Path) -> None:
    fleet = launch_fleet(tmp_path, services=["order_service"])
    try:
        psutil.Process(fleet.state["pids"]["smtp"]).kill()
        assert fleet.process.wait(timeout=EXIT_DEADLINE_SECONDS) != 0
        assert "the embedded smtp exited unexpectedly" in fleet.log_tail()
        assert fleet.leftovers() == [], fleet.log_tail()
    finally:
        fleet.kill_everything()


def test_sigterm_stops_the_stack_cleanly(tmp_path: Path) -> None:
    fleet = launch_fleet(tmp_path, services=["scheduler_service"])
    try:
        assert sorted(fleet.state["services"]) == ["kafka_admin_service", "scheduler_service"]
        assert fleet.stop(signal.SIGTERM) == 0, fleet.log_tail()
        assert fleet.leftovers() == [], fleet.log_tail()
    finally:
        fleet.kill_everything()


def test_a_taken_port_is_reported_before_anything_starts() -> None:
    with contextlib.ExitStack() as stack:
        holder = stack.enter_context(socket.socket())
        with contextlib.suppress(OSError):  # taken already: the launcher must say so all the same
            holder.bind(("127.0.0.1", ADMIN.port))
            holder.listen()
        result = subprocess.run(
            [sys.executable, "-m", "devstack", "--services", "order_service"],
            cwd=REPO_ROOT,
            capture_output=True,
            timeout=30,
            check=False,
        )
    assert result.returncode != 0
    assert f"port {ADMIN.port} for kafka_admin_service is already in use".encode() in result.stdout


def test_free_ports_never_repeat() -> None:
    plan = PortPlan(free_ports=True)
    ports = [plan.for_service(spec) for spec in FLEET] + [plan.for_part(9092) for _ in range(3)]
    assert len(set(ports)) == len(ports)
    assert 9092 not in ports


def test_a_taken_contract_port_is_an_error_and_a_taken_part_port_moves() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        taken = sock.getsockname()[1]
        plan = PortPlan(free_ports=False)
        with pytest.raises(StackError, match=f"port {taken} for x is already in use") as refused:
            plan.for_service(Service("x", taken))
        # The way out it names is one a user can type.
        assert "make run ARGS=--free-ports" in str(refused.value)
        assert plan.for_part(taken) != taken


def test_make_run_passes_its_args_to_the_launcher() -> None:
    # The developer's make, as they would type it.
    command = ["make", "-n", "run", "ARGS=--free-ports --services order_service"]
    shown = subprocess.run(  # noqa: S603
        command,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert "-m devstack --free-ports --services order_service" in shown.stdout
