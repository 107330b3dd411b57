"""The producer SDK: delivery reports name the real partition and offset; a failed delivery is reported too."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fieldstream.devices import DeliveryReport, DeviceProducer
from fieldstream.schemas import codec

from .framing import reading
from .harness import consume_all, free_port


def test_delivery_reports_carry_the_offsets_the_broker_gave(scenario):
    settings = scenario.settings()
    reports: list[DeliveryReport] = []
    producer = DeviceProducer(settings.kafka, settings.registry, settings.topics.readings, on_delivery=reports.append)
    now = datetime.now(UTC)
    devices = [f"{scenario.name}-sdk-{d}" for d in range(5)]
    for seq in range(4):
        for device in devices:
            producer.send(reading(device, seq, now - timedelta(seconds=10 - seq)))
    assert producer.flush(30) == 0
    assert len(reports) == producer.delivered == 20 and producer.failed == 0
    assert all(r.ok and r.topic == settings.topics.readings for r in reports)

    messages = consume_all(settings, settings.topics.readings, expect=20)
    stored = {(m.partition(), m.offset()): m for m in messages}
    for r in reports:  # each report points at its own message: key = device_id, the SDK's schema id
        msg = stored[(r.partition, r.offset)]
        assert msg.key() == r.device_id.encode()
        assert codec.split_frame(msg.value())[0] == producer.schema_id
    assert any(r.offset == 0 for r in reports)  # the first message of a partition: offset 0, not "unknown"
    by_device = {d: sorted((r.partition, r.offset) for r in reports if r.device_id == d) for d in devices}
    assert all(len({p for p, _ in spots}) == 1 for spots in by_device.values())  # a device keeps its partition


def test_a_delivery_that_fails_is_reported_with_its_error(scenario):
    settings = scenario.settings()
    reports: list[DeliveryReport] = []
    nowhere = settings.kafka.model_copy(update={"bootstrap_servers": f"127.0.0.1:{free_port()}"})
    producer = DeviceProducer(nowhere, settings.registry, settings.topics.readings, on_delivery=reports.append,
                              extra_config={"message.timeout.ms": 3000})
    producer.send(reading(f"{scenario.name}-sdk-lost", 0, datetime.now(UTC)))
    producer.flush(15)
    assert (producer.delivered, producer.failed) == (0, 1)
    [report] = reports
    assert not report.ok and "timed out" in report.error.lower()
    assert report.offset == -1 and report.device_id == f"{scenario.name}-sdk-lost"
