"""The registry, PostgreSQL and Parquet sides of `fieldstream status`."""

from __future__ import annotations

import asyncio
import os

import asyncpg
import pyarrow.fs as pafs
from confluent_kafka.schema_registry import SchemaRegistryClient

from fieldstream.config import Settings
from fieldstream.ops.status import LakeState, Subject, TableRows, ours

CORE_TABLES = ("readings", "devices", "alerts")
WINDOW_TABLE_PREFIX = "windows_"


def subjects(settings: Settings, timeout_s: float, topics: list[str] | None) -> tuple[list[Subject], int]:
    """Subjects with their versions (only those of `topics` unless None) and how many were left out.

    One request per subject for its versions: a shared registry may hold thousands.
    """
    # No retries: a registry that does not answer within the timeout is reported as such.
    client = SchemaRegistryClient({**settings.registry.client_config(), "timeout": timeout_s, "max.retries": 0})
    names = sorted(client.get_subjects())
    wanted = [n for n in names if topics is None or ours(n, topics)]
    return [Subject(name, sorted(client.get_versions(name))) for name in wanted], len(names) - len(wanted)


def table_rows(settings: Settings, timeout_s: float, count_timeout_s: float) -> list[TableRows]:
    return asyncio.run(_table_rows(settings, timeout_s, count_timeout_s))


async def _table_rows(settings: Settings, timeout_s: float, count_timeout_s: float) -> list[TableRows]:
    conn = await asyncpg.connect(**settings.pg.connect_kwargs(), timeout=timeout_s)
    try:
        found = {
            r["relname"]: r["estimate"]
            for r in await conn.fetch(
                r"""
                SELECT c.relname, c.reltuples::bigint AS estimate
                FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')
                  AND (c.relname = ANY($1::text[]) OR c.relname LIKE 'windows\_%')
                """,
                list(CORE_TABLES),
                timeout=timeout_s,
            )
        }
        timescale = bool(await conn.fetchval(
            "SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'", timeout=timeout_s))
        out = [TableRows(name, None, "missing") for name in CORE_TABLES if name not in found]
        for name in sorted(found):
            out.append(await _count(conn, name, found[name], timescale, count_timeout_s))
        rank = {name: i for i, name in enumerate(CORE_TABLES)}
        return sorted(out, key=lambda t: (rank.get(t.table, len(rank)), t.table))
    finally:
        await conn.close()


async def _count(conn: asyncpg.Connection, table: str, reltuples: int, timescale: bool,
                 count_timeout_s: float) -> TableRows:
    """Exact count(*) when it finishes within the time limit, else the planner's estimate."""
    ident = '"' + table.replace('"', '""') + '"'
    try:
        async with conn.transaction(readonly=True):
            # The server cancels the count itself: no half-read connection on the client side.
            await conn.execute(f"SET LOCAL statement_timeout = {int(count_timeout_s * 1000)}")
            return TableRows(table, await conn.fetchval(f"SELECT count(*) FROM {ident}"), "exact")
    except asyncpg.QueryCanceledError:
        pass
    if timescale:
        # A hypertable's parent holds no rows, so its reltuples says nothing; this sums the chunks.
        estimate = await conn.fetchval("SELECT approximate_row_count($1::regclass)", ident)
        return TableRows(table, int(estimate), "approximate_row_count")
    return TableRows(table, reltuples if reltuples >= 0 else None, "reltuples")  # -1: never analysed


def lake_state(settings: Settings) -> LakeState:
    """Parquet files under the lake path; the newest by modification time."""
    path = settings.parquet.path
    fs, root = pafs.FileSystem.from_uri(path if "://" in path else os.path.abspath(path))
    if fs.get_file_info(root).type == pafs.FileType.File:
        raise NotADirectoryError(f"{root} is a file: the worker cannot write the lake there")
    infos = fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
    # Files being written are ".<name>.tmp"; only finished ones count.
    files = [i for i in infos if i.type == pafs.FileType.File and i.base_name.endswith(".parquet")
             and not i.base_name.startswith(".")]
    newest = max(files, key=lambda i: i.mtime.timestamp() if i.mtime else float("-inf"), default=None)
    return LakeState(
        path=path if "://" not in path else root,
        files=len(files),
        bytes=sum(i.size or 0 for i in files),
        newest=newest.path if newest else None,
        newest_modified=newest.mtime if newest else None,
    )
