"""Full-pipeline throughput (1 and 2 workers) and end-to-end latency at half load.

    python bench/pipeline.py --readings 2000000 --devices 10000 --partitions 12 --per-message 1 --record
    python bench/pipeline.py --readings 2000000 --devices 10000 --per-message 20 --record

Each run preloads a fresh topic, then starts K workers (fresh consumer group,
fresh scratch database, fresh Parquet directory) with the whole pipeline:
decode, validate, windows, detectors, PostgreSQL, Parquet, commits. It reports
sustained readings/s (between 10 % and 90 % of the input, from the workers'
own counters), CPU seconds per 1000 readings and peak RSS per worker. The
latency run offers half the measured one-worker rate for --latency-s seconds
with event time = send time, and reads end-to-end latency (reading time to
committed in PostgreSQL) from the rows themselves.

--variant compares worker settings side by side on the same topic, e.g.

    python bench/pipeline.py --readings 300000 --per-message 1 --workers 1 \
        --variant FIELDSTREAM_WINDOW_CHECKPOINT_S=5 --variant ''
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).parent))
from common import (  # noqa: E402
    append_section, delete_consumer_groups, delete_topics_starting, exit_on_sigterm, free_port, machine_summary,
    markdown_table,
)
from preload import preload, reading  # noqa: E402

from fieldstream.config import load_settings  # noqa: E402
from fieldstream.devices import DeviceProducer  # noqa: E402

BIN = Path(sys.executable).parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class RunResult:
    label: str
    workers: int
    readings: int
    seconds: float
    rate: float
    cpu_ms_per_1000: float
    peak_rss_mb: float


def scrape(port: int, name: str) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:  # noqa: S310
            text = resp.read().decode()
    except OSError:
        return 0.0
    # The parser names a counter's family without its `_total`; its samples keep it.
    return sum(s.value for family in text_string_to_metric_families(text) for s in family.samples
               if s.name == name)


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_status_mb(pid: int, key: str) -> float:
    """A size from /proc/PID/status in MB: VmRSS (resident now), VmHWM (its peak)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def _admin(settings, sql: str) -> None:
    conn = await asyncpg.connect(**settings.pg.connect_kwargs(database="postgres"))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def worker_env(topic: str, database: str, lake: Path, app_id: str,
               extra: dict[str, str] | None = None) -> dict[str, str]:
    """A bench worker's own topics, database, lake and group, plus `extra` settings (a variant)."""
    return {
        "FIELDSTREAM_TOPIC_READINGS": topic,
        "FIELDSTREAM_TOPIC_WINDOWS": f"{topic}.windows",
        "FIELDSTREAM_TOPIC_ALERTS": f"{topic}.alerts",
        "FIELDSTREAM_TOPIC_DLQ": f"{topic}.dlq",
        "FIELDSTREAM_TOPIC_LATE": f"{topic}.late",
        "FIELDSTREAM_PG_DATABASE": database,
        "FIELDSTREAM_PARQUET_PATH": str(lake),
        "FIELDSTREAM_WORKER_APP_ID": app_id,
        "FIELDSTREAM_WORKER_DATA_DIR": str(lake.parent / "worker"),
        **(extra or {}),
    }


class Workers:
    def __init__(self, n: int, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.ports = [free_port() for _ in range(n)]  # kept across a restart: scraped by port
        self.procs = [self._start(i) for i in range(n)]

    def _start(self, i: int) -> subprocess.Popen:
        log = open(self.log_dir / f"worker-{i}.log", "ab")  # noqa: SIM115 - closed with the process
        return subprocess.Popen(
            [str(BIN / "fieldstream"), "worker", "-l", "info", "--web-port", str(self.ports[i])],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.env}, start_new_session=True)

    def kill_and_restart(self, i: int) -> None:
        os.killpg(self.procs[i].pid, signal.SIGKILL)
        self.procs[i].wait()
        self.procs[i] = self._start(i)

    def out_total(self) -> float:
        return sum(scrape(p, "fieldstream_readings_out_total") for p in self.ports)

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


def run_pipeline(settings, topic: str, n: int, k: int, label: str, workdir: Path, timeout_s: float,
                 extra_env: dict[str, str] | None = None) -> RunResult:
    database = f"bench_{uuid.uuid4().hex[:8]}"
    asyncio.run(_admin(settings, f'CREATE DATABASE "{database}"'))
    lake = workdir / f"lake-{database}"
    app_id = f"bench-{database}"
    workers = Workers(k, worker_env(topic, database, lake, app_id, extra_env), workdir)
    try:
        marks: dict[float, float] = {}
        t0 = time.monotonic()
        done = 0.0
        while time.monotonic() - t0 < timeout_s:
            time.sleep(0.5)
            done = workers.out_total()
            for frac in (0.1, 0.9):
                if frac not in marks and done >= frac * n:
                    marks[frac] = time.monotonic()
            if done >= n:
                break
            if any(p.poll() is not None for p in workers.procs):
                raise RuntimeError(f"a worker exited; see {workdir}")
        if done < n:
            raise RuntimeError(f"{label}: only {done:.0f} of {n} readings within {timeout_s:.0f}s")
        seconds = marks[0.9] - marks[0.1]
        cpu = sum(proc_cpu_s(p.pid) for p in workers.procs)
        rss = max(proc_status_mb(p.pid, "VmHWM") for p in workers.procs)
        return RunResult(label, k, n, seconds, 0.8 * n / seconds, cpu / n * 1e6, rss)
    finally:
        workers.stop()
        forget_run(settings, database, app_id, topic)


