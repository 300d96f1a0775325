"""The `fleet` commands. Targets: the launcher's `--state-file` (FLEET_STATE_FILE) or the
contract's default ports on `--host`; the admin API's token: FLEET_TOKEN (an admin's JWT)."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console, Group
from rich.panel import Panel
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.syntax import Syntax
from rich.table import Table

from fleet.admin import TOKEN_ENV, AdminApiError, AdminClient, dlq_name
from fleet.demo import DemoError, DemoResult, run_demo
from fleet.probes import ServiceState, probe_all
from fleet.tail import TailedMessage, TopicNotFound, pretty_data, tail
from fleet.targets import DEFAULT_HOST, DEFAULT_MAIL_PAGE_PORT, Targets, resolve_targets

app = typer.Typer(
    help="Operate a running fleet: health, topics and lag, dead letters, a live topic tail, "
    "demo data.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
dlq_app = typer.Typer(
    help="Dead-letter topics: their depth, and replaying them.", no_args_is_help=True
)
app.add_typer(dlq_app, name="dlq")
users_app = typer.Typer(
    help="Accounts: grant or revoke the admin role (FLEET_TOKEN: an admin's token).",
    no_args_is_help=True,
)
app.add_typer(users_app, name="users")

T = TypeVar("T")
console = Console(highlight=False)
errors = Console(stderr=True, highlight=False)

StateFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--state-file",
        envvar="FLEET_STATE_FILE",
        help="The launcher's state file (python -m devstack --state-file); "
        "default: the contract's ports on --host.",
    ),
]
HostOpt = Annotated[str, typer.Option(help="Host of the services when no state file is given.")]
HttpTimeoutOpt = Annotated[
    float, typer.Option("--http-timeout", min=0.1, help="Seconds per HTTP request.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


def _targets(state_file: Path | None, host: str) -> Targets:
    try:
        return resolve_targets(state_file, host)
    except (OSError, ValueError, KeyError) as exc:
        errors.print(f"[red]Cannot read the state file {state_file}: {exc}[/red]")
        raise typer.Exit(2) from None


def _admin(targets: Targets, timeout: float) -> AdminClient:
    return AdminClient(targets.admin_url, os.environ.get(TOKEN_ENV), timeout)


def _fail(exc: Exception) -> typer.Exit:
    errors.print(f"[red]{exc}[/red]")
    return typer.Exit(1)


def _print_json(value: Any) -> None:
    console.print_json(json.dumps(value))


def _ask_admin(
    state_file: Path | None, host: str, http_timeout: float, call: Callable[[AdminClient], T]
) -> T:
    """One admin API call; its failure printed, exiting 1."""
    try:
        with _admin(_targets(state_file, host), http_timeout) as admin:
            return call(admin)
    except AdminApiError as exc:
        raise _fail(exc) from None


# -- status -------------------------------------------------------------------------------------


def _services_table(states: list[ServiceState]) -> Table:
    table = Table(title="Services")
    for column in ("service", "url", "health", "ready", "detail"):
        table.add_column(column)
    for s in states:
        table.add_row(
            s.name,
            s.url,
            "[green]ok[/green]" if s.healthy else "[red]down[/red]",
            "[green]yes[/green]" if s.ready else "[yellow]no[/yellow]",
            s.summary,
        )
    return table


def lag_by_group(rows: list[dict[str, Any]]) -> list[tuple[str, str, int]]:
    """Consumer-group rows summed over partitions: (group, topic, lag), sorted."""
    totals: dict[tuple[str, str], int] = defaultdict(int)
    for row in rows:
        totals[(str(row["group"]), str(row["topic"]))] += int(row.get("lag") or 0)
    return [(group, topic, lag) for (group, topic), lag in sorted(totals.items())]


def _lag_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="Consumer lag")
    table.add_column("group")
    table.add_column("topic")
    table.add_column("lag", justify="right")
    for group, topic, lag in lag_by_group(rows):
        table.add_row(group, topic, f"[yellow]{lag}[/yellow]" if lag else "0")
    return table


def _wait_until_ready(
    targets_of: Any, timeout: float, poll: float, http_timeout: float
) -> list[ServiceState]:
    """Poll every service with a progress display until all are ready or `timeout` passes."""
    deadline = time.monotonic() + timeout
    states: list[ServiceState] = []
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.fields[service]:<24}"),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        tasks: dict[str, Any] = {}
        while True:
            targets: Targets | None = targets_of()
            if targets is None:
                if "state" not in tasks:
                    tasks["state"] = progress.add_task(
                        "waiting for the launcher's state file", total=1, service="fleet"
                    )
            else:
                if "state" in tasks:
                    progress.update(tasks["state"], completed=1, description="state file found")
                states = probe_all(targets.services, http_timeout)
                for s in states:
                    if s.name not in tasks:
                        tasks[s.name] = progress.add_task("", total=1, service=s.name)
                    progress.update(
                        tasks[s.name],
                        description=s.summary,
                        completed=1 if s.ready else 0,
                    )
                if states and all(s.ready for s in states):
                    return states
            if time.monotonic() > deadline:
                return states
            time.sleep(poll)


@app.command()
def status(
    state_file: StateFileOpt = None,
    host: HostOpt = DEFAULT_HOST,
    wait: Annotated[
        bool, typer.Option("--wait", help="Show progress until every service is ready.")
    ] = False,
    timeout: Annotated[
        float, typer.Option(min=0, help="With --wait: give up after this many seconds.")
    ] = 120.0,
    poll: Annotated[
        float, typer.Option(min=0.05, help="With --wait: seconds between polls.")
    ] = 0.5,
    http_timeout: HttpTimeoutOpt = 2.0,
    as_json: JsonOpt = False,
) -> None:
    """Every service's /health and /ready, and consumer lag from the admin API (FLEET_TOKEN).
    Exits 1 unless every service is ready."""
    if wait:

        def targets_of() -> Targets | None:
            if state_file is not None and not state_file.exists():
                return None
            return _targets(state_file, host)

        states = _wait_until_ready(targets_of, timeout, poll, http_timeout)
        if not states:
            errors.print(f"[red]No state file at {state_file} within {timeout:g} s.[/red]")
            raise typer.Exit(1)
        targets = _targets(state_file, host)
    else:
        targets = _targets(state_file, host)
        states = probe_all(targets.services, http_timeout)

    lag_rows: list[dict[str, Any]] | None = None
    dlq_rows: list[dict[str, Any]] | None = None
    lag_problem: str | None = None
    if os.environ.get(TOKEN_ENV):
        try:
            with _admin(targets, http_timeout) as admin:
                lag_rows = admin.consumer_groups()
                dlq_rows = [row for row in admin.dlq() if int(row.get("depth") or 0)]
        except AdminApiError as exc:
            lag_problem = str(exc)
    else:
        lag_problem = f"set {TOKEN_ENV} to an admin's token to see consumer lag"

    if as_json:
        _print_json(
            {
                "services": [
                    {
                        "service": s.name,
                        "url": s.url,
                        "healthy": s.healthy,
                        "ready": s.ready,
                        "checks": s.checks,
                    }
                    for s in states
                ],
                "lag": [
                    {"group": g, "topic": t, "lag": lag} for g, t, lag in lag_by_group(lag_rows)
                ]
                if lag_rows is not None
                else None,
                "dead_letters": dlq_rows,
            }
        )
    else:
        console.print(_services_table(states))
        if lag_rows is not None:
            console.print(_lag_table(lag_rows))
        for row in dlq_rows or []:
            console.print(
                f"[red]{row['depth']} dead letter(s) in {row['topic']}[/red] "
                f"(fleet dlq replay {row.get('original_topic') or row['topic']})"
            )
        if lag_problem:
            errors.print(f"[dim]lag: {lag_problem}[/dim]")
    if not all(s.ready for s in states):
        raise typer.Exit(1)


# -- topics and dead letters --------------------------------------------------------------------


@app.command()
def topics(
    state_file: StateFileOpt = None,
    host: HostOpt = DEFAULT_HOST,
    http_timeout: HttpTimeoutOpt = 5.0,
    as_json: JsonOpt = False,
) -> None:
    """Every topic: partitions and end offsets (admin API, FLEET_TOKEN)."""
    rows = _ask_admin(state_file, host, http_timeout, AdminClient.topics)
    if as_json:
        _print_json(rows)
        return
    table = Table(title="Topics")
    table.add_column("topic")
    table.add_column("partitions", justify="right")
    table.add_column("messages", justify="right")
    for row in sorted(rows, key=lambda r: str(r["name"])):
        offsets = dict(row.get("end_offsets") or {})
        table.add_row(
            str(row["name"]), str(row["partitions"]), str(sum(int(v) for v in offsets.values()))
        )
    console.print(table)


@dlq_app.command("list")
def dlq_list(
    state_file: StateFileOpt = None,
    host: HostOpt = DEFAULT_HOST,
    http_timeout: HttpTimeoutOpt = 5.0,
    as_json: JsonOpt = False,
) -> None:
    """Each dead-letter topic, its original topic and its depth."""
    rows = _ask_admin(state_file, host, http_timeout, AdminClient.dlq)
    if as_json:
        _print_json(rows)
        return
    table = Table(title="Dead-letter topics")
    table.add_column("dead-letter topic")
    table.add_column("original topic")
    table.add_column("depth", justify="right")
    for row in sorted(rows, key=lambda r: str(r["topic"])):
        depth = int(row.get("depth") or 0)
        table.add_row(
            str(row["topic"]),
            str(row.get("original_topic", "")),
            f"[red]{depth}[/red]" if depth else "0",
        )
    console.print(table)


@dlq_app.command("replay")
def dlq_replay(
    topic: Annotated[str, typer.Argument(help="The topic or its dead-letter topic (.dlq).")],
    state_file: StateFileOpt = None,
    host: HostOpt = DEFAULT_HOST,
    http_timeout: HttpTimeoutOpt = 30.0,
    as_json: JsonOpt = False,
) -> None:
    """Send a dead-letter topic's messages back to their original topic (once each)."""
    answer = _ask_admin(state_file, host, http_timeout, lambda admin: admin.replay(topic))
    if as_json:
        _print_json(answer)
        return
    console.print(f"replayed {answer.get('replayed', 0)} message(s) from {dlq_name(topic)}")


