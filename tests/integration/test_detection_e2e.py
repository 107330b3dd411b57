"""Detection in real workers: learned state survives a SIGKILL, alerts open and resolve once, silence is noticed.

A device's z-score baseline needs FIELDSTREAM_DETECT_WARMUP readings before it may
alert. The first worker learns it and is killed once its state is checkpointed (its
offsets are committed only behind the checkpoint); a spike sent to the second
worker is then alerted at once, which only a restored baseline can do: a cold one
would still be warming up. The alert opens and resolves exactly once, on the alerts
topic and in PostgreSQL. Another device that goes quiet gets an `offline` alert from
the timer, with no reading to trigger it.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from fieldstream.devices import DeviceProducer
from fieldstream.schemas.files import ALERT_V1, schema_text

from .conftest import pg_fetch
from .framing import reading
from .harness import FAST_FAILOVER_ENV, Worker, committed_offsets, consume_all, end_offsets, wait_for

WARMUP = 30
WORKER_ENV = {
    **FAST_FAILOVER_ENV,
    "FIELDSTREAM_DETECT_WARMUP": str(WARMUP),
    "FIELDSTREAM_DETECT_HST_ENABLED": "false",  # per worker, re-warms after a restart: not what is tested
    "FIELDSTREAM_DETECT_OFFLINE_CHECK_S": "1",
    "FIELDSTREAM_WINDOW_CHECKPOINT_S": "1",
}


def temperature(device: str, seq: int, at: datetime, value: float) -> dict:
    return reading(device, seq, at, metrics={"temperature": value})


def alerts_on_topic(settings, expect: int) -> list[dict]:
    deserialize = AvroDeserializer(SchemaRegistryClient(settings.registry.client_config()), schema_text(ALERT_V1))
    return [deserialize(m.value(), SerializationContext(m.topic(), MessageField.VALUE))
            for m in consume_all(settings, settings.topics.alerts, expect=expect, timeout_s=8)]


def pg_alerts(settings, device: str, detector: str) -> list[dict]:
    return [dict(r) for r in pg_fetch(settings, "SELECT alert_id, state, detector, metric, severity FROM alerts "
                                                "WHERE device_id = $1 AND detector = $2 ORDER BY event_time, state",
                                      device, detector)]


def test_restored_baseline_alerts_at_once_and_silence_is_noticed(scenario, workers):
    settings = scenario.settings()
    learned, quiet = f"{scenario.name}-learned", f"{scenario.name}-quiet"
    noise = random.Random(7)
    producer = DeviceProducer(settings.kafka, settings.registry, settings.topics.readings, linger_ms=0)
    start = datetime.now(UTC) - timedelta(minutes=20)
    seq = 0

    def send_learned(value: float) -> None:
        nonlocal seq
        producer.send(temperature(learned, seq, start + timedelta(seconds=10 * seq), value))
        seq += 1

    # The first worker learns the device's normal: 20 °C with a little noise.
    first = Worker(scenario, "first", extra_env=WORKER_ENV)
    workers.append(first)
    for _ in range(WARMUP + 10):
        send_learned(20.0 + noise.gauss(0, 0.2))
    assert producer.flush(30) == 0
    readings_end = end_offsets(settings, settings.topics.readings)

    def checkpointed() -> bool:
        committed = committed_offsets(settings, settings.worker.app_id, settings.topics.readings)
        return all(committed.get(p, -1) >= end for p, end in readings_end.items() if end > 0)

    wait_for(checkpointed, 60, "the learned readings committed (so their state is checkpointed)", workers=[first])
    assert pg_alerts(settings, learned, "zscore") == []  # normal readings alert nothing
    first.kill()

    second = Worker(scenario, "second", extra_env=WORKER_ENV)
    workers.append(second)
    send_learned(35.0)  # 75 σ away: anomalous to a warm baseline, invisible to a cold one
    assert producer.flush(30) == 0
    wait_for(lambda: any(a["state"] == "open" for a in pg_alerts(settings, learned, "zscore")), 60,
             "the spike's alert in PostgreSQL", workers=[second])
    for _ in range(15):  # back to normal: the alert resolves after the cool-down
        send_learned(20.0 + noise.gauss(0, 0.2))

    # Another device reports every half second, then falls silent.
    for i in range(8):
        producer.send(temperature(quiet, i, datetime.now(UTC), 18.0 + noise.gauss(0, 0.2)))
        producer.flush(10)
        time.sleep(0.5)
    assert producer.flush(30) == 0

    def offline_alert() -> bool:
        return [a["state"] for a in pg_alerts(settings, quiet, "offline")] == ["open"]

    # The timer runs once the stream has flowed freely for 30 s after the worker started.
    wait_for(offline_alert, 90, "an offline alert for the silent device", workers=[second])
    wait_for(lambda: [a["state"] for a in pg_alerts(settings, learned, "zscore")] == ["open", "resolved"], 60,
             "the spike's alert resolved", workers=[second])

    # (The learned device may be offline too: its readings came in bursts, and bursts set its interval.)
    stored = pg_alerts(settings, learned, "zscore")
    assert {a["metric"] for a in stored} == {"temperature"}
    assert len({a["alert_id"] for a in stored}) == 1  # one anomaly, one alert id, open then resolved
    assert [a["detector"] for a in pg_fetch(settings, "SELECT detector FROM alerts WHERE device_id = $1", quiet)] \
        == ["offline"]  # steady normal readings: nothing else

    # The alerts topic carries the same events, each once.
    published = alerts_on_topic(settings, expect=1000)  # all there are (read until quiet)
    events = Counter((a["alert_id"], a["state"], a["device_id"], a["detector"]) for a in published
                     if (a["device_id"], a["detector"]) in {(learned, "zscore"), (quiet, "offline")})
    alert_id = stored[0]["alert_id"]
    assert events == Counter({(alert_id, "open", learned, "zscore"): 1, (alert_id, "resolved", learned, "zscore"): 1,
                              (pg_alerts(settings, quiet, "offline")[0]["alert_id"], "open", quiet, "offline"): 1})
    assert second.alive()