class OfferedLoad:
    """Single-reading messages from `devices` devices at `rate` readings/s, event time = send time,
    from a thread until stopped (the latency and soak runs)."""

    def __init__(self, settings, topic: str, rate: float, devices: int) -> None:
        self.settings, self.topic, self.rate, self.devices = settings, topic, rate, devices
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._offer, daemon=True)

    def __enter__(self) -> OfferedLoad:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _offer(self) -> None:
        producer = DeviceProducer(self.settings.kafka, self.settings.registry, self.topic, linger_ms=5)
        started = time.monotonic()
        while not self._stop.is_set():
            due = int((time.monotonic() - started) * self.rate)
            while self.sent < due:
                rec = reading(self.sent, self.devices, datetime.now(UTC), 10.0)
                rec["event_time"] = datetime.now(UTC)
                producer.send(rec)
                self.sent += 1
            producer.poll(0.001)
        producer.flush(30)


async def latency_percentiles(conn: asyncpg.Connection, skip_s: float = 10.0) -> dict[str, float]:
    """p50/p95/p99 of reading time → committed in PostgreSQL, over the rows after the first `skip_s`."""
    row = await conn.fetchrow(
        "SELECT count(*) AS n, "
        "percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM ingested_at - event_time)) p50, "
        "percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM ingested_at - event_time)) p95, "
        "percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM ingested_at - event_time)) p99 "
        "FROM readings WHERE event_time > (SELECT min(event_time) + $1 * interval '1 second' FROM readings)",
        skip_s)
    return {k: float(row[k] or 0) for k in ("n", "p50", "p95", "p99")}


def run_latency(settings, rate: float, seconds: float, devices: int, workdir: Path,
                extra_env: dict[str, str] | None = None, timeline: bool = False) -> dict[str, float]:
    topic = f"bench-lat-{uuid.uuid4().hex[:6]}.readings"
    preload(settings, topic, 0, devices, progress=False)  # creates the topic, registers schemas
    database = f"bench_{uuid.uuid4().hex[:8]}"
    asyncio.run(_admin(settings, f'CREATE DATABASE "{database}"'))
    lake = workdir / f"lake-{database}"
    app_id = f"bench-{database}"
    workers = Workers(1, worker_env(topic, database, lake, app_id, extra_env), workdir)
    try:
        time.sleep(15)  # worker start-up and first assignment
        with OfferedLoad(settings, topic, rate, devices):
            time.sleep(seconds)
        time.sleep(5)

        async def percentiles() -> dict[str, float]:
            conn = await asyncpg.connect(**settings.pg.connect_kwargs(database=database))
            try:
                if timeline:
                    await print_timeline(conn)
                return await latency_percentiles(conn)
            finally:
                await conn.close()

        return asyncio.run(percentiles())
    finally:
        workers.stop()
        forget_run(settings, database, app_id, topic)
        delete_topics_starting(topic)


