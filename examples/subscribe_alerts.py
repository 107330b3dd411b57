"""Subscribe to fieldstream's anomaly alerts with confluent-kafka: a minimal, standalone example.

Alerts are Avro records (fieldstream/schemas/alert.v1.avsc) in the Confluent wire
format on the alerts topic (default `telemetry.alerts`), keyed by device id. Each
anomaly yields two events with the same `alert_id`: state "open", later "resolved".

    pip install "confluent-kafka[avro,schemaregistry]"
    python examples/subscribe_alerts.py --bootstrap 127.0.0.1:19092 --registry http://127.0.0.1:18081

Only confluent-kafka is needed (not fieldstream): the deserializer fetches each
message's writer schema from the registry by the id in the message.
"""

from __future__ import annotations

import argparse

from confluent_kafka import Consumer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:19092", help="Kafka bootstrap servers")
    parser.add_argument("--registry", default="http://127.0.0.1:18081", help="Schema registry URL")
    parser.add_argument("--topic", default="telemetry.alerts")
    parser.add_argument("--group", default="alerts-example",
                        help="Consumer group: its committed offsets make a restart continue where it stopped")
    parser.add_argument("--min-severity", choices=["info", "warning", "critical"], default="info")
    args = parser.parse_args()

    deserialize = AvroDeserializer(SchemaRegistryClient({"url": args.registry}))
    consumer = Consumer({
        "bootstrap.servers": args.bootstrap,
        "group.id": args.group,
        "auto.offset.reset": "earliest",  # a new group starts with the oldest retained alert
    })
    levels = ["info", "warning", "critical"]
    consumer.subscribe([args.topic])
    try:
        while True:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            if msg.error():
                print(f"consumer error: {msg.error()}")
                continue
            alert = deserialize(msg.value(), SerializationContext(msg.topic(), MessageField.VALUE))
            if levels.index(alert["severity"]) < levels.index(args.min_severity):
                continue
            # event_time is a timezone-aware datetime (Avro timestamp-micros).
            print(f"{alert['event_time']:%Y-%m-%d %H:%M:%S} {alert['state']:<8} {alert['severity']:<8} "
                  f"{alert['device_id']} {alert['detector']} {alert['metric']}: {alert['message']}")
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()  # commits the offsets of what was printed (auto-commit) and leaves the group


if __name__ == "__main__":
    main()
