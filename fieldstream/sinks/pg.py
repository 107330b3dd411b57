"""What every PostgreSQL writer shares: typed transient vs permanent errors, and a pool."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg

from fieldstream.config.postgres import PostgresSettings
from fieldstream.errors import SinkUnavailable

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
    # A pooled connection the server terminated while it sat idle (PostgreSQL shutting down)
    # fails its next query with this instead of a connection error (asyncpg issue #784).
    asyncpg.exceptions.InternalClientError,
    TimeoutError,
)
# Errors that mean "this data can never go in": find the record, dead-letter it.
PERMANENT = (
    asyncpg.exceptions.DataError,
    asyncpg.exceptions.IntegrityConstraintViolationError,
)


@contextmanager
def unavailable_on_transient() -> Iterator[None]:
    """Turn "the database is not there" into SinkUnavailable: the stream pauses and retries."""
    try:
        yield
    except TRANSIENT as e:
        raise SinkUnavailable(f"PostgreSQL: {type(e).__name__}: {e}") from e


class PostgresWriter:
    """A small pool; subclasses write in `write` and may prepare tables in `on_connect`."""

    name = "postgres"

    def __init__(self, settings: PostgresSettings, pool_size: int = 2) -> None:
        self.settings = settings
        self.pool_size = pool_size
        self._pool: asyncpg.Pool | None = None

    async def on_connect(self, conn: asyncpg.Connection) -> None:
        """Called once the pool exists (create tables, ...)."""

    async def start(self) -> None:
        with unavailable_on_transient():
            pool = await asyncpg.create_pool(**self.settings.connect_kwargs(), min_size=1, max_size=self.pool_size,
                                             timeout=10, command_timeout=60)
            try:
                async with pool.acquire() as conn:
                    await self.on_connect(conn)
            except BaseException:
                await pool.close()
                raise
            self._pool = pool

    async def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            await self.start()
        assert self._pool is not None
        return self._pool

    async def flush(self) -> None:
        """Nothing is buffered: `write` commits."""

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
