"""Alert events into PostgreSQL, idempotent on (alert_id, state)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from fieldstream.config.postgres import PostgresSettings
from fieldstream.errors import SinkUnavailable
from fieldstream.sinks.timescale import TRANSIENT

COLUMNS = ("alert_id", "state", "device_id", "device_type", "event_time", "detector", "metric", "value", "score",
           "threshold", "severity", "message")


class AlertTableSink:
    name = "alerts_pg"

    def __init__(self, settings: PostgresSettings) -> None:
        self.settings = settings
        self._pool: asyncpg.Pool | None = None

    async def start(self) -> None:
        try:
            self._pool = await asyncpg.create_pool(**self.settings.connect_kwargs(), min_size=1, max_size=2,
                                                   timeout=10, command_timeout=60)
        except TRANSIENT as e:
            raise SinkUnavailable(f"PostgreSQL: {type(e).__name__}: {e}") from e

    async def write(self, records: Sequence[dict[str, Any]]) -> None:
        if not records:
            return
        if self._pool is None:
            await self.start()
        assert self._pool is not None
        placeholders = ", ".join(f"${i + 1}" for i in range(len(COLUMNS)))
        try:
            async with self._pool.acquire() as conn:
                await conn.executemany(
                    f"INSERT INTO alerts ({', '.join(COLUMNS)}) VALUES ({placeholders}) "
                    "ON CONFLICT (alert_id, state) DO NOTHING",
                    [tuple(r[c] for c in COLUMNS) for r in records],
                )
        except TRANSIENT as e:
            raise SinkUnavailable(f"PostgreSQL: {type(e).__name__}: {e}") from e

    async def flush(self) -> None:
        """Nothing is buffered."""

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
