"""Migrations and TimescaleDB reconciliation, against a connection that records the SQL it is sent.

TimescaleDB is not available on the machine the integration tests run on, so what
the store does with the extension present is pinned down here: which statements,
with which settings, and that nothing is re-created when it already matches.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta

import pytest

from fieldstream.config.postgres import PostgresSettings
from fieldstream.sinks.migrations import MIGRATIONS, migrate


class RecordingConnection:
    """Just enough of asyncpg.Connection for migrate(): answers the catalogue queries it asks."""

    def __init__(self, timescale: bool, compressed: bool = False, jobs: dict[str, timedelta] | None = None,
                 done: list[int] | None = None) -> None:
        self.timescale = timescale
        self.compressed = compressed
        self.jobs = dict(jobs or {})  # policy proc name -> its interval
        self.done = list(done or [])
        self.sent: list[tuple[str, tuple, int]] = []  # (sql, args, transaction depth)
        self.depth = 0

    async def execute(self, sql: str, *args) -> str:
        self.sent.append((" ".join(sql.split()), args, self.depth))
        return "OK"

    async def fetch(self, sql: str, *args) -> list[dict]:
        assert "schema_migrations" in sql
        return [{"version": v} for v in self.done]

    async def fetchval(self, sql: str, *args):
        if "pg_available_extensions" in sql:
            return 1 if self.timescale else 0
        if "compression_enabled" in sql:
            return self.compressed
        if "timescaledb_information.jobs" in sql:
            return self.jobs.get(args[0])
        raise AssertionError(f"unexpected query: {sql}")

    @contextlib.asynccontextmanager
    async def transaction(self):
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1

    def statements(self, needle: str) -> list[tuple[str, tuple, int]]:
        return [s for s in self.sent if needle in s[0]]


SETTINGS = PostgresSettings(chunk_interval="PT12H", compress_after="3 days", retain_for="30 days")


async def test_plain_postgres_gets_every_migration_and_no_timescale_statement():
    conn = RecordingConnection(timescale=False)
    assert await migrate(conn, SETTINGS) == [m.version for m in MIGRATIONS]
    assert not [s for s in conn.sent if "timescaledb" in s[0] or "hypertable" in s[0] or "policy" in s[0]]
    assert conn.statements("CREATE INDEX IF NOT EXISTS readings_time")
    assert len(conn.statements("INSERT INTO schema_migrations")) == len(MIGRATIONS)


async def test_timescale_features_follow_the_settings_on_a_new_database():
    conn = RecordingConnection(timescale=True)
    await migrate(conn, SETTINGS)
    [(_, args, _)] = conn.statements("create_hypertable")
    assert args == (timedelta(hours=12),)
    assert conn.statements("set_chunk_time_interval")[0][1] == (timedelta(hours=12),)
    assert conn.statements("timescaledb.compress_segmentby = 'device_id'")
    assert conn.statements("add_compression_policy")[0][1] == (timedelta(days=3),)
    assert conn.statements("add_retention_policy")[0][1] == (timedelta(days=30),)
    assert not conn.statements("remove_")
    # A continuous aggregate cannot be created inside a transaction block.
    [(_, _, depth)] = conn.statements("timescaledb.continuous")
    assert depth == 0
    assert conn.statements("add_continuous_aggregate_policy")


async def test_nothing_is_recreated_when_the_database_already_matches():
    conn = RecordingConnection(timescale=True, compressed=True, done=[m.version for m in MIGRATIONS],
                               jobs={"policy_compression": timedelta(days=3), "policy_retention": timedelta(days=30)})
    assert await migrate(conn, SETTINGS) == []
    assert not conn.statements("add_compression_policy") and not conn.statements("add_retention_policy")
    assert not conn.statements("remove_")
    assert not conn.statements("ALTER TABLE readings SET (timescaledb.compress")  # refused once compressed


async def test_a_changed_setting_replaces_its_policy():
    conn = RecordingConnection(timescale=True, compressed=True, done=[m.version for m in MIGRATIONS],
                               jobs={"policy_compression": timedelta(days=7), "policy_retention": timedelta(days=90)})
    await migrate(conn, SETTINGS)
    order = [s[0] for s in conn.sent]
    remove = order.index("SELECT remove_retention_policy('readings', if_exists => TRUE)")
    add = next(i for i, sql in enumerate(order) if sql.startswith("SELECT add_retention_policy"))
    assert remove < add and conn.sent[add][1] == (timedelta(days=30),)
    assert conn.statements("add_compression_policy")[0][1] == (timedelta(days=3),)


async def test_retention_can_be_switched_off():
    settings = PostgresSettings(retain_for=None)
    conn = RecordingConnection(timescale=True, jobs={"policy_retention": timedelta(days=90)})
    await migrate(conn, settings)
    assert conn.statements("remove_retention_policy")
    assert not conn.statements("add_retention_policy")


def test_durations_are_validated_with_the_setting_named(monkeypatch):
    monkeypatch.setenv("FIELDSTREAM_PG_RETAIN_FOR", "ninety days")
    with pytest.raises(ValueError, match="retain_for"):
        PostgresSettings()
    monkeypatch.setenv("FIELDSTREAM_PG_RETAIN_FOR", "-1d")
    with pytest.raises(ValueError, match="retain_for"):
        PostgresSettings()


@pytest.mark.parametrize("value", ["", "forever"])
def test_retention_off_by_setting(monkeypatch, value):
    monkeypatch.setenv("FIELDSTREAM_PG_RETAIN_FOR", value)
    assert PostgresSettings().retain_for is None
