"""The producer SDK for devices and gateways.

confluent-kafka does the work: its schema-registry client and AvroSerializer
write the Confluent wire format (magic byte, schema id, Avro body); its
idempotent producer batches, compresses and retries. This class fixes the
choices a telemetry producer should not have to make (key = device_id,
acks=all, idempotence) and surfaces delivery reports and schema rejections.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, Message, Producer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry import topic_record_subject_name_strategy
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

from fieldstream.config.kafka import KafkaSettings
from fieldstream.config.registry import RegistrySettings
from fieldstream.errors import FieldstreamError
from fieldstream.schemas.files import READING_BATCH_V1, READING_LATEST, schema_text, subject_for


class SchemaRejected(FieldstreamError):
    """The registry refused the producer's schema (incompatible, or not registered)."""

    reason = "schema_rejected"


@dataclass(frozen=True)
class DeliveryReport:
    device_id: str
    topic: str
    partition: int
    offset: int
    error: str | None

    @property
    def ok(self) -> bool:
        return self.error is None


DeliveryCallback = Callable[[DeliveryReport], None]


class DeviceProducer:
    """Produce readings as registry-framed Avro, keyed by device_id."""

    def __init__(
        self,
        kafka: KafkaSettings,
        registry: RegistrySettings,
        topic: str,
        *,
        schema_text_: str | None = None,
        schema_file: str = READING_LATEST,
        auto_register: bool = False,
        on_delivery: DeliveryCallback | None = None,
        linger_ms: int = 20,
        compression: str = "zstd",
        extra_config: dict[str, Any] | None = None,
    ) -> None:
        self.topic = topic
        self.subject = subject_for(topic)
        self.schema_str = schema_text_ or schema_text(schema_file)
        self.on_delivery = on_delivery
        self.delivered = 0
        self.failed = 0
        self.registry = SchemaRegistryClient(registry.client_config())
        self.schema_id = self._resolve_schema(auto_register)
        self._serializer = AvroSerializer(
            self.registry,
            self.schema_str,
            conf={"auto.register.schemas": False, "use.latest.version": False, "normalize.schemas": False},
        )
        self._ctx = SerializationContext(topic, MessageField.VALUE)
        self._batch_serializer: AvroSerializer | None = None
        self._producer = Producer({
            **kafka.confluent_config(),
            "enable.idempotence": True,
            "acks": "all",
            "compression.type": compression,
            "linger.ms": linger_ms,
            "batch.num.messages": 10000,
            "queue.buffering.max.messages": 500000,
            # Java-compatible hashing, the same as Faust's changelog producer: a device's
            # readings and its table state share a partition number.
            "partitioner": "murmur2_random",
            **(extra_config or {}),
        })

    def _resolve_schema(self, auto_register: bool) -> int:
        """Register (or look up) the schema now, so a refusal is reported before any send."""
        schema = Schema(self.schema_str, "AVRO")
        try:
            if auto_register:
                return self.registry.register_schema(self.subject, schema)
            return self.registry.lookup_schema(self.subject, schema).schema_id
        except SchemaRegistryError as e:
            action = "registration of" if auto_register else "look-up of"
            hint = (" (incompatible with the subject's compatibility level)" if e.http_status_code == 409
                    else " (register it first: `fieldstream schemas register`)" if e.http_status_code == 404 else "")
            raise SchemaRejected(
                f"the schema registry refused {action} the schema for subject {self.subject!r}{hint}: "
                f"HTTP {e.http_status_code}, error {e.error_code}: {e.error_message}"
            ) from e

    def _report(self, device_id: str) -> Callable[[KafkaError | None, Message], None]:
        def callback(err: KafkaError | None, msg: Message) -> None:
            if err is None:
                self.delivered += 1
            else:
                self.failed += 1
            if self.on_delivery is not None:
                # partition() and offset() are None when the message never reached a broker; 0 is real.
                partition, offset = msg.partition(), msg.offset()
                self.on_delivery(DeliveryReport(device_id, msg.topic(), -1 if partition is None else partition,
                                                -1 if offset is None else offset,
                                                None if err is None else str(err)))
        return callback

    def send(self, record: dict[str, Any]) -> None:
        """Serialize and enqueue one reading; delivery is reported asynchronously."""
        device_id = record["device_id"]
        value = self._serializer(record, self._ctx)
        self.send_raw(device_id.encode(), value, device_id=device_id)

    def send_batch(self, device_id: str, records: list[dict[str, Any]]) -> None:
        """Several readings of one device in one message (a ReadingBatch, v2-shaped readings).

        One Kafka message instead of many: what devices that upload in bursts and
        gateways that batch per device send; it costs the stream far less per reading.
        """
        if self._batch_serializer is None:
            self._batch_serializer = AvroSerializer(
                self.registry, schema_text(READING_BATCH_V1),
                conf={"auto.register.schemas": False, "use.latest.version": False,
                      "subject.name.strategy": topic_record_subject_name_strategy},
            )
        try:
            value = self._batch_serializer({"device_id": device_id, "readings": records}, self._ctx)
        except SchemaRegistryError as e:
            raise SchemaRejected(f"the schema registry refused the ReadingBatch schema: HTTP {e.http_status_code}, "
                                 f"error {e.error_code}: {e.error_message} (register it: `fieldstream schemas "
                                 "register`)") from e
        self.send_raw(device_id.encode(), value, device_id=device_id)

    def send_raw(self, key: bytes | None, value: bytes | None, *, device_id: str = "",
                 headers: list[tuple[str, bytes]] | None = None) -> None:
        """Enqueue bytes as they are (gateways that pre-serialize, dead-letter replay, tests)."""
        while True:
            try:
                self._producer.produce(self.topic, key=key, value=value, headers=headers,
                                       on_delivery=self._report(device_id))
                break
            except BufferError:
                self._producer.poll(0.1)  # local queue full: let deliveries drain
        self._producer.poll(0)

    def poll(self, timeout_s: float = 0) -> int:
        return self._producer.poll(timeout_s)

    def flush(self, timeout_s: float = 30) -> int:
        """Wait for outstanding deliveries; returns how many are still in flight."""
        return self._producer.flush(timeout_s)

    def __enter__(self) -> DeviceProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.flush()
