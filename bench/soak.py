"""A live worker over a long run: does its memory stay flat, does it keep up, how late are readings?

    python bench/soak.py [--devices 10000] [--rate 1000] [--minutes 60] [--report-min 5] [--record]

The throughput runs (bench/pipeline.py) measure a worker catching up on a backlog, which is
where its peak memory is highest. This one measures the other case, the one a deployment
lives in: one worker (the whole pipeline: decode, validate, windows, detectors, PostgreSQL,
Parquet, commits) fed live by `--devices` devices at `--rate` readings/s in all (the default,
10,000 devices every 10 s, is the simulator's fleet size at its usual interval), with event
time = send time, for `--minutes`. Every `--report-min` minutes it reports the worker's
resident size, its peak so far, what it wrote in that stretch, its consumer lag, the devices
with closed windows waiting, the Parquet bytes buffered and the end-to-end latency (reading
time → committed in PostgreSQL, from the rows themselves) of the readings sent in that
stretch; at the end, the latency over the whole run. The bench's own producer runs on the
same machine: at a rate near the machine's capacity it competes with the worker, Kafka and
PostgreSQL for the cores, which shows in the latency first.

--variant runs one soak per set of worker settings, one after the other, e.g.

    python bench/soak.py --minutes 4 --report-min 1 --variant FIELDSTREAM_WORKER_FETCH_MIN_BYTES=65536 --variant ''
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import delete_topics_starting, exit_on_sigterm, fmt_int, markdown_table, record  # noqa: E402
from pipeline import (  # noqa: E402
    OfferedLoad, Workers, _admin, forget_run, latency_percentiles, proc_cpu_s, proc_status_mb, scrape, settings_of,
    worker_env,
)
from preload import preload  # noqa: E402

from fieldstream.config import load_settings  # noqa: E402


@dataclass(frozen=True)
class Sample:
    minute: float
    rss_mb: float
    peak_mb: float
    readings_out: float
    cpu_s: float
    lag: float
    windows_waiting: float
    parquet_mb: float


def sample(workers: Workers, started: float) -> Sample:
    pid, port = workers.procs[0].pid, workers.ports[0]
    return Sample(
        minute=(time.monotonic() - started) / 60,
        rss_mb=proc_status_mb(pid, "VmRSS"),
        peak_mb=proc_status_mb(pid, "VmHWM"),
        readings_out=scrape(port, "fieldstream_readings_out_total"),
        cpu_s=proc_cpu_s(pid),
        lag=scrape(port, "fieldstream_consumer_lag"),
        windows_waiting=scrape(port, "fieldstream_windows_waiting_devices"),
        parquet_mb=scrape(port, "fieldstream_parquet_buffered_bytes") / 2**20,
    )


def report_rows(samples: list[Sample], latency: dict[int, tuple[float, float]]) -> list[list[str]]:
    """A row per report interval; `latency`: (p50, p99) of the readings sent in interval k (from 0)."""
    rows = []
    for k, (last, s) in enumerate(zip(samples, samples[1:], strict=False)):
        minutes = s.minute - last.minute
        written = s.readings_out - last.readings_out
        p50, p99 = latency.get(k, (math.nan, math.nan))
        rows.append([f"{s.minute:.0f}", f"{s.rss_mb:.0f}", f"{s.peak_mb:.0f}", fmt_int(written / minutes / 60),
                     f"{(s.cpu_s - last.cpu_s) / max(written, 1) * 1e6:.0f}", fmt_int(s.lag),
                     fmt_int(s.windows_waiting), f"{s.parquet_mb:.1f}", f"{p50:.2f}", f"{p99:.2f}"])
    return rows


async def latency_by_interval(conn: asyncpg.Connection, since: datetime,
                              seconds: float) -> dict[int, tuple[float, float]]:
    """(p50, p99) end-to-end latency of the readings sent in each `seconds` since `since`."""
    rows = await conn.fetch(
        "SELECT floor(extract(epoch FROM event_time - $1) / $2)::int AS k, "
        "percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM ingested_at - event_time)) AS p50, "
        "percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM ingested_at - event_time)) AS p99 "
        "FROM readings GROUP BY 1 ORDER BY 1", since, seconds)
    return {r["k"]: (r["p50"], r["p99"]) for r in rows}


@dataclass(frozen=True)
class SoakResult:
    samples: list[Sample]
    final: Sample
    offered: int
    latency: dict[str, float]
    latency_by_row: dict[int, tuple[float, float]]


def soak(settings, args: argparse.Namespace, extra_env: dict[str, str]) -> SoakResult:
    workdir = Path(tempfile.mkdtemp(prefix="fieldstream-soak-"))
    topic = f"bench-soak-{uuid.uuid4().hex[:6]}.readings"
    preload(settings, topic, 0, args.devices, args.partitions, progress=False)  # the topic and schemas
    database = f"bench_{uuid.uuid4().hex[:8]}"
    asyncio.run(_admin(settings, f'CREATE DATABASE "{database}"'))
    app_id = f"bench-{database}"
    workers = Workers(1, worker_env(topic, database, workdir / "lake", app_id, extra_env), workdir)
    samples: list[Sample] = []
    try:
        time.sleep(15)  # start-up and first assignment
        started, started_at = time.monotonic(), datetime.now(UTC)
        samples.append(sample(workers, started))
        with OfferedLoad(settings, topic, args.rate, args.devices) as load:
            next_report = args.report_min
            while samples[-1].minute < args.minutes:
                time.sleep(min(10.0, max(0.0, (next_report - samples[-1].minute) * 60)))
                if workers.procs[0].poll() is not None:
                    raise RuntimeError(f"the worker exited; see {workdir}")
                s = sample(workers, started)
                if s.minute >= next_report - 1e-6:
                    samples.append(s)
                    next_report += args.report_min
                    print(f"{s.minute:5.1f} min: RSS {s.rss_mb:.0f} MB (peak {s.peak_mb:.0f}), "
                          f"{s.readings_out:,.0f} readings out of {load.sent:,} offered, lag {s.lag:,.0f}",
                          flush=True)
        time.sleep(10)  # the last readings reach PostgreSQL
        final = sample(workers, started)

        async def percentiles() -> tuple[dict[str, float], dict[int, tuple[float, float]]]:
            conn = await asyncpg.connect(**settings.pg.connect_kwargs(database=database))
            try:
                return (await latency_percentiles(conn),
                        await latency_by_interval(conn, started_at, args.report_min * 60))
            finally:
                await conn.close()

        return SoakResult(samples, final, load.sent, *asyncio.run(percentiles()))
    finally:
        workers.stop()
        forget_run(settings, database, app_id, topic)
        delete_topics_starting(topic)


def describe(result: SoakResult, args: argparse.Namespace, variant: str) -> str:
    table = markdown_table(
        ["minute", "RSS MB", "peak RSS MB", "readings/s written", "CPU µs / reading", "consumer lag",
         "devices with windows waiting", "Parquet buffered MB", "latency p50 s", "latency p99 s"],
        report_rows(result.samples, result.latency_by_row))
    early = [s.rss_mb for s in result.samples if 0 < s.minute <= 2 * args.report_min + 1e-6]
    lat, final = result.latency, result.final
    return (f"One worker{f' ({variant})' if variant else ''} fed live by {args.devices:,} devices, "
            f"{args.rate:,.0f} readings/s offered in all (event time = send time), for {args.minutes:.0f} "
            f"minutes: {result.offered:,} readings offered, {final.readings_out:,.0f} written, "
            f"{final.cpu_s - result.samples[0].cpu_s:,.0f} CPU seconds.\n\n{table}\n\n"
            f"Resident size: {max(early, default=result.samples[0].rss_mb):.0f} MB at most in the first "
            f"{2 * args.report_min:.0f} minutes, {final.rss_mb:.0f} MB at the end, peak {final.peak_mb:.0f} MB. "
            f"End-to-end latency over {lat['n']:,.0f} readings (reading time → committed in PostgreSQL): "
            f"p50 {lat['p50']:.3f} s, p95 {lat['p95']:.3f} s, p99 {lat['p99']:.3f} s.\n")


def main() -> None:
    exit_on_sigterm()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--devices", type=int, default=10_000)
    p.add_argument("--rate", type=float, default=1_000.0, help="Readings/s offered, all devices together")
    p.add_argument("--minutes", type=float, default=60.0)
    p.add_argument("--report-min", type=float, default=5.0, help="Minutes between rows of the report")
    p.add_argument("--partitions", type=int, default=12)
    p.add_argument("--variant", action="append", default=None, metavar="NAME=VALUE[,NAME=VALUE]",
                   help="Worker settings of one run; one soak per --variant, one after the other "
                        "('' = the defaults); default: one run, the defaults")
    p.add_argument("--record", action="store_true", help="Append the results to docs/BENCHMARKS.md")
    args = p.parse_args()

    settings = load_settings()
    bodies = []
    for variant in args.variant or [""]:
        print(f"soak: {variant or 'defaults'}")
        bodies.append(describe(soak(settings, args, settings_of(variant)), args, variant))
        print(bodies[-1])
    if args.record:
        record(f"Live worker over {args.minutes:.0f} minutes ({args.devices:,} devices, "
               f"{args.rate:,.0f} readings/s)", "\n".join(bodies))


if __name__ == "__main__":
    main()
