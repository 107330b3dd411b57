"""The TimescaleDB / PostgreSQL sink: COPY into a staging table, then insert-if-absent.

A batch is durable when `write` returns (one transaction). Replaying a batch
after a crash inserts nothing twice: the primary key (device_id, event_time,
seq) absorbs it through `ON CONFLICT DO NOTHING`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

import asyncpg

from fieldstream.config.postgres import PostgresSettings
from fieldstream.errors import RecordRejected, SinkUnavailable
from fieldstream.schemas.reading import Reading
from fieldstream.sinks.migrations import migrate

log = logging.getLogger(__name__)

COLUMNS = (
    "device_id", "event_time", "seq", "device_type", "metrics", "lat", "lon", "battery", "signal_dbm",
    "firmware", "schema_id", "schema_version", "kafka_partition", "kafka_offset",
)

# Errors that mean "the database is not there right now": pause and retry.
TRANSIENT = (
    OSError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.QueryCanceledError,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.InterfaceError,
    TimeoutError,
)
# Errors that mean "this data can never go in": find the record, dead-letter it.
PERMANENT = (
    asyncpg.exceptions.DataError,
    asyncpg.exceptions.IntegrityConstraintViolationError,
)


def reading_row(r: Reading) -> tuple:
    loc = r.location
    return (
        r.device_id, r.event_time, r.seq, r.device_type, json.dumps(r.metrics),
        loc.lat if loc else None, loc.lon if loc else None, r.battery, r.signal_dbm, r.firmware,
        r.schema_id, r.schema_version, r.partition, r.offset,
    )


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS readings_stage "
        "(LIKE readings INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
    )


class TimescaleSink:
    name = "timescale"

    def __init__(self, settings: PostgresSettings) -> None:
        self.settings = settings
        self._pool: asyncpg.Pool | None = None

    async def start(self) -> None:
        try:
            conn = await asyncpg.connect(**self.settings.connect_kwargs(), timeout=10)
            try:
                await migrate(conn)
            finally:
                await conn.close()
            self._pool = await asyncpg.create_pool(
                **self.settings.connect_kwargs(), min_size=self.settings.pool_min, max_size=self.settings.pool_max,
                init=_init_connection, timeout=10, command_timeout=60,
            )
        except TRANSIENT as e:
            raise SinkUnavailable(f"PostgreSQL at {self.settings.host}:{self.settings.port}: "
                                  f"{type(e).__name__}: {e}") from e

    @property
    def connected(self) -> bool:
        return self._pool is not None

    async def write(self, batch: Sequence[Reading]) -> None:
        """Make `batch` durable. SinkUnavailable: retry later. RecordRejected: carries the bad readings."""
        if not batch:
            return
        if self._pool is None:
            await self.start()
        rows = [reading_row(r) for r in batch]
        try:
            await self._insert(rows, batch)
        except PERMANENT:
            await self._insert_isolating(rows, batch)
        except TRANSIENT as e:
            raise SinkUnavailable(f"PostgreSQL: {type(e).__name__}: {e}") from e

    async def _insert(self, rows: list[tuple], batch: Sequence[Reading]) -> None:
        assert self._pool is not None
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.copy_records_to_table("readings_stage", records=rows, columns=COLUMNS)
            # Only rows actually inserted count towards `devices`, so a replay changes nothing.
            await conn.execute(
                f"""
                WITH inserted AS (
                    INSERT INTO readings ({', '.join(COLUMNS)})
                    SELECT {', '.join(COLUMNS)} FROM readings_stage
                    ON CONFLICT DO NOTHING
                    RETURNING device_id, device_type, event_time, schema_version
                )
                INSERT INTO devices AS d (device_id, device_type, first_seen, last_seen, schema_version, readings)
                SELECT device_id, max(device_type), min(event_time), max(event_time), max(schema_version), count(*)
                FROM inserted GROUP BY device_id
                ON CONFLICT (device_id) DO UPDATE SET
                    device_type = EXCLUDED.device_type,
                    first_seen = least(d.first_seen, EXCLUDED.first_seen),
                    last_seen = greatest(d.last_seen, EXCLUDED.last_seen),
                    schema_version = greatest(d.schema_version, EXCLUDED.schema_version),
                    readings = d.readings + EXCLUDED.readings
                """
            )

    async def _insert_isolating(self, rows: list[tuple], batch: Sequence[Reading]) -> None:
        """Insert row by row so one bad reading cannot hold back its batch."""
        rejected: list[tuple[Reading, str]] = []
        for row, reading in zip(rows, batch, strict=True):
            try:
                await self._insert([row], [reading])
            except PERMANENT as e:
                rejected.append((reading, f"{type(e).__name__}: {e}"))
            except TRANSIENT as e:
                raise SinkUnavailable(f"PostgreSQL: {type(e).__name__}: {e}") from e
        if rejected:
            raise RecordRejected(f"PostgreSQL refused {len(rejected)} reading(s)", rejected=rejected)

    async def flush(self) -> None:
        """Nothing is buffered: `write` commits its transaction."""

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
