"""A seeded, messy telemetry stream for the end-to-end window tests, its reference, and readers of the sinks.

The stream is a list of deliveries in the order they are produced. Kafka keeps
that order per partition, and a device's readings all go to one partition, so
each device's readings reach the window stage in exactly this order: the
reference (tests/unit/test_window_reference.py, written without the engine)
is fed the same order and decides lateness as the pipeline does.

Lateness in the worker is decided by event time and, for a silent device, by
processing time (see windows/engine.py). The stream is built so that processing
time cannot change a decision: no reading is produced whose window ends within
`STALL_S` after the device's event-time frontier (those windows would close
early if the worker stalled for a few seconds between two of the device's
readings), and every device ends with a reading ~6 minutes after the rest of its
data (a device coming back online), which closes every earlier window by event
time instead of waiting minutes for silence to close the 5-minute windows.
"""

from __future__ import annotations

import asyncio
import io
import random
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import fastavro
from confluent_kafka import Consumer, TopicPartition

from fieldstream.config import Settings
from fieldstream.devices import DeviceProducer
from fieldstream.schemas import codec
from fieldstream.schemas.files import READING_V2, WINDOW_V1, parsed
from fieldstream.schemas.reading import Location, Reading
from fieldstream.windows import Outcome, parse_specs
from tests.unit.test_window_reference import CLOSE, EXACT, expected_records, reference
from tests.unit.windowstream import FLEET, INTERVALS, Event

SPECS = ["tumbling:60", "hopping:300:60"]  # the defaults: tables windows_tumbling_1m, windows_hopping_5m_1m
GRACE_S = 5.0
STALL_S = 5.0  # a worker stall up to this long between two readings of a device changes no decision
# Inside the validator's DEFAULT_RANGES, with room for a random walk.
SAFE = {
    "moisture": (5, 95), "temperature": (-20, 45), "humidity": (5, 95), "activity": (0, 100),
    "body_temperature": (36, 41), "dissolved_oxygen": (1, 20), "ph": (5, 9), "water_temperature": (2, 30),
    "tvoc": (0, 2000), "pm25": (0, 300),
}


def worker_env(grace_s: float = GRACE_S) -> dict[str, str]:
    """Window settings of the worker: what the reference assumes."""
    import json

    return {
        "FIELDSTREAM_WINDOW_SPECS": ",".join(SPECS),
        "FIELDSTREAM_WINDOW_GRACE_S": str(grace_s),
        # `expected` from configured intervals (as the reference computes it), not learned spacing.
        "FIELDSTREAM_WINDOW_INTERVALS_S": json.dumps(INTERVALS),
    }


@dataclass(frozen=True)
class Delivery:
    reading: Reading
    kind: str  # in_order | out_of_order | late | duplicate | comeback


@dataclass
class Stream:
    deliveries: list[Delivery]  # in produce order
    devices: list[str]
    dropped_ambiguous: int = 0
    outcomes: list[tuple[Outcome, frozenset]] = field(default_factory=list)  # per counted-or-late delivery
    firsts: list[Reading] = field(default_factory=list)  # deliveries the pipeline keeps (dedup: first copy)
    members: dict = field(default_factory=dict)
    frontier: dict[str, float] = field(default_factory=dict)  # device → final event-time frontier (s)

    def expected(self) -> dict[tuple, dict]:
        """Reference aggregates of every window holding data, keyed (device, metric, window, start)."""
        return expected_records(self.members)

    def expected_closed(self) -> dict[tuple, dict]:
        """The windows the stream's own event time closes (the rest may close later, by silence)."""
        return {k: v for k, v in self.expected().items()
                if v["window_end"].timestamp() <= self.frontier[k[0]]}

    def late(self) -> dict[tuple[str, int], tuple[str, str]]:
        """(device, seq) → the late topic's (metrics, windows) headers, for late and partly late readings."""
        out = {}
        for reading, (outcome, missed) in zip(self.firsts, self.outcomes, strict=True):
            if outcome in (Outcome.LATE, Outcome.PARTLY_LATE):
                windows = sorted(f"{name}@{datetime.fromtimestamp(s, UTC).isoformat()}" for name, s, _ in missed)
                out[(reading.device_id, reading.seq)] = (",".join(sorted(reading.metrics)), ",".join(windows))
        return out

    def distinct_readings(self) -> set[tuple[str, int]]:
        return {(r.device_id, r.seq) for r in self.firsts}


