"""The fleet supervisor behind `make run`: starts the embedded parts, then the kafka admin service,
waits until every topic exists, then the other services together; streams their output; stops
everything on Ctrl-C/SIGTERM, or when one of them dies.

It exists (instead of honcho or a Procfile) because start-up must follow readiness: consumers may
only start once the admin service has created every topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

from devstack.config import (
    ADMIN,
    DEFAULT_KAFKA_PORT,
    DEFAULT_MAIL_PAGE_PORT,
    DEFAULT_REDIS_PORT,
    DEFAULT_SMTP_PORT,
    READY_POLL_INTERVAL_SECONDS,
    READY_REQUEST_TIMEOUT_SECONDS,
    REPO_ROOT,
    StackOptions,
    new_jwt_secret,
)
from devstack.output import Console
from devstack.parts import (
    LOOPBACK,
    EmbeddedPart,
    start_broker,
    start_redis,
    start_smtp_sink,
)
from devstack.ports import PortPlan, StackError
from fleet.demo import DEMO_ADMIN_EMAIL
from shared.services import GATEWAY, Service
from shared.settings import placeholder_marker

STACK = "stack"
_PIPE = subprocess.PIPE
_LINE_LIMIT = 1 << 20  # a JSON log line with a traceback can be long
_READER_DRAIN_SECONDS = 1.0
# A variable in the developer's shell that would make every child misbehave the same way.
_NOT_PASSED_THROUGH = ("SERVICE_NAME",)
# Ctrl-C, a stop request, and the terminal going away all stop the fleet cleanly.
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


# Fetch wait of every consumer on the embedded broker: each hop of an event chain (order ->
# user -> notification -> gateway) waits up to this long (50 ms: p99 order-to-notification
# 74 ms at 50 orders/s, against 511 ms at Kafka's default 500; about 10% more idle CPU).
TANSU_FETCH_MAX_WAIT_MS = 50
# ... so an idle consumer would fetch 20 times a second: it dozes after this long instead and
# is woken through Redis (shared/wakeups.py).
TANSU_IDLE_AFTER_SECONDS = 2


@dataclass
class Child:
    """A running service: its process (leader of its own process group) and address."""

    spec: Service
    port: int
    process: asyncio.subprocess.Process
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The service's name (its package)."""
        return self.spec.name

    @property
    def base_url(self) -> str:
        """Where the service answers."""
        return f"http://{LOOPBACK}:{self.port}"

    def signal_group(self, sig: signal.Signals) -> None:
        """Send a signal to the service and anything it started."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, sig)


class Supervisor:
    """Runs the fleet until a signal or a failure; `run()` returns the exit code."""

    def __init__(self, options: StackOptions, console: Console | None = None) -> None:
        self.options = options
        self.console = console or Console(
            [STACK, "kafka", "redis", "smtp", *(s.name for s in options.services)]
        )
        self.ports = PortPlan(options.free_ports)
        self.parts: list[EmbeddedPart] = []
        self.children: list[Child] = []
        self.env: dict[str, str] = {}
        self.kafka = ""
        self.redis = ""
        self.smtp = ""
        self.mail_page: str | None = None
        self.mail_dir: Path | None = None
        self._service_ports: dict[str, int] = {}
        self._stop = asyncio.Event()
        self._force = asyncio.Event()
        self._stopping = False
        self._failure: str | None = None
        self._part_readers: list[threading.Thread] = []
        self._parts_starting: asyncio.Future[list[Any]] | None = None

    # -- entry point -------------------------------------------------------------------------

    async def run(self) -> int:
        """Start everything, wait for a stop request or a failure, stop everything."""
        loop = asyncio.get_running_loop()
        for sig in _STOP_SIGNALS:
            loop.add_signal_handler(sig, self._on_signal, sig)
        started = time.monotonic()
        try:
            startup = asyncio.create_task(self._start_all())
            stop = asyncio.create_task(self._stop.wait())
            done, _ = await asyncio.wait({startup, stop}, return_when=asyncio.FIRST_COMPLETED)
            if startup in done:
                stop.cancel()
                error = startup.exception()
                if error is not None:
                    self._fail(str(error))
                else:
                    self._announce(time.monotonic() - started)
                    await self._stop.wait()
            else:
                startup.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await startup
        finally:
            await self._shutdown()
            for sig in _STOP_SIGNALS:
                loop.remove_signal_handler(sig)
        if self._failure:
            self.say(f"stopped because {self._failure}")
            return 1
        self.say("stopped")
        return 0

    def say(self, text: str) -> None:
        """A line from the launcher itself."""
        self.console.line(STACK, text)

    def _on_signal(self, sig: signal.Signals) -> None:
        if self._stop.is_set():
            self.say(f"{sig.name} again: killing everything now")
            self._force.set()
            return
        self.say(f"{sig.name} received: stopping the fleet")
        self._stop.set()

    def _fail(self, message: str) -> None:
        if self._failure is None and not self._stopping:
            self._failure = message
            self.console.line(STACK, f"ERROR: {message}")
        self._stop.set()

    # -- start-up ----------------------------------------------------------------------------

    async def _start_all(self) -> None:
        deadline = time.monotonic() + self.options.ready_timeout
        for spec in self.options.services:
            self._service_ports[spec.name] = self.ports.for_service(spec)
        await self._start_parts()
        self.env = self._child_environment()
        admin = await self._spawn(ADMIN)
        async with httpx.AsyncClient(timeout=READY_REQUEST_TIMEOUT_SECONDS) as client:
            await self._wait_ready(client, admin, deadline)
            self.say("every topic exists; starting the services")
            others = [await self._spawn(spec) for spec in self.options.services if spec != ADMIN]
            await asyncio.gather(*(self._wait_ready(client, c, deadline) for c in others))
        if self.options.state_file is not None:
            self._write_state(self.options.state_file)

    async def _start_parts(self) -> None:
        """Start the embedded broker, Redis and SMTP sink the environment does not replace."""
        starts: list[Callable[[], EmbeddedPart]] = []
        if self.options.kafka_broker:
            self.kafka = self.options.kafka_broker
        else:
            kafka_port = self.ports.for_part(DEFAULT_KAFKA_PORT)
            starts.append(lambda: start_broker(kafka_port, log=_PIPE))
        if self.options.redis_url:
            self.redis = self.options.redis_url
        else:
            redis_port = self.ports.for_part(DEFAULT_REDIS_PORT)
            starts.append(lambda: start_redis(redis_port, log=_PIPE))
        if not self.options.smtp_host:
            mail_dir = self.mail_dir = self.options.mail_dir.resolve()
            smtp_port = self.ports.for_part(DEFAULT_SMTP_PORT)
            page_port = self.ports.for_part(DEFAULT_MAIL_PAGE_PORT)
            starts.append(
                lambda: start_smtp_sink(mail_dir, smtp_port, log=_PIPE, page_port=page_port)
            )

        def start_and_keep(start: Callable[[], EmbeddedPart]) -> EmbeddedPart:
            part = start()
            self.parts.append(part)  # at once: a stop request now must stop it too
            return part

        # Shielded: a Ctrl-C during these few hundred milliseconds waits for the starts to end,
        # so that every part started is known, and stopped.
        self._parts_starting = asyncio.gather(
            *(asyncio.to_thread(start_and_keep, start) for start in starts),
            return_exceptions=True,
        )
        results = await asyncio.shield(self._parts_starting)
        errors = [r for r in results if isinstance(r, BaseException)]
        for part in self.parts:
            self._stream_part(part)
            if part.name == "kafka":
                self.kafka = part.url
            elif part.name == "redis":
                self.redis = part.url
            elif part.name == "smtp":
                self.smtp = part.url
                self.mail_page = part.page_url
        if errors:
            raise StackError(f"an embedded part did not start: {errors[0]}")

    def _stream_part(self, part: EmbeddedPart) -> None:
        """Print the part's output; a part that dies while the fleet runs stops the fleet."""
        process = part.process
        if process is None or process.stdout is None:
            return
        stdout: IO[bytes] = process.stdout
        loop = asyncio.get_running_loop()

        def pump() -> None:
            for raw in iter(stdout.readline, b""):
                self.console.raw_line(part.name, raw)
            code = process.wait()
            if not self._stopping:
                with contextlib.suppress(RuntimeError):  # the loop is already closed
                    loop.call_soon_threadsafe(
                        self._fail, f"the embedded {part.name} exited unexpectedly with code {code}"
                    )

        thread = threading.Thread(target=pump, name=f"output:{part.name}", daemon=True)
        thread.start()
        self._part_readers.append(thread)

    def _child_environment(self) -> dict[str, str]:
        """The environment passes through; the stack adds where the parts and services are."""
        env = dict(self.options.environ)
        for name in _NOT_PASSED_THROUGH:
            env.pop(name, None)
        env.setdefault("MONGO_URI", "memory://")
        if not env.get("JWT_SECRET") or placeholder_marker(env["JWT_SECRET"]):
            # The stack sets it: an example placeholder would be refused by every service.
            env["JWT_SECRET"] = new_jwt_secret()
        env["KAFKA_BROKER"] = self.kafka
        if not self.options.kafka_broker:
            # The embedded Tansu holds each fetch for its whole wait, even once data is there.
            env.setdefault("KAFKA_FETCH_MAX_WAIT_MS", str(TANSU_FETCH_MAX_WAIT_MS))
            env.setdefault("KAFKA_IDLE_AFTER_SECONDS", str(TANSU_IDLE_AFTER_SECONDS))
        env["REDIS_URL"] = self.redis
        if self.smtp:
            host, port = self.smtp.rsplit(":", 1)
            env["SMTP_HOST"] = host
            env["SMTP_PORT"] = port
        for spec in self.options.services:
            env[spec.url_env] = f"http://{LOOPBACK}:{self._service_ports[spec.name]}"
        if GATEWAY.name in self._service_ports and not env.get("PUBLIC_BASE_URL"):
            env["PUBLIC_BASE_URL"] = env[GATEWAY.url_env]
        if not env.get("ADMIN_EMAILS"):
            # `make demo`'s admin becomes admin once it follows its welcome link (docs/demo.md).
            env["ADMIN_EMAILS"] = DEMO_ADMIN_EMAIL
        env["HOST"] = LOOPBACK
        env["PYTHONUNBUFFERED"] = "1"
        if self.console.is_terminal and not env.get("LOG_FORMAT"):
            # The children write to our pipe, not the terminal: tell them a person reads it.
            env["LOG_FORMAT"] = "console"
            env.setdefault("FORCE_COLOR", "1")
        return env

    async def _spawn(self, spec: Service) -> Child:
        port = self._service_ports[spec.name]
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            spec.name,
            cwd=REPO_ROOT,
            env={**self.env, "PORT": str(port)},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the terminal's Ctrl-C is ours
            limit=_LINE_LIMIT,
        )
        child = Child(spec, port, process)
        child.tasks = [
            asyncio.create_task(self._pump(child), name=f"output:{spec.name}"),
            asyncio.create_task(self._watch(child), name=f"watch:{spec.name}"),
        ]
        self.children.append(child)
        self.say(f"started {spec.name} (pid {process.pid}) on {child.base_url}")
        return child

    async def _pump(self, child: Child) -> None:
        stream = child.process.stdout
        assert stream is not None
        while True:
            try:
                raw = await stream.readline()
            except ValueError:
                self.console.line(child.name, "[a line longer than 1 MiB was dropped]")
                continue
            if not raw:
                return
            self.console.raw_line(child.name, raw)

    async def _watch(self, child: Child) -> None:
        code = await child.process.wait()
        if not self._stopping:
            self._fail(f"{child.name} exited unexpectedly with code {code}")

    async def _wait_ready(self, client: httpx.AsyncClient, child: Child, deadline: float) -> None:
        """Poll `/ready` until it answers 200, the child dies, or the deadline passes."""
        last = "no answer"
        while time.monotonic() < deadline:
            if child.process.returncode is not None:
                raise StackError(
                    f"{child.name} exited with code {child.process.returncode} before it was ready"
                )
            try:
                response = await client.get(f"{child.base_url}/ready")
            except httpx.HTTPError as exc:
                last = type(exc).__name__
            else:
                if response.status_code == httpx.codes.OK:
                    self.say(f"{child.name} is ready")
                    return
                last = f"{response.status_code} {response.text[:300]}"
            await asyncio.sleep(READY_POLL_INTERVAL_SECONDS)
        raise StackError(
            f"{child.name} was not ready within {self.options.ready_timeout:g} s "
            f"(last answer: {last})"
        )

    # -- once ready --------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """What a test or a tool needs to reach the running fleet."""
        services = {child.name: child.base_url for child in self.children}
        gateway = services.get(GATEWAY.name)
        return {
            "services": services,
            "graphql": f"{gateway}/graphql" if gateway else None,
            "mail_dir": str(self.mail_dir) if self.mail_dir else None,
            "mail_page": self.mail_page,
            "smtp": self.smtp or None,
            "kafka": self.kafka,
            "redis": self.redis,
            "pids": {
                **{child.name: child.process.pid for child in self.children},
                **{p.name: p.process.pid for p in self.parts if p.process is not None},
            },
            "supervisor_pid": os.getpid(),
        }

    def _write_state(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".part")
        partial.write_text(json.dumps(self.state(), indent=2))
        partial.replace(path)

    def _announce(self, elapsed: float) -> None:
        embedded = {part.name for part in self.parts}

        def origin(name: str) -> str:
            return "embedded" if name in embedded else "from the environment"

        rows: list[tuple[str, str]] = []
        state = self.state()
        if state["graphql"]:
            rows.append(("GraphiQL", state["graphql"]))
        rows += [(child.name, child.base_url) for child in self.children]
        if self.mail_page:
            rows.append(("mail", self.mail_page))
        rows.append(
            ("mail folder", str(self.mail_dir) if self.mail_dir else "none (SMTP_HOST is set)")
        )
        rows.append(("kafka", f"{self.kafka} ({origin('kafka')})"))
        rows.append(("redis", f"{self.redis} ({origin('redis')})"))
        width = max(len(label) for label, _ in rows)
        lines = [f"  {label:<{width}}  {value}" for label, value in rows]
        self.console.block(
            "\n".join(
                [
                    "",
                    f"  The fleet is ready ({elapsed:.1f} s). Ctrl-C stops everything.",
                    "",
                    *lines,
                    "",
                ]
            )
        )

    # -- shutdown ----------------------------------------------------------------------------

    async def _shutdown(self) -> None:
        self._stopping = True
        alive = [c for c in self.children if c.process.returncode is None]
        for child in alive:
            child.signal_group(signal.SIGTERM)
        if alive:
            exited: asyncio.Future[Any] = asyncio.gather(*(c.process.wait() for c in alive))
            forced: asyncio.Future[Any] = asyncio.ensure_future(self._force.wait())
            await asyncio.wait(
                [exited, forced],
                timeout=self.options.stop_grace,
                return_when=asyncio.FIRST_COMPLETED,
            )
            forced.cancel()
        for child in self.children:
            if child.process.returncode is None:
                self.say(f"{child.name} did not stop in time; killing it")
            # Also reaps anything a service started and left in its group.
            child.signal_group(signal.SIGKILL)
        await asyncio.gather(*(c.process.wait() for c in self.children))
        tasks = [task for child in self.children for task in child.tasks]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=_READER_DRAIN_SECONDS)
            for task in pending:
                task.cancel()
        if self._parts_starting is not None:
            await self._parts_starting
        await asyncio.gather(
            *(asyncio.to_thread(part.stop) for part in self.parts), return_exceptions=True
        )
        for thread in self._part_readers:
            thread.join(timeout=_READER_DRAIN_SECONDS)
        if self.options.state_file is not None:
            self.options.state_file.unlink(missing_ok=True)
