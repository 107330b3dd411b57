"""`fieldstream alerts tail` against real Kafka and the registry."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta

from click.testing import CliRunner
from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from fieldstream.commands.alerts import alerts
from fieldstream.config import load_settings
from fieldstream.schemas.files import ALERT_V1, schema_text

from .devices_support import fresh_topic
from .harness import BIN

T0 = datetime(2026, 1, 5, 8, 30, tzinfo=UTC)


def _alert(i: int, device: str, severity: str, detector: str, state: str = "open") -> dict:
    return {"alert_id": f"a{i}", "state": state, "device_id": device,
            "device_type": device.split("-")[1].replace("soil", "soil_station"), "event_time": T0 + timedelta(minutes=i),
            "detector": detector, "metric": "temperature", "value": 30.0 + i, "score": 6.5, "threshold": 5.0,
            "severity": severity, "message": f"alert {i}"}


def test_tail_filters_and_prints_json_and_lines() -> None:
    settings = load_settings()
    sent = [
        _alert(0, "sim-soil-00001", "info", "zscore"),
        _alert(1, "sim-soil-00001", "critical", "threshold"),
        _alert(2, "sim-collar-00002", "warning", "geofence"),
        _alert(3, "sim-collar-00002", "warning", "geofence", state="resolved"),
    ]
    with fresh_topic(settings, "test-alerts", partitions=1, schemas=(ALERT_V1,)) as topic:
        serialize = AvroSerializer(SchemaRegistryClient(settings.registry.client_config()), schema_text(ALERT_V1),
                                   conf={"auto.register.schemas": False})
        producer = Producer(settings.kafka.confluent_config())
        for a in sent:
            producer.produce(topic, key=a["device_id"].encode(),
                             value=serialize(a, SerializationContext(topic, MessageField.VALUE)))
        assert producer.flush(30) == 0

        runner = CliRunner()
        common = ["tail", "--topic", topic, "--from-beginning", "--idle-timeout", "3"]
        as_json = runner.invoke(alerts, [*common, "--json", "--severity", "warning"])
        assert as_json.exit_code == 0, as_json.output
        got = [json.loads(line) for line in as_json.stdout.splitlines()]
        assert [g["alert_id"] for g in got] == ["a1", "a2", "a3"]
        assert got[0]["event_time"] == (T0 + timedelta(minutes=1)).isoformat()
        assert got[0] == {**sent[1], "event_time": got[0]["event_time"]}

        lines = runner.invoke(alerts, [*common, "--device", "sim-collar-*", "--state", "open", "--limit", "5"])
        assert lines.exit_code == 0, lines.output
        printed = lines.stdout.splitlines()
        assert len(printed) == 1
        assert "OPEN" in printed[0] and "geofence" in printed[0] and "sim-collar-00002 (collar)" in printed[0]

        by_detector = runner.invoke(alerts, [*common, "--detector", "zscore", "--device-type", "soil_station",
                                             "--json", "--limit", "1"])
        assert [json.loads(x)["alert_id"] for x in by_detector.stdout.splitlines()] == ["a0"]


def test_tail_severity_critical_shows_only_critical_alerts_as_they_arrive() -> None:
    """The command as a user runs it, in its own process, following the topic live; Ctrl-C ends it cleanly."""
    settings = load_settings()
    with fresh_topic(settings, "test-alerts-live", partitions=2, schemas=(ALERT_V1,)) as topic:
        serialize = AvroSerializer(SchemaRegistryClient(settings.registry.client_config()), schema_text(ALERT_V1),
                                   conf={"auto.register.schemas": False})
        producer = Producer(settings.kafka.confluent_config())

        def publish(alert: dict) -> None:
            producer.produce(topic, key=alert["device_id"].encode(),
                             value=serialize(alert, SerializationContext(topic, MessageField.VALUE)))
            producer.flush(10)

        publish(_alert(90, "sim-soil-00009", "critical", "threshold"))  # before the tail starts: not shown
        tail = subprocess.Popen([str(BIN / "fieldstream"), "alerts", "tail", "--severity", "critical", "--json",
                                 "--topic", topic], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line) for line in tail.stdout], daemon=True).start()
        try:
            assert "following" in tail.stderr.readline()  # subscribed and assigned

            # Critical markers until one shows: the tail's "latest" position is in place and reading.
            printed: list[dict] = []
            for i in range(40):
                publish(_alert(100 + i, "sim-soil-00001", "critical", "threshold"))
                try:
                    printed.append(json.loads(lines.get(timeout=0.5)))
                    break
                except queue.Empty:
                    continue
            assert printed, "no alert shown while critical alerts were being published"
            time.sleep(1.5)  # markers still on their way
            while not lines.empty():
                printed.append(json.loads(lines.get()))

            live = [_alert(200, "sim-soil-00002", "info", "zscore"),
                    _alert(201, "sim-collar-00003", "warning", "geofence"),
                    _alert(202, "sim-soil-00004", "critical", "threshold"),
                    _alert(203, "sim-collar-00003", "warning", "geofence", state="resolved"),
                    _alert(204, "sim-tank-00005", "critical", "spike")]
            for alert in live:
                publish(alert)
                if alert["severity"] == "critical":  # shown as it arrives, before the next is published
                    printed.append(json.loads(lines.get(timeout=10)))
                    assert printed[-1]["alert_id"] == alert["alert_id"]
            time.sleep(1.5)  # anything else would be printed by now
            while not lines.empty():
                printed.append(json.loads(lines.get()))
        finally:
            tail.send_signal(signal.SIGINT)
            code = tail.wait(15)
        assert code == 0, tail.stderr.read()
        assert {p["severity"] for p in printed} == {"critical"}
        assert "a90" not in {p["alert_id"] for p in printed}  # published before it started
        assert [p["alert_id"] for p in printed][-2:] == ["a202", "a204"]
