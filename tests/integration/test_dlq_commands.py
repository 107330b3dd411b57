"""`fieldstream dlq inspect` and `fieldstream dlq replay` against a scenario's real topics and workers."""

from __future__ import annotations

import json
import random
import re
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner
from confluent_kafka.admin import AdminClient, NewTopic

from fieldstream.commands.dlq import dlq
from fieldstream.config import load_settings
from fieldstream.config.settings import Settings
from fieldstream.devices import DeviceProducer
from fieldstream.schemas import codec
from fieldstream.schemas.admin import register_bundled
from fieldstream.schemas.files import READING_V2
from fieldstream.sinks.dlq import parse_headers

from .conftest import pg_fetch
from .framing import READER, framed, reading
from .harness import Worker, committed_offsets, consume_all, end_offsets, metric_total, wait_for

REPLAYED = ("fieldstream.replayed", b"1")


@pytest.fixture
def cli_settings(scenario, monkeypatch) -> Iterator[Settings]:
    """The scenario's settings as the commands load them: from the environment, through the cached loader."""
    for name, value in scenario.env.items():
        monkeypatch.setenv(name, value)
    load_settings.cache_clear()
    yield load_settings()
    load_settings.cache_clear()  # the next test must not inherit this scenario's topics


def run(*args: str) -> str:
    """Invoke `fieldstream dlq ...`; its stdout, after checking it succeeded."""
    result = CliRunner().invoke(dlq, list(args))
    assert result.exit_code == 0, f"dlq {' '.join(args)} exited {result.exit_code}:\n{result.output}"
    return result.stdout


def device_seq(value: bytes) -> tuple[str, int]:
    record = codec.decode_body(codec.split_frame(value)[1], READER, READER)
    return record["device_id"], record["seq"]


def wait_counting(worker: Worker, check: Callable[[], bool], timeout_s: float, what: str,
                  detail: Callable[[], str] = lambda: "") -> None:
    """wait_for one worker; a timeout says what the worker counted, to tell lost from not yet read."""
    try:
        wait_for(check, timeout_s, what, workers=[worker])
    except AssertionError as e:
        counts = {name: metric_total(worker.port, f"fieldstream_{name}_total") if worker.alive() else None
                  for name in ("readings_in", "readings_out", "duplicates", "dead_letters")}
        raise AssertionError(f"{e}; worker counts {counts}; {detail()}") from None


def dead_letter_time(msg) -> int:  # noqa: ANN001 - a confluent_kafka Message
    return msg.timestamp()[1]


