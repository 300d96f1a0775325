"""Which port each service and part of the local stack listens on, chosen before anything starts."""

from __future__ import annotations

import socket

from devstack.parts import LOOPBACK, free_port
from shared.services import Service


class StackError(RuntimeError):
    """The fleet could not be started (a port taken, a service died, a deadline passed)."""


def port_is_free(port: int) -> bool:
    """Whether nothing listens on the loopback port (it can be bound right now)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As servers do: a port whose last connections linger in TIME_WAIT is free to listen on.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


class PortPlan:
    """Chooses every port before anything starts, so no two parts pick the same one."""

    def __init__(self, free_ports: bool) -> None:
        self._free_ports = free_ports
        self._taken: set[int] = set()

    def _fresh(self) -> int:
        while (port := free_port()) in self._taken:
            continue
        self._taken.add(port)
        return port

    def for_part(self, default: int) -> int:
        """The part's usual port when it is free, else any free one."""
        if not self._free_ports and default not in self._taken and port_is_free(default):
            self._taken.add(default)
            return default
        return self._fresh()

    def for_service(self, spec: Service) -> int:
        """The contract port (it must be free), or any free one with --free-ports."""
        if self._free_ports:
            return self._fresh()
        if not port_is_free(spec.port):
            raise StackError(
                f"port {spec.port} for {spec.name} is already in use; stop what listens there "
                "or start the stack on free ports (make run ARGS=--free-ports)"
            )
        self._taken.add(spec.port)
        return spec.port
