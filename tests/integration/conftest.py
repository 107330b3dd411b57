from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from fieldstream.config.settings import Settings, _load
from fieldstream.schemas.admin import register_bundled
from fieldstream.sinks.migrations import migrate
from fieldstream.stack import manager
from fieldstream.topics import ensure_topics

from .harness import Scenario, Worker


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test here needs the stack (`-m integration` / `-m "not integration"`): a
    `pytestmark` in a conftest applies to no module."""
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def stack_settings() -> Settings:
    settings = _load()
    manager.up(settings)  # idempotent: a no-op when `make test` already started it

    async def migrate_once() -> None:
        conn = await asyncpg.connect(**settings.pg.connect_kwargs())
        try:
            await migrate(conn, settings.pg)
        finally:
            await conn.close()

    asyncio.run(migrate_once())  # tests may query tables before a worker has started
    return settings


@pytest.fixture
def scenario(stack_settings, tmp_path) -> Scenario:
    sc = Scenario(tmp_path)
    settings = sc.settings()
    ensure_topics(settings)
    register_bundled(settings)
    return sc


@pytest.fixture
def workers():
    started: list[Worker] = []
    yield started
    for w in started:
        w.kill()


def pg_fetch(settings: Settings, sql: str, *args):
    async def run():
        conn = await asyncpg.connect(**settings.pg.connect_kwargs())
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()

    return asyncio.run(run())