def test_inspect_summarises_by_stage_and_reason(scenario, workers, cli_settings):
    settings = cli_settings
    v2 = {r.file: r.schema_id for r in register_bundled(settings)}[READING_V2]
    now = datetime.now(UTC).replace(microsecond=0)
    prefix = scenario.name
    producer = DeviceProducer(settings.kafka, settings.registry, settings.topics.readings)
    expected = {("decode", "bad_magic"): 3, ("validate", "out_of_range"): 2, ("validate", "key_mismatch"): 1,
                ("decode", "unknown_schema"): 1}
    bad: list[tuple[bytes, bytes]] = [
        *((f"{prefix}-dev-{i}".encode(), b"\x7f" + random.Random(i).randbytes(40)) for i in range(3)),
        *((f"{prefix}-dev-{i}".encode(),
           framed(v2, reading(f"{prefix}-dev-{i}", 900 + i, now, metrics={"moisture": 120.0 + i}))) for i in range(2)),
        (b"someone-else", framed(v2, reading(f"{prefix}-dev-0", 910, now))),
        (f"{prefix}-dev-1".encode(), framed(987_654_321, reading(f"{prefix}-dev-1", 911, now))),
    ]
    for i, (key, value) in enumerate(bad):
        for j in range(2):
            device = f"{prefix}-dev-{(i + j) % 4}"
            producer.send_raw(device.encode(), framed(v2, reading(device, 2 * i + j, now - timedelta(seconds=60))))
        producer.send_raw(key, value)
    assert producer.flush(30) == 0 and producer.failed == 0

    workers.append(Worker(scenario))
    wait_for(lambda: sum(end_offsets(settings, settings.topics.dlq).values()) == len(bad), 60,
             f"{len(bad)} dead letters", workers=workers)
    truth = consume_all(settings, settings.topics.dlq, expect=len(bad))
    assert len(truth) == len(bad)
    by_group = defaultdict(list)
    for m in truth:
        h = parse_headers(m.headers())
        by_group[(h["stage"], h["reason"])].append(m)
    assert {k: len(v) for k, v in by_group.items()} == expected

    data = json.loads(run("inspect", "--json"))
    assert (data["topic"], data["partitions"], data["total"]) == (settings.topics.dlq, scenario.partitions, len(bad))
    assert [g["count"] for g in data["groups"]] == sorted(expected.values(), reverse=True)
    groups = {(g["stage"], g["reason"]): g for g in data["groups"]}
    assert {k: g["count"] for k, g in groups.items()} == expected
    for key, msgs in by_group.items():
        g = groups[key]
        spans: dict[str, list[int]] = {}
        for m in msgs:
            span = spans.setdefault(str(m.partition()), [m.offset(), m.offset()])
            span[0], span[1] = min(span[0], m.offset()), max(span[1], m.offset())
        assert g["offsets"] == spans, key
        order = sorted(msgs, key=lambda m: (dead_letter_time(m), m.partition(), m.offset()))
        for end, m in (("first", order[0]), ("last", order[-1])):
            assert (g[end]["partition"], g[end]["offset"]) == (m.partition(), m.offset()), (key, end)
        example = g["example"]
        assert (example["partition"], example["offset"]) == (order[0].partition(), order[0].offset())
        assert example["context"] == parse_headers(order[0].headers())
        assert example["key"]["length"] == len(order[0].key()) and example["value"]["length"] == len(order[0].value())

    text = run("inspect")
    assert f"{settings.topics.dlq}: {len(bad)} dead letter(s) in {scenario.partitions} partition(s)" in text
    lines = text.splitlines()
    for (stage, reason), n in expected.items():
        assert f"{stage} / {reason}: {n}" in lines
        assert any(line.split() == [str(n), stage, reason] for line in lines), (stage, reason)
    assert "error  DecodeError: magic byte" in text
    assert re.search(r"error  ValidationError: metric moisture=12[01]\.0 is outside \[0(\.0)?, 100(\.0)?\] "
                     r"for soil_station", text)
    assert "error  DecodeError: schema id 987654321 is not in the registry" in text

    # An empty topic is a summary of nothing; a missing one is an error, not a hang.
    empty = f"{scenario.name}.empty-dlq"
    admin = AdminClient(settings.kafka.confluent_config())  # kept referenced until its futures resolve
    for future in admin.create_topics([NewTopic(empty, num_partitions=2, replication_factor=1)]).values():
        future.result(30)
    assert json.loads(run("inspect", "--json", "--topic", empty)) == {
        "topic": empty, "partitions": 2, "total": 0, "groups": []}
    missing = CliRunner().invoke(dlq, ["inspect", "--topic", f"{scenario.name}.no-such-topic"])
    assert missing.exit_code == 1 and "does not exist" in missing.output


