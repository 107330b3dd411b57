"""The main job on the local stack: a simulated fleet through two workers into every sink.

Steps: create topics, register schemas, migrate the database, start two
workers, run the simulator, wait until the workers have caught up, stop them
cleanly, and report what landed where (deltas of this run).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pyarrow.dataset as pads
from confluent_kafka import Consumer, TopicPartition

from fieldstream.config import Settings
from fieldstream.schemas.admin import register_bundled
from fieldstream.sinks.migrations import migrate
from fieldstream.sinks.windows_pg import table_name
from fieldstream.topics import ensure_topics, watermark_offsets
from fieldstream.windows.specs import parse_specs

BIN = Path(sys.executable).parent


@dataclass
class Snapshot:
    tables: dict[str, int]
    topics: dict[str, int]
    parquet_rows: int
    parquet_files: int


def topic_messages(settings: Settings, topic: str) -> int:
    """Messages currently in `topic` (sum over partitions of high - low watermark)."""
    consumer = Consumer({**settings.kafka.confluent_config(), "group.id": "fieldstream-demo-counter"})
    try:
        md = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if md is None or md.error is not None:
            return 0
        total = 0
        for p in md.partitions:
            low, high = watermark_offsets(consumer, TopicPartition(topic, p))
            total += high - low
        return total
    finally:
        consumer.close()


def demo_tables(settings: Settings) -> list[str]:
    """The tables this configuration writes: core ones and one per configured window spec
    (tables of specs configured elsewhere, e.g. by other runs, are not this run's)."""
    windows = [table_name(spec.name) for spec in parse_specs(settings.window.specs)]
    return ["alerts", "devices", "readings", *sorted(windows)]


async def table_counts(settings: Settings) -> dict[str, int]:
    conn = await asyncpg.connect(**settings.pg.connect_kwargs())
    try:
        existing = {r["tablename"] for r in await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        return {name: await conn.fetchval(f'SELECT count(*) FROM "{name}"') if name in existing else 0
                for name in demo_tables(settings)}
    finally:
        await conn.close()


def parquet_counts(settings: Settings) -> tuple[int, int]:
    root = Path(settings.parquet.path)
    if not root.exists():
        return 0, 0
    files = [p for p in root.rglob("*.parquet") if not p.name.startswith(".")]
    if not files:
        return 0, 0
    return pads.dataset([str(f) for f in files], format="parquet").count_rows(), len(files)


def snapshot(settings: Settings) -> Snapshot:
    t = settings.topics
    rows, files = parquet_counts(settings)
    return Snapshot(
        tables=asyncio.run(table_counts(settings)),
        topics={name: topic_messages(settings, name) for name in (t.readings, t.dlq, t.windows, t.alerts, t.late)},
        parquet_rows=rows,
        parquet_files=files,
    )


def prepare(settings: Settings) -> None:
    ensure_topics(settings)
    register_bundled(settings)

    async def run() -> None:
        conn = await asyncpg.connect(**settings.pg.connect_kwargs())
        try:
            await migrate(conn, settings.pg)
        finally:
            await conn.close()

    asyncio.run(run())


class WorkerProcess:
    def __init__(self, n: int, web_port: int, log_dir: Path, env: dict[str, str]) -> None:
        self.log = log_dir / f"demo-worker-{n}.log"
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [str(BIN / "fieldstream"), "worker", "-l", "info", "--web-port", str(web_port)],
                stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **env}, start_new_session=True,
            )

    def stop(self, timeout_s: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode


def wait_caught_up(settings: Settings, before: Snapshot, sent: int, timeout_s: float, say) -> None:  # noqa: ANN001
    """Wait until the readings stop growing in PostgreSQL and Parquet for 15 s (or the timeout).

    Counts alone cannot say "done": duplicates are dropped, and a record read again
    after a rebalance may be dead-lettered twice (at least once, see docs/ARCHITECTURE.md)."""
    deadline = time.monotonic() + timeout_s
    last, stable_since = None, time.monotonic()
    while time.monotonic() < deadline:
        now = snapshot(settings)
        progress = (now.tables.get("readings", 0) - before.tables.get("readings", 0),
                    now.parquet_rows - before.parquet_rows,
                    now.topics[settings.topics.dlq] - before.topics[settings.topics.dlq])
        if progress != last:
            say(f"  caught up so far: {progress[0]} readings in PostgreSQL, {progress[1]} in Parquet, "
                f"{progress[2]} dead letters (of {sent} sent)")
            last, stable_since = progress, time.monotonic()
        elif time.monotonic() - stable_since > 15 and progress[0] > 0:
            return
        time.sleep(3)