def forget_run(settings, database: str, app_id: str, topic: str) -> None:
    """Drop a leg's database, its output topics and changelogs, and its consumer group:
    a run of 2,000,000 readings leaves gigabytes in the local broker otherwise."""
    asyncio.run(_admin(settings, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
    delete_topics_starting(f"{topic}.", f"{app_id}-")
    delete_consumer_groups([app_id], quiet=True)


async def print_timeline(conn: asyncpg.Connection, step_s: int = 2) -> None:
    """Latency by `step_s` seconds of event time: where in the run the tail comes from."""
    rows = await conn.fetch(
        "SELECT floor(extract(epoch FROM event_time - t0) / $1)::int * $1 AS at, count(*) AS n, "
        "percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM ingested_at - event_time)) AS p50, "
        "max(extract(epoch FROM ingested_at - event_time)) AS worst "
        "FROM readings, (SELECT min(event_time) AS t0 FROM readings) s GROUP BY 1 ORDER BY 1", step_s)
    print(markdown_table(["event time s", "readings", "p50 s", "max s"],
                         [[r["at"], r["n"], f"{r['p50']:.2f}", f"{r['worst']:.2f}"] for r in rows]))


def settle(below: float = 1.0, max_s: float = 180.0) -> None:
    """Wait for the machine to quieten before a latency leg: the leg before it ends by dropping
    a database and gigabytes of topics, and a latency leg run during that measured 3.7 s p99
    where the same code alone measured 0.74 s."""
    started = time.monotonic()
    while os.getloadavg()[0] > below and time.monotonic() - started < max_s:
        time.sleep(5)
    print(f"settled for {time.monotonic() - started:.0f}s (load average {os.getloadavg()[0]:.2f})")


def settings_of(variant: str) -> dict[str, str]:
    """'NAME=VALUE,NAME=VALUE' → the worker environment it adds."""
    return dict(kv.split("=", 1) for kv in variant.split(",") if kv)


def main() -> None:
    exit_on_sigterm()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--readings", type=int, default=2_000_000)
    p.add_argument("--devices", type=int, default=10_000)
    p.add_argument("--partitions", type=int, default=12)
    p.add_argument("--per-message", type=int, default=1, help="Readings per Kafka message (ReadingBatch when > 1)")
    p.add_argument("--workers", default="1,2", help="Worker counts to run, comma-separated")
    p.add_argument("--latency-s", type=float, default=60.0, help="Length of the half-load latency run (0: skip)")
    p.add_argument("--latency-rate", type=float, default=0.0,
                   help="Readings/s offered in the latency run (default: half the first throughput leg's rate)")
    p.add_argument("--variant", action="append", default=None, metavar="NAME=VALUE[,NAME=VALUE]",
                   help="Worker settings of one variant; every leg runs once per --variant, side by side "
                        "('' = the defaults); default: one variant, the defaults")
    p.add_argument("--timeline", action="store_true", help="Print the latency run's latency by 2 s of event time")
    p.add_argument("--timeout-s", type=float, default=1800.0)
    p.add_argument("--record", action="store_true", help="Append the results to docs/BENCHMARKS.md")
    args = p.parse_args()

    settings = load_settings()
    workdir = Path(tempfile.mkdtemp(prefix="fieldstream-bench-"))
    topic = f"bench-{uuid.uuid4().hex[:6]}.readings"
    print(f"preloading {args.readings:,} readings from {args.devices:,} devices into {topic} "
          f"({args.partitions} partitions, {args.per_message} per message)")
    preload(settings, topic, args.readings, args.devices, args.partitions, args.per_message)

    variants = args.variant or [""]
    results: dict[str, list[RunResult]] = {v: [] for v in variants}
    try:
        for k in (int(x) for x in args.workers.split(",") if x):
            for variant in variants:
                label = f"{k} worker{'s' if k > 1 else ''}, {args.per_message} reading(s)/message" + \
                        (f", {variant}" if variant else "")
                print(f"running: {label}")
                results[variant].append(run_pipeline(settings, topic, args.readings, k, label, workdir,
                                                     args.timeout_s, settings_of(variant)))
                print(f"  {results[variant][-1].rate:,.0f} readings/s")
    finally:
        delete_topics_starting(topic)
    rows = [[r.label, f"{r.rate:,.0f}", f"{r.cpu_ms_per_1000:,.0f}", f"{r.peak_rss_mb:,.0f}"]
            for k_results in zip(*results.values()) for r in k_results]
    table = markdown_table(["run", "readings/s", "CPU ms / 1000 readings", "peak RSS MB / worker"], rows) \
        if rows else ""
    for variant, legs in results.items():
        if len(legs) >= 2:
            table += f"\n\nScaling{f' ({variant})' if variant else ''}: {legs[1].rate / legs[0].rate:.2f}x " \
                     f"from {legs[0].workers} to {legs[1].workers} workers.\n"
    first = results[variants[0]]
    if args.latency_s > 0 and not args.latency_rate and (not first or args.per_message != 1):
        # The latency run offers single-reading messages: half a batched rate would be a backlog.
        print("latency run skipped: it needs --latency-rate, or a single-reading throughput leg to halve")
    elif args.latency_s > 0:
        offered = args.latency_rate or first[0].rate / 2
        for leg in variants:
            settle()
            print(f"latency: {offered:,.0f} readings/s for {args.latency_s:.0f}s, settings: {leg or 'defaults'}")
            lat = run_latency(settings, offered, args.latency_s, args.devices, workdir, settings_of(leg),
                              args.timeline)
            table += (f"\nEnd-to-end latency (event time = send time → committed in PostgreSQL) at "
                      f"{offered:,.0f} single-reading messages/s offered to 1 worker, settings "
                      f"{leg or 'defaults'}, {lat['n']:,.0f} readings: "
                      f"p50 {lat['p50']:.3f} s, p95 {lat['p95']:.3f} s, p99 {lat['p99']:.3f} s\n")
    print(table)
    if args.record:
        command = "python bench/pipeline.py " + shlex.join(sys.argv[1:])
        append_section("Full pipeline", command, machine_summary(), table)


if __name__ == "__main__":
    main()