def test_replay_filters_and_reinjects_original_bytes_that_a_fixed_worker_accepts(scenario, workers, cli_settings):
    settings = cli_settings
    readings_topic, dlq_topic = settings.topics.readings, settings.topics.dlq
    v2 = {r.file: r.schema_id for r in register_bundled(settings)}[READING_V2]
    now = datetime.now(UTC).replace(microsecond=0)
    prefix = scenario.name
    producer = DeviceProducer(settings.kafka, settings.registry, readings_topic)

    def send(device: str, seq: int, moisture: float) -> tuple[bytes, bytes]:
        key, value = device.encode(), framed(v2, reading(device, seq, now - timedelta(seconds=120 - seq % 100),
                                                         metrics={"moisture": moisture}))
        producer.send_raw(key, value)
        return key, value

    def dead() -> int:
        return sum(end_offsets(settings, dlq_topic).values())

    # A worker with a wrong rule (moisture over 50 % rejected) dead-letters good readings.
    narrow = {"FIELDSTREAM_VALIDATION_RANGES": json.dumps({"soil_station": {"moisture": [0, 50]}})}
    first = Worker(scenario, label="narrow", extra_env=narrow)
    workers.append(first)
    batch_a = [send(f"{prefix}-wet-{i % 3}", 100 + i, 60.0 + i) for i in range(6)]
    garbage = [(f"{prefix}-wet-0".encode(), b"\x7f" + random.Random(i).randbytes(30)) for i in range(2)]
    for key, value in garbage:
        producer.send_raw(key, value)
    for i in range(10):
        send(f"{prefix}-dry-{i % 2}", i, 20.0 + i)
    assert producer.flush(30) == 0
    wait_for(lambda: dead() == 8, 60, "the first 8 dead letters", workers=workers)
    batch_b = [send(f"{prefix}-wet-{i % 3}", 200 + i, 70.0 + i) for i in range(4)]  # dead-lettered later
    assert producer.flush(30) == 0
    wait_for(lambda: dead() == 12, 30, "12 dead letters", workers=workers)
    originals = {(m.key(), m.value()): m for m in consume_all(settings, dlq_topic, expect=12)}
    assert len(originals) == 12
    boundary_ms = max(dead_letter_time(originals[kv]) for kv in batch_a + garbage) + 1
    assert all(dead_letter_time(originals[kv]) >= boundary_ms for kv in batch_b)
    boundary = datetime.fromtimestamp(boundary_ms / 1000, UTC).isoformat(timespec="milliseconds")

    # Stop it once everything it read is committed, so its successor starts at the end.
    def all_committed() -> bool:
        committed = committed_offsets(settings, scenario.name, readings_topic)  # the app id is the group
        return all(end == 0 or committed[p] >= end for p, end in end_offsets(settings, readings_topic).items())

    wait_for(all_committed, 30, "the narrow worker's offsets committed", workers=workers)
    assert first.stop() == 0, first.log_text()[-3000:]
    readings_end = end_offsets(settings, readings_topic)

    # Dry run: counts, produces nothing.
    report = json.loads(run("replay", "--reason", "out_of_range", "--dry-run", "--json", "--no-progress"))
    assert (report["dead_letters"], report["scanned"], report["matched"], report["produced"]) == (12, 12, 10, 0)
    assert report["by_stage_reason"] == [{"stage": "validate", "reason": "out_of_range", "count": 10}]
    text = run("replay", "--stage", "decode", "--dry-run", "--no-progress")
    assert "would replay 2 dead letter(s)" in text and "decode / bad_magic: 2" in text
    assert end_offsets(settings, readings_topic) == readings_end

    # Batch A, at most 4 of its 6; then all of batch B (with the progress bar on).
    text = run("replay", "--stage", "validate", "--reason", "out_of_range", "--until", boundary, "--limit", "4",
               "--no-progress")
    assert f"replayed 4 dead letter(s) into {readings_topic}" in text and "delivered 4, failed 0" in text
    report = json.loads(run("replay", "--reason", "out_of_range", "--since", boundary, "--json"))
    assert (report["matched"], report["produced"], report["delivered"], report["failed"]) == (4, 4, 4, 0)
    assert sum(end_offsets(settings, readings_topic).values()) == sum(readings_end.values()) + 8

    # What was re-injected: the original bytes, on the original partition, marked as replayed.
    everything = consume_all(settings, readings_topic, expect=sum(readings_end.values()) + 8)
    replayed = [m for m in everything if m.offset() >= readings_end[m.partition()]]
    assert len(replayed) == 8
    sent = {(m.key(), m.value()) for m in replayed}
    assert len(sent) == 8 and set(batch_b) <= sent and len(sent & set(batch_a)) == 4
    for m in replayed:
        assert m.headers() == [REPLAYED]
        assert m.partition() == int(parse_headers(originals[(m.key(), m.value())].headers())["partition"])

    # The rule fixed, a new worker takes the replayed readings; none is dead-lettered again.
    second = Worker(scenario, label="fixed")
    workers.append(second)
    replayed_ids = sorted(device_seq(value) for _, value in sent)

    def wet_rows() -> list[tuple[str, int]]:
        rows = pg_fetch(settings, "SELECT device_id, seq FROM readings WHERE device_id LIKE $1", f"{prefix}-wet-%")
        return sorted((r["device_id"], r["seq"]) for r in rows)

    wait_counting(second, lambda: wet_rows() == replayed_ids, 60, "the 8 replayed readings in PostgreSQL",
                  lambda: f"rows {wet_rows()}, expected {replayed_ids}")
    assert dead() == 12
    assert metric_total(second.port, "fieldstream_dead_letters_total") == 0

    # Replaying batch B again changes nothing downstream: once the worker has committed past the
    # repeats (it read them), they were dropped as duplicates, not stored or dead-lettered.
    # (>= 4: at-least-once redelivery inside the worker may count a few more.)
    duplicates = metric_total(second.port, "fieldstream_duplicates_total")
    run("replay", "--reason", "out_of_range", "--since", boundary, "--no-progress")
    wait_counting(second, all_committed, 30, "the repeats read and committed")
    assert metric_total(second.port, "fieldstream_duplicates_total") >= duplicates + 4
    assert wet_rows() == replayed_ids and dead() == 12

