"""The sinks alone, on generated in-memory readings (no Kafka, no Faust).

    python bench/sinks.py --readings 200000 [--batches 2000,5000,10000] [--repeat 2] [--profile] [--record]

PostgreSQL: fieldstream.sinks.timescale.TimescaleSink.write, batch after batch
(each one transaction: COPY into the staging table, INSERT ... ON CONFLICT DO
NOTHING, the devices upsert), into a scratch database this script creates
(`fieldstream_bench_<random>`) and drops at the end; the sink runs the
migrations itself on start. The tables are truncated before every pass, so each
batch size starts from an empty table.

Parquet: fieldstream.sinks.parquet.ParquetSink.write in batches of 5000 plus the
final flush, into a temporary directory, with the default ParquetSettings
(zstd, fsync, roll at 200k rows or per partition and event hour).

The readings look like bench/preload.py's (10,000 devices of 4 types, 2-4 metrics,
collars with a location; 12 partitions with increasing offsets). Each figure is
the best of --repeat passes (the machine may be shared). Targets on this machine:
PostgreSQL >= 100,000 readings/s, Parquet >= 300,000 readings/s.

--profile runs one more pass of each sink under cProfile and prints the top
functions (cumulative), to see where the Python time goes.

--baseline DIR measures another version of the sink modules in the same run,
alternating pass by pass with the working tree's (on a shared machine, figures
from different runs do not compare). For the last commit's:

    mkdir -p /tmp/sinks-base && for f in timescale parquet parquet_format; do
        git show HEAD:fieldstream/sinks/$f.py > /tmp/sinks-base/$f.py; done
    python bench/sinks.py --readings 200000 --baseline /tmp/sinks-base
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import importlib.util
import io
import pstats
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType

import asyncpg
import pyarrow.dataset as ds

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import fmt, fmt_int, markdown_table, pg_server_version_async, record  # noqa: E402
from preload import reading as preload_record  # noqa: E402

from fieldstream.config import load_settings  # noqa: E402
from fieldstream.config.parquet import ParquetSettings  # noqa: E402
from fieldstream.schemas.reading import Reading  # noqa: E402
from fieldstream.sinks.parquet import ParquetSink  # noqa: E402
from fieldstream.sinks.timescale import TimescaleSink  # noqa: E402

PG_TARGET = 100_000
PARQUET_TARGET = 300_000
PARTITIONS = 12
PARQUET_BATCH = 5000


def make_readings(n: int, devices: int = 10_000, topic: str = "bench.readings") -> list[Reading]:
    """n readings shaped like bench/preload.py's, with Kafka lineage as the decoder sets it."""
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    next_offset = [0] * PARTITIONS
    out = []
    for i in range(n):
        r = Reading.from_record(preload_record(i, devices, start, 10.0), schema_id=2, schema_version=2)
        p = (i % devices) % PARTITIONS
        r.topic, r.partition, r.offset = topic, p, next_offset[p]
        next_offset[p] += 1
        out.append(r)
    return out


def batches(readings: Sequence[Reading], size: int) -> list[Sequence[Reading]]:
    return [readings[i:i + size] for i in range(0, len(readings), size)]


# -- PostgreSQL ------------------------------------------------------------------------
async def create_database(name: str) -> None:
    settings = load_settings().pg
    conn = await asyncpg.connect(**settings.connect_kwargs(), timeout=10)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def drop_database(name: str, retry_s: float = 120) -> None:
    """Drop the scratch database, retrying while PostgreSQL is unreachable (it is shared)."""
    settings = load_settings().pg
    deadline = time.monotonic() + retry_s
    while True:
        try:
            conn = await asyncpg.connect(**settings.connect_kwargs(), timeout=10)
            try:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await conn.close()
            return
        except (OSError, asyncpg.exceptions.PostgresConnectionError, asyncpg.exceptions.CannotConnectNowError):
            if time.monotonic() > deadline:
                print(f"could not drop scratch database {name}: drop it by hand", file=sys.stderr)
                raise
            await asyncio.sleep(5)


@dataclass
class Variant:
    """The sink classes one measurement uses: the working tree's, or a baseline's (--baseline)."""

    name: str
    timescale: type
    parquet: type


