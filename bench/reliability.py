"""The reliability run: kill workers, stop PostgreSQL, then prove nothing was lost or duplicated.

    python bench/reliability.py --readings 200000 --devices 500 --poison 50 --kills 3 --pg-outage-s 30 --record

Produces N readings with (device_id, seq) and K poison records, runs 2 workers,
SIGKILLs a random worker `--kills` times at random moments (restarting it),
stops PostgreSQL once for `--pg-outage-s` seconds, then verifies and prints:
PostgreSQL holds exactly the N readings, the Parquet dataset holds exactly the
N readings, the dead-letter topic holds exactly the K poison records with
their headers, no alert (id, state) appears twice on the alert topic, and every
window aggregate in PostgreSQL equals an offline recomputation (the same pure
WindowEngine fed the same readings in one pass, with no crash). Results are
appended to docs/RELIABILITY.md with --record.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pyarrow.dataset as pads
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

sys.path.insert(0, str(Path(__file__).parent))
from common import exit_on_sigterm  # noqa: E402
from pipeline import Workers, _admin, worker_env  # noqa: E402

from fieldstream.config import load_settings  # noqa: E402
from fieldstream.devices import DeviceProducer  # noqa: E402
from fieldstream.ops.kafka_state import group_state  # noqa: E402
from fieldstream.schemas.admin import register_bundled  # noqa: E402
from fieldstream.schemas.reading import Reading  # noqa: E402
from fieldstream.sinks.dlq import parse_headers  # noqa: E402
from fieldstream.sinks.windows_pg import MEASURES  # noqa: E402
from fieldstream.stack.postgres import PostgresService  # noqa: E402
from fieldstream.topics import ensure_topics  # noqa: E402
from fieldstream.windows.engine import WindowEngine, with_datetimes  # noqa: E402
from fieldstream.windows.specs import parse_spec  # noqa: E402


def spec_name(spec: str) -> str:
    return parse_spec(spec).name

ROOT = Path(__file__).resolve().parents[1]
TYPES = (("tank_probe", ("dissolved_oxygen", "ph", "water_temperature")),
         ("soil_station", ("moisture", "temperature", "humidity")))


@dataclass
class Report:
    checks: list[tuple[str, bool, str]] = field(default_factory=list)
    events: list[str] = field(default_factory=list)

    def check(self, name: str, ok: bool, detail: str) -> None:
        self.checks.append((name, ok, detail))
        print(f"  [{'PASS' if ok else 'FAIL'}] {name}: {detail}")

    @property
    def ok(self) -> bool:
        return all(ok for _, ok, _ in self.checks)


def make_readings(n: int, devices: int, interval_s: float) -> list[dict]:
    span = n / devices * interval_s
    start = (datetime.now(UTC) - timedelta(seconds=span + 600)).replace(microsecond=0)
    out = []
    for i in range(n):
        d, seq = i % devices, i // devices
        device_type, names = TYPES[d % len(TYPES)]
        out.append({
            "device_id": f"rel-{d:04d}", "device_type": device_type,
            "event_time": start + timedelta(seconds=seq * interval_s, milliseconds=d % 1000),
            "seq": seq, "metrics": {m: 7 + 3 * math.sin(seq / 20 + d) + (i % 7) / 10 for m in names},
            "tags": None, "location": None, "firmware": None, "battery": None, "signal_dbm": None,
        })
    return out


def read_topic(settings, topic: str) -> list:
    consumer = Consumer({**settings.kafka.confluent_config(), "group.id": f"rel-{uuid.uuid4().hex}",
                         "enable.auto.commit": False})
    md = consumer.list_topics(topic, timeout=10).topics[topic]
    ends = {}
    assignment = []
    for p in md.partitions:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        if high > low:
            ends[p] = high
            assignment.append(TopicPartition(topic, p, low))
    consumer.assign(assignment)
    messages = []
    while ends:
        msg = consumer.poll(2)
        if msg is None or msg.error():
            continue
        messages.append(msg)
        if msg.offset() >= ends.get(msg.partition(), 0) - 1:
            ends.pop(msg.partition(), None)
    consumer.close()
    return messages


def offline_windows(readings: list[dict], settings) -> dict[tuple, dict]:
    engine = WindowEngine.from_settings(settings.window)
    states = {}
    finals: dict[tuple, dict] = {}
    now = datetime.now(UTC)
    for rec in readings:
        r = Reading(device_id=rec["device_id"], device_type=rec["device_type"], event_time=rec["event_time"],
                    seq=rec["seq"], metrics=rec["metrics"])
        state = states.setdefault(r.device_id, engine.new_state(r.device_id, r.device_type))
        for agg in map(with_datetimes, engine.add(state, r, now).closed):  # as PostgreSQL returns them
            finals[(agg["window"], agg["device_id"], agg["metric"], agg["window_start"])] = agg
    for state in states.values():
        for agg in map(with_datetimes, engine.close_due(state, now + timedelta(days=1))):
            finals[(agg["window"], agg["device_id"], agg["metric"], agg["window_start"])] = agg
    return finals


async def fetch(settings, database: str, sql: str) -> list:
    conn = await asyncpg.connect(**settings.pg.connect_kwargs(database=database))
    try:
        return await conn.fetch(sql)
    finally:
        await conn.close()


def main() -> None:  # noqa: PLR0915 - one scripted run, read top to bottom
    exit_on_sigterm()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--readings", type=int, default=200_000)
    p.add_argument("--devices", type=int, default=500)
    p.add_argument("--poison", type=int, default=50)
    p.add_argument("--partitions", type=int, default=6)
    p.add_argument("--kills", type=int, default=3)
    p.add_argument("--pg-outage-s", type=float, default=30.0)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--window-specs", default="tumbling:60,hopping:300:60",
                   help="FIELDSTREAM_WINDOW_SPECS for the workers (short windows make short runs)")
    p.add_argument("--timeout-s", type=float, default=1500.0)
    p.add_argument("--record", action="store_true", help="Append the results to docs/RELIABILITY.md")
    args = p.parse_args()
    rng = random.Random(args.seed)
    report = Report()
    base = load_settings()
    name = f"rel-{uuid.uuid4().hex[:6]}"
    base = base.model_copy(update={"window": base.window.model_copy(update={"specs": args.window_specs.split(",")})})
    topics = base.topics.model_copy(update={
        "readings": f"{name}.readings", "windows": f"{name}.windows", "alerts": f"{name}.alerts",
        "dlq": f"{name}.dlq", "late": f"{name}.late", "partitions": args.partitions})
    settings = base.model_copy(update={
        "topics": topics, "worker": base.worker.model_copy(update={"app_id": name})})
    database = f"rel_{uuid.uuid4().hex[:8]}"
    workdir = Path(tempfile.mkdtemp(prefix="fieldstream-reliability-"))
    lake = workdir / "lake"
    ensure_topics(settings)
    register_bundled(settings)
    asyncio.run(_admin(settings, f'CREATE DATABASE "{database}"'))
    env = {**worker_env(topics.readings, database, lake, name), "FIELDSTREAM_TOPIC_PARTITIONS": str(args.partitions),
           "FIELDSTREAM_TOPIC_WINDOWS": topics.windows, "FIELDSTREAM_TOPIC_ALERTS": topics.alerts,
           "FIELDSTREAM_TOPIC_DLQ": topics.dlq, "FIELDSTREAM_TOPIC_LATE": topics.late,
           "FIELDSTREAM_WINDOW_SPECS": args.window_specs, "FIELDSTREAM_WINDOW_GRACE_S": "5",
           "FIELDSTREAM_PARQUET_ROLL_AGE_S": "5"}
    postgres = PostgresService(settings.stack, password=settings.pg.password.get_secret_value())

    print(f"producing {args.readings:,} readings from {args.devices} devices and {args.poison} poison records")
    readings = make_readings(args.readings, args.devices, interval_s=10.0)
    producer = DeviceProducer(settings.kafka, settings.registry, topics.readings, linger_ms=20)
    poison_at = set(rng.sample(range(args.readings), args.poison))
    for i, rec in enumerate(readings):
        producer.send(rec)
        if i in poison_at:
            producer.send_raw(rec["device_id"].encode(), os.urandom(rng.randint(1, 64)))
    assert producer.flush(120) == 0 and producer.failed == 0

    workers = Workers(2, env, workdir)
    t0 = time.monotonic()

    def count_pg() -> int:
        try:
            return asyncio.run(fetch(settings, database, "SELECT count(*) AS n FROM readings"))[0]["n"]
        except (OSError, asyncpg.PostgresError):
            return -1

    def count_windows() -> int:
        tables = [f"windows_{spec_name(spec)}" for spec in args.window_specs.split(",")]
        try:
            return sum(asyncio.run(fetch(settings, database, f"SELECT count(*) AS n FROM {t}"))[0]["n"]
                       for t in tables)
        except (OSError, asyncpg.PostgresError):
            return -1

    def group_lag() -> int:
        """Records of the readings topic the worker group has not committed (-1: unknown)."""
        try:
            return group_state(settings, timeout_s=10).total_lag
        except Exception:  # noqa: BLE001 - the broker is busy: ask again
            return -1

    outages: list[threading.Timer] = []

    def chaos() -> None:
        plan = sorted(rng.uniform(5, 60) for _ in range(args.kills))
        outage_at = rng.uniform(10, 50)
        start = time.monotonic()
        actions = [(t, "kill") for t in plan] + ([(outage_at, "pg")] if args.pg_outage_s > 0 else [])
        for at, what in sorted(actions):
            time.sleep(max(0.0, at - (time.monotonic() - start)))
            if what == "kill":
                i = rng.randrange(len(workers.procs))
                workers.kill_and_restart(i)
                report.events.append(f"t+{time.monotonic() - t0:.0f}s SIGKILL worker {i}, restarted")
            else:  # the outage runs beside the kills: a kill may land while PostgreSQL is down
                postgres.down()
                report.events.append(f"t+{time.monotonic() - t0:.0f}s PostgreSQL stopped for {args.pg_outage_s:.0f}s")
                outage = threading.Timer(args.pg_outage_s, postgres.up)
                outage.start()
                outages.append(outage)
            print("  " + report.events[-1])
        for outage in outages:
            outage.join()

    chaos_thread = threading.Thread(target=chaos)
    chaos_thread.start()
    try:
        chaos_thread.join()
        # Done means committed, not just written: PostgreSQL can hold every reading while
        # Parquet files and window state of uncommitted offsets wait for a worker that is
        # still rejoining the group (a SIGKILLed member holds its place until its session
        # times out); verifying then would count work the next owner is about to redo.
        deadline = time.monotonic() + args.timeout_s
        said_at = 0.0
        while time.monotonic() < deadline:
            lag, rows = group_lag(), count_pg()
            if rows >= args.readings and lag == 0:
                break
            if time.monotonic() - said_at > 15:
                print(f"  t+{time.monotonic() - t0:.0f}s waiting: {rows:,} rows in PostgreSQL, "
                      f"{lag:,} records not yet committed by the group")
                said_at = time.monotonic()
            time.sleep(2)
        # The last windows close by silence: up to the longest window + grace after the last reading.
        longest = max(float(spec.split(":")[1]) for spec in args.window_specs.split(","))
        expected_windows = len(offline_windows(readings, settings))
        settle = time.monotonic() + longest + 30
        while time.monotonic() < settle and count_windows() < expected_windows:
            time.sleep(2)
        time.sleep(3)
    finally:
        postgres.up()
        workers.stop()  # clean stop writes the last Parquet files
    elapsed = time.monotonic() - t0
    print(f"verifying after {elapsed:.0f}s")

    rows = asyncio.run(fetch(settings, database,
                             "SELECT count(*) AS n, count(DISTINCT (device_id, seq)) AS d FROM readings"))[0]
    report.check("PostgreSQL readings", rows["n"] == rows["d"] == args.readings,
                 f"{rows['n']:,} rows, {rows['d']:,} distinct (device_id, seq), expected {args.readings:,}")
    table = pads.dataset(str(lake), format="parquet", partitioning="hive").to_table(columns=["device_id", "seq"])
    pairs = set(zip(table.column("device_id").to_pylist(), table.column("seq").to_pylist(), strict=True))
    report.check("Parquet readings", table.num_rows == len(pairs) == args.readings,
                 f"{table.num_rows:,} rows, {len(pairs):,} distinct, expected {args.readings:,}")
    dead = read_topic(settings, topics.dlq)
    coords = Counter((parse_headers(m.headers()).get("partition"), parse_headers(m.headers()).get("offset"))
                     for m in dead)
    with_headers = all(parse_headers(m.headers()).get("stage") == "decode" and parse_headers(m.headers()).get("topic")
                       == topics.readings for m in dead)
    report.check("dead letters", len(coords) == args.poison and with_headers,
                 f"{len(coords)} distinct poison records (expected {args.poison}), {len(dead)} messages "
                 f"({len(dead) - len(coords)} re-sent after a kill), headers complete: {with_headers}")
    alerts = read_topic(settings, topics.alerts)
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    deserialize = AvroDeserializer(SchemaRegistryClient(settings.registry.client_config()))
    ctx = SerializationContext(topics.alerts, MessageField.VALUE)
    on_topic = {(a["alert_id"], a["state"]): a for a in (deserialize(m.value(), ctx) for m in alerts)}
    alert_keys = Counter((m.key(), m.value()) for m in alerts)
    dup_alerts = sum(n - 1 for n in alert_keys.values() if n > 1)
    in_pg = {(r["alert_id"], r["state"]) for r in
             asyncio.run(fetch(settings, database, "SELECT alert_id, state FROM alerts"))}
    for key in sorted(set(on_topic) - in_pg)[:10]:
        a = on_topic[key]
        print(f"  on the topic, not in PostgreSQL: {a['detector']} {a['state']} {a['device_id']} {a['metric']} "
              f"at {a['event_time']}")
    for key in sorted(in_pg - set(on_topic))[:10]:
        print(f"  in PostgreSQL, not on the topic: {key}")
    report.check("alerts", in_pg == set(on_topic),
                 f"{len(on_topic)} distinct (alert id, state) on the topic, {len(in_pg)} in PostgreSQL "
                 f"(unique by key), {len(set(on_topic) ^ in_pg)} in only one of them; {dup_alerts} duplicate "
                 f"deliveries on the topic (same id and content, at-least-once)")
    expected = offline_windows(readings, settings)
    last_event: dict[str, datetime] = {}
    for rec in readings:
        last_event[rec["device_id"]] = max(rec["event_time"], last_event.get(rec["device_id"], rec["event_time"]))
    got = {}
    for window in (spec_name(spec) for spec in args.window_specs.split(",")):
        window_table = f"windows_{window}"
        for r in asyncio.run(fetch(settings, database, f"SELECT * FROM {window_table}")):
            got[(window, r["device_id"], r["metric"], r["window_start"])] = r
    mismatched = [k for k, agg in expected.items() if k not in got or any(
        not _close(agg[m], got[k][m]) for m in MEASURES if m not in ("expected", "missing", "quality"))]
    extra = set(got) - set(expected)
    for k in mismatched[:5]:
        if k not in got:
            print(f"  missing: {k}, last event time of the device: {last_event.get(k[1])}")
        else:
            diff = {m: (expected[k][m], got[k][m]) for m in MEASURES
                    if m not in ("expected", "missing", "quality") and not _close(expected[k][m], got[k][m])}
            print(f"  different: {k}: (expected, got) {diff}")
    report.check("window aggregates", not mismatched and not extra,
                 f"{len(expected):,} expected, {len(got):,} in PostgreSQL, {len(mismatched)} missing or different, "
                 f"{len(extra)} unexpected")
    asyncio.run(_admin(settings, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
    AdminClient(settings.kafka.confluent_config()).delete_topics(
        [topics.readings, topics.windows, topics.alerts, topics.dlq, topics.late])

    print("RESULT:", "PASS" if report.ok else "FAIL")
    if args.record:
        _record(args, report, elapsed)
    sys.exit(0 if report.ok else 1)


def _close(a: object, b: object) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return a is b
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)
    return a == b


def _record(args, report: Report, elapsed: float) -> None:  # noqa: ANN001
    sys.path.insert(0, str(Path(__file__).parent))
    from common import machine_summary

    out = ROOT / "docs" / "RELIABILITY.md"
    if not out.exists():
        out.write_text("# Reliability\n\nEach section was appended by `bench/reliability.py`.\n")
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"\n## Run of {stamp}: {'PASS' if report.ok else 'FAIL'}\n", f"Machine: {machine_summary()}\n",
             f"Command: `python bench/reliability.py {' '.join(sys.argv[1:])}`\n",
             f"{args.readings:,} readings from {args.devices} devices, {args.poison} poison records, "
             f"2 workers, {elapsed:.0f} s.\n", "Faults injected:\n"]
    lines += [f"- {e}" for e in report.events]
    lines += ["", "| check | result | detail |", "|---|---|---|"]
    lines += [f"| {n} | {'pass' if ok else 'FAIL'} | {d} |" for n, ok, d in report.checks]
    with out.open("a") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