# -- users --------------------------------------------------------------------------------------


def _set_admin(
    email: str, state_file: Path | None, host: str, http_timeout: float, *, granted: bool
) -> None:
    targets = _targets(state_file, host)
    try:
        with AdminClient(targets.user_url, os.environ.get(TOKEN_ENV), http_timeout) as users:
            user = users.set_admin(email, granted=granted)
    except AdminApiError as exc:
        raise _fail(exc) from None
    done = "is now an admin" if granted else "is no longer an admin"
    console.print(f"{user.get('email', email)} {done}; their sessions were ended.")


@users_app.command("grant-admin")
def grant_admin(
    email: Annotated[str, typer.Argument(help="The account's email address.")],
    state_file: StateFileOpt = None,
    host: HostOpt = DEFAULT_HOST,
    http_timeout: HttpTimeoutOpt = 5.0,
) -> None:
    """Give an account the admin role; its sessions end (the next login carries the role)."""
    _set_admin(email, state_file, host, http_timeout, granted=True)


@users_app.command("revoke-admin")
def revoke_admin(
    email: Annotated[str, typer.Argument(help="The account's email address.")],
    state_file: StateFileOpt = None,
    host: HostOpt = DEFAULT_HOST,
    http_timeout: HttpTimeoutOpt = 5.0,
) -> None:
    """Take the admin role away; the account's sessions end at once."""
    _set_admin(email, state_file, host, http_timeout, granted=False)