def _us(seconds: float) -> timedelta:
    return timedelta(microseconds=round(seconds * 1e6))


def _windows(t: float) -> list[tuple[str, int, int]]:
    out = []
    for spec in parse_specs(SPECS):
        first = (int(t // spec.step_s) - spec.size_s // spec.step_s) * spec.step_s
        for s in range(first, int(t // spec.step_s) * spec.step_s + 1, spec.step_s):
            if s <= t < s + spec.size_s:
                out.append((spec.name, s, s + spec.size_s))
    return out


def generate(prefix: str, seed: int, *, devices: int = 10, minutes: int = 10, gap_s: float = 360,
             end: datetime | None = None, grace_s: float = GRACE_S) -> Stream:
    """`minutes` of readings per device ending `gap_s` before `end` (default now), then one comeback reading."""
    rng = random.Random(seed)
    end = (end or datetime.now(UTC)) - timedelta(seconds=2)
    start = end - timedelta(seconds=gap_s + minutes * 60)
    kinds = list(FLEET)
    keyed: list[tuple[float, int, Delivery]] = []
    order = 0
    ids = []
    last_seq: dict[str, int] = {}
    for d in range(devices):
        kind = kinds[d % len(kinds)]
        names, every, gps = FLEET[kind]
        device_id = f"{prefix}-{kind}-{d}"
        ids.append(device_id)
        values = {n: rng.uniform(*SAFE[n]) for n in names}
        lat, lon = 46 + rng.random(), 7 + rng.random()
        t, seq = rng.uniform(0, every), 0
        while t < minutes * 60:
            seq += 1
            event_s = t
            t += every
            if rng.random() < 0.04:
                continue  # never sent: a gap in the device's seqs
            for n in names:
                lo, hi = SAFE[n]
                values[n] = min(hi, max(lo, values[n] + rng.gauss(0, (hi - lo) / 40)))
            lat, lon = lat + rng.gauss(0, 2e-4), lon + rng.gauss(0, 2e-4)
            metrics = {n: round(v, 1) if rng.random() < 0.5 else v  # rounding makes ties happen
                       for n, v in values.items() if rng.random() < 0.93} or {names[0]: values[names[0]]}
            reading = Reading(device_id, kind, start + _us(event_s), seq, metrics,
                              location=Location(lat, lon) if gps else None)
            roll = rng.random()
            if roll < 0.05:
                delay, what = rng.uniform(70, 420), "late"  # beyond grace: late for some or all windows
            elif roll < 0.15:
                delay, what = rng.uniform(1, 25), "out_of_order"  # around the grace
            else:
                delay, what = 0.0, "in_order"
            keyed.append((event_s + delay, order, Delivery(reading, what)))
            order += 1
            if rng.random() < 0.05:  # the same (device_id, seq) again: a producer or gateway retry
                keyed.append((event_s + delay + rng.uniform(0, 40), order, Delivery(reading, "duplicate")))
                order += 1
        last_seq[device_id] = seq
    keyed.sort(key=lambda x: (x[0], x[1]))
    deliveries = [dlv for _, _, dlv in keyed]
    # Back online after gap_s: every window of the data above closes by event time.
    for device_id in ids:
        kind = device_id.split("-")[-2]
        names = FLEET[kind][0]
        deliveries.append(Delivery(Reading(device_id, kind, end - _us(rng.uniform(0, 1)), last_seq[device_id] + 1,
                                           {n: round(rng.uniform(*SAFE[n]), 1) for n in names}), "comeback"))
    return _settle(deliveries, ids, grace_s)


def _settle(deliveries: list[Delivery], ids: list[str], grace_s: float) -> Stream:
    """Drop deliveries processing time could decide; run the reference over what the pipeline will keep."""
    watermark: dict[str, float] = {}
    seen: set[tuple[str, int]] = set()
    kept: list[Delivery] = []
    firsts: list[Reading] = []
    dropped = 0
    for dlv in deliveries:
        r = dlv.reading
        if (r.device_id, r.seq) in seen:
            kept.append(dlv)  # the pipeline's dedup drops it before the windows
            continue
        t = r.event_time.timestamp()
        w = watermark.get(r.device_id)
        if w is not None:
            frontier = w - grace_s
            if any(frontier < e <= frontier + STALL_S for _, _, e in _windows(t)):
                dropped += 1
                continue
            watermark[r.device_id] = max(w, t)
        else:
            watermark[r.device_id] = t
        seen.add((r.device_id, r.seq))
        kept.append(dlv)
        firsts.append(r)
    events = [Event(r.event_time, r) for r in firsts]  # `at` only matters for timer ticks: there are none
    outcomes, members = reference(events, SPECS, grace_s)
    stream = Stream(kept, ids, dropped, list(outcomes), firsts, dict(members))
    stream.frontier = {d: watermark[d] - grace_s for d in ids}
    return stream


def record(reading: Reading) -> dict[str, Any]:
    loc = reading.location
    return {"device_id": reading.device_id, "device_type": reading.device_type, "event_time": reading.event_time,
            "seq": reading.seq, "metrics": reading.metrics, "tags": None,
            "location": None if loc is None else {"lat": loc.lat, "lon": loc.lon},
            "firmware": None, "battery": None, "signal_dbm": None}


def produce(settings: Settings, deliveries: list[Delivery], pace_s: float = 0.0) -> None:
    """Produce in order (idempotent producer: order kept per partition); `pace_s` spreads them over time."""
    producer = DeviceProducer(settings.kafka, settings.registry, settings.topics.readings, linger_ms=5)
    for dlv in deliveries:
        producer.send(record(dlv.reading))
        if pace_s:
            producer.poll(0)
            time.sleep(pace_s)
    assert producer.flush(60) == 0 and producer.failed == 0


# -- reading the sinks back ----------------------------------------------------------------------------

WINDOW_TABLES = {"tumbling_1m": "windows_tumbling_1m", "hopping_5m_1m": "windows_hopping_5m_1m"}


# The stack is shared: another run may restart PostgreSQL for a few seconds. The test's own reads wait.
_PG_DOWN = (OSError, asyncpg.CannotConnectNowError, asyncpg.ConnectionDoesNotExistError,
            asyncpg.AdminShutdownError, asyncio.TimeoutError)


def pg(settings: Settings, sql: str, *args: Any, wait_s: float = 60.0) -> list[asyncpg.Record]:
    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(**settings.pg.connect_kwargs(), timeout=10)
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()

    deadline = time.monotonic() + wait_s
    while True:
        try:
            return asyncio.run(run())
        except _PG_DOWN:
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)


def pg_while_starting(settings: Settings, sql: str, *args: Any) -> list[asyncpg.Record]:
    """`pg` for polls that may run before the worker has created its tables (a fresh database): no rows yet."""
    try:
        return pg(settings, sql, *args)
    except asyncpg.UndefinedTableError:
        return []


def window_rows(settings: Settings, prefix: str) -> dict[tuple, dict]:
    """Every window row of the devices named `prefix`-*, keyed like the reference."""
    out = {}
    for window, table in WINDOW_TABLES.items():
        for row in pg(settings, f"SELECT * FROM {table} WHERE device_id LIKE $1", prefix + "-%"):
            key = (row["device_id"], row["metric"], window, row["window_start"])
            assert key not in out, f"window row {key} twice"
            out[key] = dict(row)
    return out


def window_row_count(settings: Settings, prefix: str) -> int:
    return sum(row["n"] for t in WINDOW_TABLES.values()
               for row in pg_while_starting(settings, f"SELECT count(*) AS n FROM {t} WHERE device_id LIKE $1",
                                            prefix + "-%"))


def mismatches(got: dict[str, Any], want: dict[str, Any]) -> list[str]:
    """Fields of an aggregate that differ from the reference (exact, or to 1e-9 where summation order may differ)."""
    import math

    bad = []
    for name in EXACT:
        if got[name] != want[name]:
            bad.append(f"{name}: got {got[name]!r}, want {want[name]!r}")
    for name in CLOSE:
        g, w = got[name], want[name]
        if (w is None) != (g is None) or (w is not None and not math.isclose(g, w, rel_tol=1e-9, abs_tol=1e-12)):
            bad.append(f"{name}: got {g!r}, want {w!r}")
    return bad


@dataclass(frozen=True)
class TopicMessage:
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]


def read_topic(settings: Settings, topic: str, timeout_s: float = 30.0) -> list[TopicMessage]:
    """Every message of `topic` up to each partition's end offset now, with headers and timestamps."""
    consumer = Consumer({**settings.kafka.confluent_config(), "group.id": f"test-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         "isolation.level": "read_uncommitted"})
    try:
        partitions = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions if ends[p] > 0])
        out: list[TopicMessage] = []
        positions = {p: 0 for p in partitions}
        deadline = time.monotonic() + timeout_s
        while any(positions[p] < ends[p] for p in partitions):
            assert time.monotonic() < deadline, f"{topic} not read to its end in {timeout_s}s"
            for msg in consumer.consume(1000, 0.5):
                if msg.error():
                    raise RuntimeError(str(msg.error()))
                positions[msg.partition()] = msg.offset() + 1
                if msg.offset() < ends[msg.partition()]:
                    out.append(TopicMessage(msg.partition(), msg.offset(), msg.timestamp()[1], msg.key(),
                                            msg.value(), dict(msg.headers() or [])))
        return out
    finally:
        consumer.close()


def decode_window(value: bytes) -> dict[str, Any]:
    _, body = codec.split_frame(value)
    return fastavro.schemaless_reader(io.BytesIO(body), parsed(WINDOW_V1), parsed(WINDOW_V1))


def decode_reading(value: bytes) -> dict[str, Any]:
    _, body = codec.split_frame(value)
    return fastavro.schemaless_reader(io.BytesIO(body), parsed(READING_V2), parsed(READING_V2))


def window_messages(settings: Settings, prefix: str) -> dict[tuple, list[tuple[TopicMessage, dict[str, Any]]]]:
    """Windows-topic messages of the devices named `prefix`-*, grouped by (device, metric, window, start)."""
    out: dict[tuple, list] = defaultdict(list)
    for msg in read_topic(settings, settings.topics.windows):
        rec = decode_window(msg.value)
        if rec["device_id"].startswith(prefix + "-"):
            out[(rec["device_id"], rec["metric"], rec["window"], rec["window_start"])].append((msg, rec))
    return out


def describe_duplicates(dups: dict[tuple, list[tuple[TopicMessage, dict[str, Any]]]], kill_at: float | None) -> str:
    """A precise account of windows published more than once: when, where, and whether the copies agree."""
    lines = []
    for key, copies in sorted(dups.items(), key=lambda kv: kv[1][0][0].timestamp_ms):
        when = ", ".join(
            f"p{m.partition}@{m.offset} at {m.timestamp_ms / 1000:.3f}"
            + ("" if kill_at is None else f" ({m.timestamp_ms / 1000 - kill_at:+.3f}s from the kill)")
            for m, _ in copies)
        same = all(rec == copies[0][1] for _, rec in copies)
        lines.append(f"  {key[0]} {key[1]} {key[2]} {key[3].isoformat()}: {len(copies)} copies "
                     f"({'identical' if same else 'DIFFERENT'}): {when}")
    return "\n".join(lines)


def outside_the_crash_gap(dups: dict[tuple, list[tuple[TopicMessage, dict[str, Any]]]], kill_at: float,
                          gap_s: float) -> dict[tuple, list[tuple[TopicMessage, dict[str, Any]]]]:
    """Duplicates the windows topic's at-least-once promise does not allow after one SIGKILL.

    A final may be published again only if the kill fell between its publication and
    the changelog write of the state that closed it: two copies, identical, the first
    published at most `gap_s` before the kill, the second after it.
    """
    slack_s = 1.0  # kill_at is taken just before the signal is sent
    bad = {}
    for key, copies in dups.items():
        first, *others = sorted(copies, key=lambda c: c[0].timestamp_ms)
        first_s = first[0].timestamp_ms / 1000
        if (len(copies) != 2 or any(rec != first[1] for _, rec in others)
                or not kill_at - gap_s <= first_s <= kill_at + slack_s
                or any(m.timestamp_ms / 1000 <= kill_at for m, _ in others)):
            bad[key] = copies
    return bad


def tally(stream: Stream) -> Counter:
    """How messy the stream is: delivery kinds and reference outcomes."""
    c = Counter(d.kind for d in stream.deliveries)
    c.update(f"outcome:{o}" for o, _ in stream.outcomes)
    newest: dict[str, datetime] = {}
    for r, (o, _) in zip(stream.firsts, stream.outcomes, strict=True):
        if o == Outcome.ACCEPTED and r.device_id in newest and r.event_time < newest[r.device_id]:
            c["accepted_out_of_order"] += 1
        newest[r.device_id] = max(newest.get(r.device_id, r.event_time), r.event_time)
    c["dropped_ambiguous"] = stream.dropped_ambiguous
    return c
