"""`fieldstream db migrate`: apply the versioned schema migrations."""

from __future__ import annotations

import asyncio

import asyncpg
import click

from fieldstream.config import load_settings
from fieldstream.logs import setup_cli_logging
from fieldstream.sinks.migrations import MIGRATIONS, migrate


@click.group()
def db() -> None:
    """PostgreSQL / TimescaleDB schema."""


@db.command(name="migrate")
def migrate_cmd() -> None:
    """Apply pending migrations (idempotent; the worker also runs them at start)."""
    setup_cli_logging()
    settings = load_settings()

    async def run() -> list[int]:
        conn = await asyncpg.connect(**settings.pg.connect_kwargs(), timeout=10)
        try:
            return await migrate(conn, settings.pg)
        finally:
            await conn.close()

    try:
        applied = asyncio.run(run())
    except (OSError, asyncpg.PostgresError) as e:
        raise click.ClickException(f"PostgreSQL at {settings.pg.host}:{settings.pg.port}: {e}") from e
    latest = max(m.version for m in MIGRATIONS)
    click.echo(f"applied: {applied or 'none'}; schema at version {latest}")
