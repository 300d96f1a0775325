"""`python -m fleet` (installed as `fleet`)."""

from __future__ import annotations

from fleet.app import app


def main() -> None:
    """The `fleet` entry point."""
    app()


if __name__ == "__main__":
    main()
