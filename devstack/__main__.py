"""`python -m devstack` (what `make run` runs): the whole fleet on embedded parts.

Variables that name a part replace its embedded stand-in: KAFKA_BROKER (no broker is started),
REDIS_URL (no Redis), SMTP_HOST (no SMTP sink), MONGO_URI (default memory://). The rest of the
environment passes through to every service; ADMIN_EMAILS, when unset, names the demo's admin
(admin@demo.fleet: `make demo`, docs/demo.md).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from devstack.config import (
    DEFAULT_MAIL_DIR,
    DEFAULT_READY_TIMEOUT_SECONDS,
    StackOptions,
    fleet_named,
)
from devstack.supervisor import Supervisor


def parse_options(argv: list[str] | None = None) -> StackOptions:
    """The command line as launcher options."""
    parser = argparse.ArgumentParser(
        prog="python -m devstack",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--free-ports",
        action="store_true",
        help="put every service and part on a free 127.0.0.1 port (tests, a second stack)",
    )
    parser.add_argument(
        "--state-file",
        type=Path,
        help="once everything is ready, write the URLs and pids here as JSON (removed on exit)",
    )
    parser.add_argument(
        "--mail-dir",
        type=Path,
        default=DEFAULT_MAIL_DIR,
        help="where the SMTP sink keeps every email, in messages.mbox (default: var/mail)",
    )
    parser.add_argument(
        "--ready-timeout",
        type=float,
        default=DEFAULT_READY_TIMEOUT_SECONDS,
        help="seconds the whole fleet gets to become ready (default: %(default)s)",
    )
    parser.add_argument(
        "--services",
        default="",
        help="comma-separated subset of services to start (the kafka admin service always is)",
    )
    args = parser.parse_args(argv)
    if args.ready_timeout <= 0:
        parser.error("--ready-timeout must be positive")
    names = [name.strip() for name in args.services.split(",") if name.strip()]
    try:
        services = fleet_named(names)
    except ValueError as exc:
        parser.error(str(exc))
    return StackOptions(
        free_ports=args.free_ports,
        state_file=args.state_file.resolve() if args.state_file else None,
        mail_dir=args.mail_dir,
        ready_timeout=args.ready_timeout,
        services=services,
    )


def main(argv: list[str] | None = None) -> None:
    """Run the fleet in the foreground until Ctrl-C; exit non-zero if something failed."""
    options = parse_options(argv)
    sys.exit(asyncio.run(Supervisor(options).run()))


if __name__ == "__main__":
    main()
