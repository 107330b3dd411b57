"""Alert events into PostgreSQL, idempotent on (alert_id, state)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fieldstream.sinks.pg import PostgresWriter, unavailable_on_transient

COLUMNS = ("alert_id", "state", "device_id", "device_type", "event_time", "detector", "metric", "value", "score",
           "threshold", "severity", "message")


class AlertTableSink(PostgresWriter):
    name = "alerts_pg"

    async def write(self, records: Sequence[dict[str, Any]]) -> None:
        if not records:
            return
        pool = await self.pool()
        placeholders = ", ".join(f"${i + 1}" for i in range(len(COLUMNS)))
        with unavailable_on_transient():
            async with pool.acquire() as conn:
                await conn.executemany(
                    f"INSERT INTO alerts ({', '.join(COLUMNS)}) VALUES ({placeholders}) "
                    "ON CONFLICT (alert_id, state) DO NOTHING",
                    [tuple(r[c] for c in COLUMNS) for r in records],
                )