# -- tail ---------------------------------------------------------------------------------------


def _render(message: TailedMessage) -> Panel:
    where = f"{message.topic} [{message.partition}] @{message.offset}  key={message.key or '-'}"
    envelope = message.envelope
    if envelope is None:
        return Panel(
            message.raw or "(empty)", title=f"not an envelope · {where}", border_style="red"
        )
    meta = (
        f"[bold]{envelope.type}[/bold] v{envelope.version}  id={envelope.id}\n"
        f"at {envelope.occurred_at.isoformat()}  from {envelope.source}  "
        f"correlation={envelope.correlation_id}"
    )
    extra = {k: v for k, v in message.headers.items() if k.startswith("dlq_")}
    if extra:
        meta += "\n" + "  ".join(f"{k}={v}" for k, v in extra.items())
    body = Syntax(pretty_data(envelope), "json", theme="ansi_dark", background_color="default")
    return Panel.fit(Group(meta, body), title=where, border_style="cyan")


@app.command(name="tail")
def tail_command(
    topic: Annotated[str, typer.Argument(help="The topic to read, e.g. user.registered.")],
    state_file: StateFileOpt = None,
    broker: Annotated[
        str | None,
        typer.Option(help="Bootstrap servers; default: the state file's, KAFKA_BROKER, :9092."),
    ] = None,
    from_beginning: Annotated[
        bool, typer.Option("--from-beginning", help="Start at the oldest message.")
    ] = False,
    count: Annotated[int | None, typer.Option(min=1, help="Stop after this many messages.")] = None,
    idle_timeout: Annotated[
        float | None,
        typer.Option("--idle-timeout", min=0, help="Stop after this many seconds of silence."),
    ] = None,
    request_timeout_ms: Annotated[int, typer.Option(min=1000)] = 10_000,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Print a topic's messages as they arrive, envelopes pretty-printed (Ctrl-C stops)."""
    bootstrap = broker or _targets(state_file, DEFAULT_HOST).broker

    async def run() -> int:
        seen = 0
        async for message in tail(
            bootstrap,
            topic,
            from_beginning=from_beginning,
            idle_seconds=idle_timeout,
            request_timeout_ms=request_timeout_ms,
        ):
            if as_json:
                print(json.dumps(message.as_json()), flush=True)
            else:
                console.print(_render(message))
            seen += 1
            if count is not None and seen >= count:
                break
        return seen

    if not as_json:
        errors.print(f"[dim]tailing {topic} on {bootstrap} (Ctrl-C stops)[/dim]")
    try:
        asyncio.run(run())
    except TopicNotFound as exc:
        raise _fail(exc) from None
    except KeyboardInterrupt:
        raise typer.Exit(0) from None
    except Exception as exc:  # the broker unreachable, mostly
        raise _fail(RuntimeError(f"Cannot read {topic} from {bootstrap}: {exc}")) from None


# -- demo ---------------------------------------------------------------------------------------


def _print_demo(result: DemoResult) -> None:
    table = Table(title="Demo logins")
    for column in ("email", "roles", "orders", "notifications", "this run"):
        table.add_column(column)
    for account in result.accounts:
        table.add_row(
            account.email,
            ", ".join(account.roles) or "-",
            str(len(account.orders)),
            str(account.notifications),
            "registered" if account.registered else "logged in",
        )
    console.print(table)
    console.print(f"Password of every demo login: [bold]{result.admin.password}[/bold]")
    # Tokens and the export line as plain lines: a terminal must not wrap them into the table.
    print("\nAccess tokens (Authorization: Bearer <token>):")
    for account in result.accounts:
        print(f"  {account.email}: {account.token}")
    for warning in result.warnings:
        errors.print(f"[yellow]{warning}[/yellow]")
    if result.admin_ready:
        print(f"\nThe admin's token for `fleet` ({result.admin.email}):")
        print(result.export_line)


@app.command()
def demo(
    url: Annotated[
        str | None,
        typer.Option(
            envvar="FLEET_URL",
            help="The gateway's base URL; default: the state file's, else port 4000 on --host.",
        ),
    ] = None,
    mail_url: Annotated[
        str | None,
        typer.Option(
            "--mail-url",
            envvar="FLEET_MAIL_URL",
            help="The mail page (the stack's, or Mailpit's); default: the state file's, "
            "else port 8025 on --host.",
        ),
    ] = None,
    state_file: StateFileOpt = None,
    host: HostOpt = DEFAULT_HOST,
    http_timeout: HttpTimeoutOpt = 10.0,
    mail_timeout: Annotated[
        float,
        typer.Option(
            "--mail-timeout", min=0, help="Seconds to wait for a mail or the first notification."
        ),
    ] = 30.0,
    poll: Annotated[float, typer.Option(min=0.05, help="Seconds between such polls.")] = 0.5,
    as_json: JsonOpt = False,
) -> None:
    """Create demo users with orders, notifications and recommendations, and a verified admin
    (admin@demo.fleet, listed in ADMIN_EMAILS), through the public GraphQL API; print their
    logins, tokens and `export FLEET_TOKEN=...`. Running it again creates nothing new.
    Exits 1 if the admin could not be made."""
    targets = _targets(state_file, host)
    gateway = (url or targets.gateway_url).rstrip("/")
    mail = mail_url or targets.mail_page or f"http://{host}:{DEFAULT_MAIL_PAGE_PORT}"
    say = (
        (lambda line: None)
        if as_json
        else (lambda line: errors.print(f"[dim]{line}[/dim]", soft_wrap=True))
    )
    try:
        result = run_demo(
            f"{gateway}/graphql",
            mail,
            http_timeout=http_timeout,
            mail_timeout=mail_timeout,
            poll_interval=poll,
            say=say,
        )
    except DemoError as exc:
        raise _fail(exc) from None
    if as_json:
        _print_json(
            {
                "accounts": [
                    {
                        "name": a.name,
                        "email": a.email,
                        "password": a.password,
                        "roles": a.roles,
                        "token": a.token,
                        "registered": a.registered,
                        "orders": a.orders,
                        "notifications": a.notifications,
                        "recommendation": a.recommendation,
                    }
                    for a in result.accounts
                ],
                "export": result.export_line if result.admin_ready else None,
                "warnings": result.warnings,
            }
        )
    else:
        _print_demo(result)
    if not result.admin_ready:
        raise typer.Exit(1)
