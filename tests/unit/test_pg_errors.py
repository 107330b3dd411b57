"""Which PostgreSQL errors pause the stream (retried) and which reach the record (dead-lettered)."""

from __future__ import annotations

import asyncpg
import pytest

from fieldstream.errors import SinkUnavailable
from fieldstream.sinks.pg import unavailable_on_transient


@pytest.mark.parametrize("error", [
    asyncpg.exceptions.CannotConnectNowError("the database system is shutting down"),
    asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"),
    # What a pooled connection terminated while idle raises on its next query.
    asyncpg.exceptions.InternalClientError("cannot switch to state 15; another operation (2) is in progress"),
    asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
    ConnectionRefusedError(111, "Connection refused"),
])
def test_the_database_going_away_is_a_pause_not_a_crash(error: Exception) -> None:
    with pytest.raises(SinkUnavailable, match=type(error).__name__):
        with unavailable_on_transient():
            raise error


def test_data_the_database_refuses_is_not_retried() -> None:
    with pytest.raises(asyncpg.exceptions.DataError):
        with unavailable_on_transient():
            raise asyncpg.exceptions.DataError("value out of range")
