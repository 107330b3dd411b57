"""Final window aggregates into PostgreSQL: one table per window spec, upserted.

The key (device_id, metric, window_start) makes a re-emitted aggregate (after
a crash between publishing and checkpointing the window state) overwrite the
same row instead of adding one.

Aggregates carry their times as integer µs since the epoch (as the engine and the
Avro schema do): the staging table holds them as bigint and the upsert turns them
into timestamptz, exactly (integer µs arithmetic), so no datetime is built in Python.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from operator import itemgetter
from typing import Any

import asyncpg

from fieldstream.config.postgres import PostgresSettings
from fieldstream.sinks.migrations import schema_lock
from fieldstream.sinks.pg import PostgresWriter, unavailable_on_transient
from fieldstream.windows.engine import TIME_FIELDS

MEASURES = (
    "count", "sum", "mean", "min", "max", "variance", "stddev", "first_value", "first_time", "last_value",
    "last_time", "median", "p95", "range", "rate_of_change", "expected", "missing", "quality", "distance_m",
)
COLUMNS = ("device_id", "device_type", "metric", "window_start", "window_end", *MEASURES)
EPOCH_SQL = "timestamptz '1970-01-01 00:00:00+00'"
TYPES = {
    "count": "bigint", "expected": "bigint", "missing": "bigint", "first_time": "timestamptz",
    "last_time": "timestamptz", "distance_m": "double precision",
}


def table_name(window: str) -> str:
    """windows_<spec name>, e.g. windows_tumbling_1m; spec names are [a-z0-9_]."""
    if not window.replace("_", "").isalnum():
        raise ValueError(f"window name {window!r} is not usable in a table name")
    return f"windows_{window.lower()}"


def _column_type(column: str) -> str:
    return "text" if column in ("device_id", "device_type", "metric") else TYPES.get(column, "double precision")


def create_stage_sql(window: str) -> str:
    """The connection's staging table: the target's columns, its times as bigint µs."""
    cols = ", ".join(f'"{c}" ' + ("bigint" if c in TIME_FIELDS else _column_type(c)) for c in COLUMNS)
    return f"CREATE TEMP TABLE IF NOT EXISTS {table_name(window)}_stage ({cols}) ON COMMIT DELETE ROWS"


def upsert_sql(window: str) -> str:
    """From the staging table into the window's table (of a key staged twice, re-emitted, one copy)."""
    table = table_name(window)
    columns = ", ".join(f'"{c}"' for c in COLUMNS)
    values = ", ".join(f"{EPOCH_SQL} + \"{c}\" * interval '1 microsecond'" if c in TIME_FIELDS else f'"{c}"'
                       for c in COLUMNS)
    updates = ", ".join(f'"{c}" = EXCLUDED."{c}"' for c in ("device_type", "window_end", *MEASURES))
    return (f"INSERT INTO {table} ({columns}) SELECT DISTINCT ON (device_id, metric, window_start) {values} "
            f"FROM {table}_stage ON CONFLICT (device_id, metric, window_start) DO UPDATE SET {updates}")


def create_table_sql(window: str) -> str:
    cols = ",\n".join(f'    "{m}" {TYPES.get(m, "double precision")}' + ("" if m == "distance_m" else " NOT NULL")
                      for m in MEASURES)
    return f"""
CREATE TABLE IF NOT EXISTS {table_name(window)} (
    device_id    text        NOT NULL,
    device_type  text        NOT NULL,
    metric       text        NOT NULL,
    window_start timestamptz NOT NULL,
    window_end   timestamptz NOT NULL,
{cols},
    PRIMARY KEY (device_id, metric, window_start)
);
CREATE INDEX IF NOT EXISTS {table_name(window)}_start ON {table_name(window)} (window_start);
"""


class WindowTableSink(PostgresWriter):
    name = "windows_pg"

    def __init__(self, settings: PostgresSettings, windows: Iterable[str]) -> None:
        super().__init__(settings)
        self.windows = list(windows)

    async def on_connect(self, conn: asyncpg.Connection) -> None:
        async with schema_lock(conn):
            for window in self.windows:
                await conn.execute(create_table_sql(window))

    async def write(self, aggregates: Sequence[dict[str, Any]]) -> None:
        """Upsert through COPY into a per-connection staging table (far cheaper than row-wise INSERTs)."""
        if not aggregates:
            return
        pool = await self.pool()
        by_window: dict[str, list[tuple]] = defaultdict(list)
        row = itemgetter(*COLUMNS)
        for agg in aggregates:
            by_window[agg["window"]].append(row(agg))
        with unavailable_on_transient():
            async with pool.acquire() as conn, conn.transaction():
                for window, rows in by_window.items():
                    if window not in self.windows:  # a spec added since start
                        await conn.execute(create_table_sql(window))
                        self.windows.append(window)
                    await conn.execute(create_stage_sql(window))
                    await conn.copy_records_to_table(f"{table_name(window)}_stage", records=rows,
                                                     columns=list(COLUMNS))
                    await conn.execute(upsert_sql(window))  # a window re-emitted after a crash overwrites its row
