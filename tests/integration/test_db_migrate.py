"""`fieldstream db migrate` on the stack's PostgreSQL: idempotent, says which database it found."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

from fieldstream.sinks.migrations import MIGRATIONS
from fieldstream.sinks.windows_pg import WindowTableSink, table_name

from .cli_support import run_fieldstream
from .conftest import pg_fetch


def test_db_migrate_is_idempotent_and_logs_the_database_kind(stack_settings):
    latest = max(m.version for m in MIGRATIONS)
    for _ in range(2):  # the session fixture migrated already: both runs find nothing to do
        run = run_fieldstream("db", "migrate")
        assert run.returncode == 0, run.output
        assert f"applied: none; schema at version {latest}" in run.stdout
    # The stack's PostgreSQL comes from Debian's packages, without TimescaleDB.
    assert "plain PostgreSQL (no timescaledb extension)" in run.stderr
    rows = pg_fetch(stack_settings, "SELECT version, timescale FROM schema_migrations ORDER BY version")
    assert [r["version"] for r in rows] == [m.version for m in MIGRATIONS]
    tables = {r["relname"] for r in pg_fetch(stack_settings, "SELECT relname FROM pg_class WHERE relkind IN ('r', 'v')")}
    assert {"readings", "devices", "alerts", "reading_rejections", "device_quality"} <= tables


def test_workers_starting_together_on_a_fresh_database_all_create_their_window_tables(stack_settings):
    """PostgreSQL refuses concurrent CREATE TABLE IF NOT EXISTS of one table (duplicate pg_type key):
    a worker of a group started at once stopped with that error before the schema lock covered it."""
    pg = stack_settings.pg
    database = f"race_{uuid.uuid4().hex[:8]}"
    windows = ["tumbling_1m", "hopping_5m_1m", "tumbling_15m"]

    async def scenario() -> set[str]:
        conn = await asyncpg.connect(**pg.connect_kwargs())
        await conn.execute(f'CREATE DATABASE "{database}"')
        try:
            sinks = [WindowTableSink(pg.model_copy(update={"database": database}), windows) for _ in range(6)]
            try:
                await asyncio.gather(*(s.start() for s in sinks))  # raises if any of them is refused
            finally:
                for s in sinks:
                    await s.close()
            scratch = await asyncpg.connect(**pg.connect_kwargs(database=database))
            try:
                return {r["relname"] for r in await scratch.fetch("SELECT relname FROM pg_class WHERE relkind = 'r'")}
            finally:
                await scratch.close()
        finally:
            await conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            await conn.close()

    assert {table_name(w) for w in windows} <= asyncio.run(scenario())
