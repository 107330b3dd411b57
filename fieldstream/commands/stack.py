"""`fieldstream stack up | down | status`: the local stack of real services."""

from __future__ import annotations

import click

from fieldstream.config import load_settings
from fieldstream.errors import StackError
from fieldstream.logs import setup_cli_logging
from fieldstream.stack import manager
from fieldstream.stack.service import ServiceStatus


def _print_status(rows: list[ServiceStatus]) -> None:
    click.echo(f"{'service':<10} {'state':<8} {'address':<26} {'pid':>8}  version")
    for s in rows:
        state = "up" if s.running else "down"
        click.echo(f"{s.name:<10} {state:<8} {s.address:<26} {s.pid or '-':>8}  {s.version}")


@click.group()
def stack() -> None:
    """Run the local stack: Kafka (KRaft), schema registry, PostgreSQL."""


@stack.command()
def up() -> None:
    """Install what is missing, start every service, wait until each answers."""
    setup_cli_logging()
    settings = load_settings()
    try:
        rows = manager.up(settings)
    except StackError as e:
        raise click.ClickException(str(e)) from e
    _print_status(rows)


@stack.command()
def down() -> None:
    """Stop the services `stack up` started (found by their pid files)."""
    setup_cli_logging()
    try:
        stopped = manager.down(load_settings())
    except StackError as e:
        raise click.ClickException(str(e)) from e
    click.echo(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")


@stack.command()
def status() -> None:
    """Show each service: state, address, pid and version."""
    rows = manager.status(load_settings())
    _print_status(rows)
    if not all(r.running for r in rows):
        raise SystemExit(1)
