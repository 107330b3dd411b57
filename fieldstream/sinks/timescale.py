"""The TimescaleDB / PostgreSQL sink: COPY, insert-if-absent, and the per-device bookkeeping.

A batch is durable when `write` returns (one transaction). Replaying a batch
after a crash inserts nothing twice: the primary key (device_id, event_time,
seq) absorbs it.

Two paths, one result:

* Fast path (every batch first): COPY straight into `readings`, then upsert
  `devices` from the batch's own columns sent as arrays. No staging table, no
  second copy of the rows on the server. It only succeeds when every reading of
  the batch is new, so the batch is exactly what was inserted.
* When that COPY meets a reading already stored (a replay after a crash or a
  rebalance, or a duplicate inside the batch), the transaction is rolled back
  and the batch goes the general way: COPY into a per-connection temporary
  staging table, `INSERT ... SELECT ... ON CONFLICT DO NOTHING`, and `devices`
  counts only the rows actually inserted (a CTE with `RETURNING`).

Both paths compute `devices` with the same SQL aggregate over the rows they
inserted, so the tables end up identical whichever path a batch took.
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
from fieldstream.sinks.pg import PERMANENT, TRANSIENT

log = logging.getLogger(__name__)

COLUMNS = (
    "device_id", "event_time", "seq", "device_type", "metrics", "lat", "lon", "battery", "signal_dbm",
    "firmware", "schema_id", "schema_version", "kafka_partition", "kafka_offset",
)



# json.dumps(metrics) builds a JSONEncoder and then a C encoder on every call; this is the same C
# encoder with json.dumps' own settings (ensure_ascii, ", " and ": ", NaN allowed, keys not sorted,
# the same TypeError for what JSON cannot hold), made once: the same text for about half the cost.
# Only the circular-reference check is left out (a metrics dict cannot contain itself).
# Without the C accelerator, plain json.dumps.
_json_c_encoder = getattr(json.encoder, "c_make_encoder", None)
if _json_c_encoder is not None:
    _encode = _json_c_encoder(None, json.JSONEncoder().default, json.encoder.encode_basestring_ascii, None,
                              ": ", ", ", False, False, True)

    def metrics_json(metrics: dict[str, float]) -> str:
        return "".join(_encode(metrics, 0))
else:  # pragma: no cover - CPython always has the accelerator
    metrics_json = json.dumps


def reading_row(r: Reading) -> tuple:
    loc = r.location
    if loc is None:
        lat = lon = None
    else:
        lat, lon = loc.lat, loc.lon
    return (
        r.device_id, r.event_time, r.seq, r.device_type, metrics_json(r.metrics),
        lat, lon, r.battery, r.signal_dbm, r.firmware,
        r.schema_id, r.schema_version, r.partition, r.offset,
    )


# The devices upsert, from the readings a statement inserted (`inserted`: device_id, device_type,
# event_time, schema_version). Shared by both paths so they cannot drift apart.
_DEVICES_UPSERT = """
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
# Fast path: every reading of the batch was inserted, so `inserted` is the batch itself.
_DEVICES_FROM_BATCH = f"""
WITH inserted AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::integer[])
        AS b(device_id, device_type, event_time, schema_version)
)
{_DEVICES_UPSERT}"""
# General path: only the rows that were not there yet.
_INSERT_FROM_STAGE = f"""
WITH inserted AS (
    INSERT INTO readings ({', '.join(COLUMNS)})
    SELECT {', '.join(COLUMNS)} FROM readings_stage
    ON CONFLICT DO NOTHING
    RETURNING device_id, device_type, event_time, schema_version
)
{_DEVICES_UPSERT}"""


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
                await migrate(conn, self.settings)
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
        try:
            await self._insert(batch)
        except PERMANENT:
            await self._insert_isolating(batch)
        except TRANSIENT as e:
            raise SinkUnavailable(f"PostgreSQL: {type(e).__name__}: {e}") from e

    async def _insert(self, batch: Sequence[Reading]) -> None:
        assert self._pool is not None
        async with self._pool.acquire() as conn:
            try:
                async with conn.transaction():
                    # The rows are built while COPY streams them, and not kept: the server starts on
                    # the first chunk while the rest are still being built, and a batch's rows are
                    # never all in memory at once. The rare paths below build them again.
                    await conn.copy_records_to_table("readings", records=map(reading_row, batch),
                                                     columns=COLUMNS)
                    await conn.execute(
                        _DEVICES_FROM_BATCH,
                        [r.device_id for r in batch], [r.device_type for r in batch],
                        [r.event_time for r in batch], [r.schema_version for r in batch],
                    )
                return
            except asyncpg.exceptions.UniqueViolationError:
                pass  # some of it is stored already (a replay): insert only what is missing
            async with conn.transaction():
                await conn.copy_records_to_table("readings_stage", records=map(reading_row, batch),
                                                 columns=COLUMNS)
                # Only rows actually inserted count towards `devices`, so a replay changes nothing.
                await conn.execute(_INSERT_FROM_STAGE)

    async def _insert_isolating(self, batch: Sequence[Reading]) -> None:
        """Insert row by row so one bad reading cannot hold back its batch."""
        rejected: list[tuple[Reading, str]] = []
        for reading in batch:
            try:
                await self._insert([reading])
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