def load_baseline(directory: Path) -> Variant:
    """timescale.py, parquet.py and parquet_format.py from `directory`, as modules of their own
    (the baseline parquet.py gets the baseline parquet_format's readings_table)."""

    def load(name: str) -> ModuleType:
        spec = importlib.util.spec_from_file_location(f"baseline_{name}", directory / f"{name}.py")
        if spec is None or spec.loader is None:
            raise SystemExit(f"cannot load {directory / name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
        return module

    fmt_module, ts_module, pq_module = load("parquet_format"), load("timescale"), load("parquet")
    pq_module.readings_table = fmt_module.readings_table
    return Variant("baseline", ts_module.TimescaleSink, pq_module.ParquetSink)


async def pg_pass(sink: TimescaleSink, readings: Sequence[Reading], size: int, database: str) -> float:
    """Seconds to write every reading in batches of `size`, starting from empty tables."""
    conn = await asyncpg.connect(**load_settings().pg.connect_kwargs(database=database), timeout=10)
    try:
        await conn.execute("TRUNCATE readings, devices")
        await conn.execute("CHECKPOINT")  # do not bill this pass for the previous one's dirty pages
    finally:
        await conn.close()
    chunks = batches(readings, size)
    gc.collect()
    t0 = time.perf_counter()
    for chunk in chunks:
        await sink.write(chunk)
    elapsed = time.perf_counter() - t0
    conn = await asyncpg.connect(**load_settings().pg.connect_kwargs(database=database), timeout=10)
    try:
        landed = await conn.fetchval("SELECT count(*) FROM readings")
        counted = await conn.fetchval("SELECT coalesce(sum(readings), 0) FROM devices")
    finally:
        await conn.close()
    if landed != len(readings) or counted != len(readings):
        raise SystemExit(f"PostgreSQL: {landed} rows and {counted} device counts for {len(readings)} readings")
    return elapsed


async def bench_pg(readings: list[Reading], sizes: list[int], repeat: int, profile: bool,
                   variants: list[Variant]) -> tuple[dict[tuple[str, int], float], str, str]:
    """(variant, batch size) → readings/s, best of `repeat`; the variants alternate pass by pass."""
    database = f"fieldstream_bench_{uuid.uuid4().hex[:8]}"
    await create_database(database)
    settings = load_settings().pg.model_copy(update={"database": database})
    results: dict[tuple[str, int], float] = {}
    report = ""
    try:
        version = await pg_server_version_async(database)
        sinks = {v.name: v.timescale(settings) for v in variants}
        for sink in sinks.values():
            await sink.start()
        try:
            for size in sizes:
                best = {name: float("inf") for name in sinks}
                for _ in range(repeat):
                    for name, sink in sinks.items():
                        best[name] = min(best[name], await pg_pass(sink, readings, size, database))
                for name in sinks:
                    results[(name, size)] = len(readings) / best[name]
                    print(f"  PostgreSQL {name:<8}, batches of {size:>6,}: {results[(name, size)]:>10,.0f} "
                          "readings/s", flush=True)
            if profile:
                size = sizes[len(sizes) // 2]
                prof = cProfile.Profile()
                prof.enable()
                await pg_pass(sinks["current"], readings, size, database)
                prof.disable()
                report = profile_report(prof, f"PostgreSQL sink, batches of {size}")
        finally:
            for sink in sinks.values():
                await sink.close()
    finally:
        await drop_database(database)
    return results, version, report


# -- Parquet -------------------------------------------------------------------------------
async def parquet_pass(sink_cls: type, readings: Sequence[Reading]) -> tuple[float, int]:
    root = tempfile.mkdtemp(prefix="fieldstream-bench-parquet-")
    try:
        sink = sink_cls(ParquetSettings(path=root))
        await sink.start()
        chunks = batches(readings, PARQUET_BATCH)
        gc.collect()
        t0 = time.perf_counter()
        for chunk in chunks:
            await sink.write(chunk)
        await sink.flush()
        elapsed = time.perf_counter() - t0
        rows = ds.dataset(root, format="parquet", partitioning="hive").count_rows()
        if rows != len(readings):
            raise SystemExit(f"Parquet: {rows} rows for {len(readings)} readings")
        return elapsed, sink.files_written
    finally:
        shutil.rmtree(root, ignore_errors=True)


async def bench_parquet(readings: list[Reading], repeat: int, profile: bool, variants: list[Variant]
                        ) -> tuple[dict[str, float], int, str]:
    best = {v.name: float("inf") for v in variants}
    files = 0
    for _ in range(repeat):
        for v in variants:
            elapsed, files = await parquet_pass(v.parquet, readings)
            best[v.name] = min(best[v.name], elapsed)
    rates = {name: len(readings) / b for name, b in best.items()}
    for name, rate in rates.items():
        print(f"  Parquet {name:<8}, batches of {PARQUET_BATCH:,} + flush: {rate:>10,.0f} readings/s "
              f"({files} files)", flush=True)
    report = ""
    if profile:
        prof = cProfile.Profile()
        prof.enable()
        await parquet_pass(variants[0].parquet, readings)
        prof.disable()
        report = profile_report(prof, "Parquet sink")
    return rates, files, report


def profile_report(prof: cProfile.Profile, title: str, top: int = 25) -> str:
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)
    return f"--- cProfile: {title} ---\n{out.getvalue()}"


def table_row(label: str, rate: float, baseline: float | None, target: int, with_baseline: bool) -> list[str]:
    row = [label, fmt_int(rate)]
    if with_baseline:
        row += [fmt_int(baseline) if baseline else "–", f"{rate / baseline:.2f}×" if baseline else "–"]
    return row + [fmt_int(target), fmt(rate / target, 2), "yes" if rate >= target else "**no**"]


async def main_async(args: argparse.Namespace) -> None:
    sizes = [int(s) for s in args.batches.split(",")]
    variants = [Variant("current", TimescaleSink, ParquetSink)]
    if args.baseline:
        variants.append(load_baseline(Path(args.baseline)))
    with_baseline = len(variants) > 1
    t0 = time.perf_counter()
    readings = make_readings(args.readings)
    print(f"generated {len(readings):,} readings in {time.perf_counter() - t0:.1f}s")
    which = {s.strip() for s in args.sinks.split(",")}
    pg: dict[tuple[str, int], float] = {}
    pg_version, pg_profile = None, ""
    if "pg" in which:
        pg, pg_version, pg_profile = await bench_pg(readings, sizes, args.repeat, args.profile, variants)
    parquet: dict[str, float] = {}
    files, pq_profile = 0, ""
    if "parquet" in which:
        parquet, files, pq_profile = await bench_parquet(readings, args.repeat, args.profile, variants)
    if args.profile:
        print(pg_profile)
        print(pq_profile)

    rows = [table_row(f"PostgreSQL (TimescaleSink.write), batches of {size:,}", pg[("current", size)],
                      pg.get(("baseline", size)), PG_TARGET, with_baseline) for size in sizes if pg]
    if parquet:
        rows.append(table_row(f"Parquet (ParquetSink.write ×{PARQUET_BATCH:,} + flush, {files} files)",
                              parquet["current"], parquet.get("baseline"), PARQUET_TARGET, with_baseline))
    headers = ["sink", "readings/s"] + (["baseline readings/s", "speed-up"] if with_baseline else [])
    headers += ["target", "ratio to target", "meets target"]
    table = markdown_table(headers, rows, align="l" + "r" * (len(headers) - 2) + "l")
    print()
    print(table)
    if args.record:
        notes = (f"{args.readings:,} generated readings (bench/preload.py's shape: 10,000 devices, 4 types, "
                 "2-4 metrics, collars with a location; 12 partitions, interleaved), no Kafka; best of "
                 f"{args.repeat} pass(es). PostgreSQL: scratch database, tables truncated (and a CHECKPOINT) "
                 "before each pass, every batch one transaction. Parquet: default ParquetSettings (zstd, fsync) "
                 "into a temporary directory.")
        if with_baseline:
            notes += (f" Baseline: the sink modules in `{args.baseline}`, measured in the same run, its passes "
                      "alternating with the current code's.")
        record(f"Sinks alone ({args.readings:,} readings)", f"{table}\n\n{notes}", pg_version=pg_version)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--readings", type=int, default=200_000)
    ap.add_argument("--batches", default="2000,5000,10000", help="PostgreSQL batch sizes, comma-separated")
    ap.add_argument("--repeat", type=int, default=2, help="Passes per figure; the best is reported")
    ap.add_argument("--sinks", default="pg,parquet", help="Which sinks to run: pg, parquet or both")
    ap.add_argument("--baseline", metavar="DIR",
                    help="Also measure the timescale.py, parquet.py and parquet_format.py in DIR (alternating)")
    ap.add_argument("--profile", action="store_true", help="One more pass of each sink under cProfile")
    ap.add_argument("--record", action="store_true", help="Append a section to docs/BENCHMARKS.md")
    asyncio.run(main_async(ap.parse_args()))


if __name__ == "__main__":
    main()
