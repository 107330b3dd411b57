"""The peers bench/peers.py compares, one per subprocess (and bench/peer_faust_app.py for Faust).

    python bench/peer_consumers.py aiokafka --topic T --readings N --group G --registry URL --bootstrap B
    .venv-quix/bin/python bench/peer_consumers.py quix --topic T --readings N --group G ...

Each consumes T from the beginning with a fresh consumer group and decodes every
value the same way (split the 5-byte registry frame, fastavro.schemaless_reader
with the writer schema fetched once from the registry), counts to N, then prints
one line `PEER-RESULT {json}` with its own figures and exits:

  seconds / cpu_s : wall and CPU (user + system, all threads) from the first
                    message processed to the N-th (start-up, group join and
                    shutdown are outside: they are reported as total_*)
  peak_rss_mb     : the process's peak resident set size at the N-th message

This module imports only the standard library and fastavro at the top (the Quix
peer runs in its own virtualenv: quixstreams pins an older confluent-kafka than
fieldstream, so it is not installed next to it). It does not import fieldstream.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import struct
import sys
import threading
import time
import urllib.request
from typing import Any

import fastavro

HEADER = struct.Struct(">bI")
RESULT_PREFIX = "PEER-RESULT "
PROCESS_T0 = time.perf_counter()


class FramedAvroDecoder:
    """Registry-framed Avro → dict, writer schema fetched once per id (no resolution to another schema)."""

    def __init__(self, registry_url: str, prefetch: list[int] | None = None) -> None:
        self.registry_url = registry_url.split(",")[0].rstrip("/")
        self.schemas: dict[int, Any] = {}
        for schema_id in prefetch or ():
            self.fetch(schema_id)

    def fetch(self, schema_id: int) -> Any:
        with urllib.request.urlopen(f"{self.registry_url}/schemas/ids/{schema_id}", timeout=10) as resp:  # noqa: S310
            parsed = fastavro.parse_schema(json.loads(json.loads(resp.read())["schema"]))
        self.schemas[schema_id] = parsed
        return parsed

    def __call__(self, value: bytes) -> dict[str, Any]:
        magic, schema_id = HEADER.unpack_from(value)
        if magic != 0:
            raise ValueError(f"magic byte {magic}: not registry-framed Avro")
        writer = self.schemas.get(schema_id) or self.fetch(schema_id)
        return fastavro.schemaless_reader(io.BytesIO(memoryview(value)[5:]), writer, None)


class Meter:
    """Counts processed readings; marks the first and the N-th with time and CPU."""

    def __init__(self, target: int, peer: str) -> None:
        self.target = target
        self.peer = peer
        self.count = 0
        self.t_first = self.cpu_first = 0.0
        self.done = False

    def first(self) -> None:
        self.t_first = time.perf_counter()
        self.cpu_first = cpu_s()

    def result(self, **extra: Any) -> dict[str, Any]:
        t_end, cpu_end = time.perf_counter(), cpu_s()
        self.done = True
        return {
            "peer": self.peer,
            "readings": self.count,
            # the first message only starts the clock: N-1 readings are timed
            "seconds": t_end - self.t_first,
            "cpu_s": cpu_end - self.cpu_first,
            "timed_readings": self.count - 1,
            "total_seconds": t_end - PROCESS_T0,
            "total_cpu_s": cpu_end,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            **extra,
        }


def cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def emit(result: dict[str, Any]) -> None:
    # sys.__stdout__: a Faust worker redirects sys.stdout into its logger
    out = sys.__stdout__ or sys.stdout
    out.write(RESULT_PREFIX + json.dumps(result) + "\n")
    out.flush()


def watchdog(seconds: float) -> None:
    """Exit hard if a graceful shutdown after the result takes longer than `seconds`."""
    def run() -> None:
        time.sleep(seconds)
        os._exit(0)

    threading.Thread(target=run, daemon=True).start()


# -- (a) plain aiokafka: the Python ceiling -------------------------------------------------
async def run_aiokafka(args: argparse.Namespace) -> None:
    from aiokafka import AIOKafkaConsumer

    decode = FramedAvroDecoder(args.registry, args.schema_id)
    meter = Meter(args.readings, "aiokafka")
    consumer = AIOKafkaConsumer(
        args.topic, bootstrap_servers=args.bootstrap, group_id=args.group, auto_offset_reset="earliest",
        enable_auto_commit=False, max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    result = None
    try:
        while result is None:
            batches = await consumer.getmany(timeout_ms=1000, max_records=50_000)
            for messages in batches.values():
                for m in messages:
                    decode(m.value)
                    meter.count += 1
                    if meter.count == 1:
                        meter.first()
                    if meter.count >= meter.target:
                        result = meter.result(max_records=50_000)
                        break
                if result is not None:
                    break
        emit(result)
        watchdog(20)
    finally:
        await consumer.stop()


# -- (c) Quix Streams: decode + 1-minute tumbling count per device ------------------------
def run_quix(args: argparse.Namespace) -> None:
    import logging
    from datetime import timedelta

    from quixstreams import Application
    from quixstreams.models.serializers import Deserializer

    decode = FramedAvroDecoder(args.registry, args.schema_id)

    class FramedAvro(Deserializer):
        def __call__(self, value: bytes, ctx: Any) -> dict[str, Any]:
            return decode(value)

    def event_time_ms(value: Any, headers: Any, timestamp: int, timestamp_type: Any) -> int:
        return int(value["event_time"].timestamp() * 1000)

    app = Application(
        broker_address=args.bootstrap, consumer_group=args.group, auto_offset_reset="earliest",
        state_dir=args.state_dir, loglevel=logging.WARNING,
    )
    topic = app.topic(args.topic, value_deserializer=FramedAvro(), key_deserializer="str",
                      timestamp_extractor=event_time_ms)
    sdf = app.dataframe(topic)
    meter = Meter(args.readings, "quixstreams")
    finals = [0]

    def counted(value: dict[str, Any]) -> None:
        if meter.done:
            return
        meter.count += 1
        if meter.count == 1:
            meter.first()
        if meter.count >= meter.target:
            emit(meter.result(windows_emitted=finals[0]))
            watchdog(30)
            app.stop()

    def final(window: dict[str, Any]) -> None:
        finals[0] += 1

    sdf = sdf.update(counted)
    sdf = sdf.tumbling_window(timedelta(minutes=1)).count().final()
    sdf = sdf.update(final)
    app.run()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("peer", choices=("aiokafka", "quix"))
    ap.add_argument("--topic", required=True)
    ap.add_argument("--readings", type=int, required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--registry", required=True)
    ap.add_argument("--schema-id", type=int, action="append", default=[], help="Writer schema ids to prefetch")
    ap.add_argument("--state-dir", default=None, help="Quix state directory (RocksDB)")
    args = ap.parse_args()
    if args.peer == "aiokafka":
        import asyncio

        asyncio.run(run_aiokafka(args))
    else:
        run_quix(args)


if __name__ == "__main__":
    main()
