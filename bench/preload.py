"""Preload a readings topic with registry-framed Avro readings (the benchmarks' input).

    python bench/preload.py --topic bench.readings --readings 2000000 --devices 10000 --partitions 12
"""

from __future__ import annotations

import argparse
import math
import time
from datetime import UTC, datetime, timedelta

from tqdm import tqdm

from fieldstream.config import load_settings
from fieldstream.devices import DeviceProducer
from fieldstream.schemas.admin import register_bundled
from fieldstream.topics import ensure_topics

TYPES = (
    ("soil_station", ("moisture", "temperature", "humidity")),
    ("tank_probe", ("dissolved_oxygen", "ph", "water_temperature")),
    ("air_quality", ("tvoc", "eco2", "pm25", "humidity")),
    ("collar", ("activity", "body_temperature")),
)
BASE = {"moisture": 30, "temperature": 18, "humidity": 60, "dissolved_oxygen": 8, "ph": 7.2,
        "water_temperature": 16, "tvoc": 200, "eco2": 600, "pm25": 12, "activity": 20, "body_temperature": 38.5}


def reading(i: int, devices: int, start: datetime, interval_s: float) -> dict:
    d = i % devices
    n = i // devices
    device_type, names = TYPES[d % len(TYPES)]
    metrics = {m: BASE[m] * (1 + 0.05 * math.sin(n / 10 + d)) + (d % 7) * 0.1 for m in names}
    return {
        "device_id": f"dev-{d:05d}", "device_type": device_type,
        "event_time": start + timedelta(seconds=n * interval_s + (d % 60) * interval_s / 60),
        "seq": n, "metrics": metrics, "tags": None,
        "location": {"lat": -33.9 + d * 1e-5, "lon": 151.2 + n * 1e-6} if device_type == "collar" else None,
        "firmware": "1.4.2", "battery": 0.9, "signal_dbm": -70,
    }


def preload(settings, topic: str, readings: int, devices: int, partitions: int = 12, per_message: int = 1,
            interval_s: float = 10.0, end_at_now: bool = True, progress: bool = True) -> float:
    """Fill `topic`; returns the readings/s the producer reached."""
    ensure_topics(settings, {topic: partitions})
    register_bundled(settings.model_copy(update={"topics": settings.topics.model_copy(update={"readings": topic})}))
    span = readings / devices * interval_s
    start = datetime.now(UTC) - timedelta(seconds=span if end_at_now else span + 3600)
    producer = DeviceProducer(settings.kafka, settings.registry, topic, linger_ms=50)
    t0 = time.perf_counter()
    with tqdm(total=readings, unit="readings", mininterval=1, disable=not progress) as bar:
        if per_message <= 1:
            for i in range(readings):
                producer.send(reading(i, devices, start, interval_s))
                if i % 10000 == 9999:
                    bar.update(10000)
        else:
            # Round r sends, for every device, its next `per_message` readings in one ReadingBatch.
            rounds = -(-readings // (devices * per_message))
            for r in range(rounds):
                for d in range(devices):
                    first = r * per_message
                    batch = [reading((first + k) * devices + d, devices, start, interval_s)
                             for k in range(per_message) if (first + k) * devices + d < readings]
                    if batch:
                        producer.send_batch(batch[0]["device_id"], batch)
                        bar.update(len(batch))
    if producer.flush(300):
        raise RuntimeError("preload: deliveries still pending after 300 s")
    if producer.failed:
        raise RuntimeError(f"preload: {producer.failed} deliveries failed")
    return readings / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--topic", required=True)
    p.add_argument("--readings", type=int, default=2_000_000)
    p.add_argument("--devices", type=int, default=10_000)
    p.add_argument("--partitions", type=int, default=12)
    p.add_argument("--interval-s", type=float, default=10.0, help="Event-time spacing of one device's readings")
    p.add_argument("--end-at-now", action="store_true", help="Place the last readings at the current time")
    p.add_argument("--per-message", type=int, default=1,
                   help="Readings of one device per Kafka message (ReadingBatch when > 1)")
    args = p.parse_args()
    rate = preload(load_settings(), args.topic, args.readings, args.devices, args.partitions, args.per_message,
                   args.interval_s, args.end_at_now)
    print(f"preloaded {args.readings} readings into {args.topic} ({rate:,.0f} readings/s)")


if __name__ == "__main__":
    main()
