"""`fieldstream db migrate` on the stack's PostgreSQL: idempotent, says which database it found."""

from __future__ import annotations

import pytest

from fieldstream.sinks.migrations import MIGRATIONS

from .cli_support import run_fieldstream
from .conftest import pg_fetch

pytestmark = pytest.mark.integration


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
