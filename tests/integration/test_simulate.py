"""`fieldstream simulate` against real Kafka and the registry: what arrives is exactly what the fleet generated."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from click.testing import CliRunner
import fastavro
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from fieldstream.commands.simulate import simulate
from fieldstream.config import load_settings
from fieldstream.devices.fleet import AnomalyLabel, FleetConfig, fleet_labels, simulate_fleet
from fieldstream.errors import DecodeError
from fieldstream.schemas import codec
from fieldstream.schemas.files import READING_LATEST, parsed

from .devices_support import fresh_topic, read_all


def test_simulated_fleet_arrives_intact_with_both_schema_versions_and_poison(tmp_path: Path) -> None:
    settings = load_settings()
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    labels_path = tmp_path / "labels.jsonl"
    config = FleetConfig(devices=24, seed=11, start=start, duration_s=3 * 3600, v1_fraction=0.4,
                         anomaly_rate=0.5, bad_fraction=0.02, out_of_order_fraction=0.03, late_fraction=0.01)
    with fresh_topic(settings, "test-simulate") as topic:  # --auto-register registers v1 then v2
        result = CliRunner().invoke(simulate, [
            "--devices", "24", "--seed", "11", "--start", start.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "--duration", "3h", "--v1-fraction", "0.4", "--anomaly-rate", "0.5", "--bad-fraction", "0.02",
            "--out-of-order", "0.03", "--late", "0.01", "--labels", str(labels_path), "--topic", topic,
            "--auto-register",
        ])
        assert result.exit_code == 0, result.output
        messages = read_all(settings, topic)
        registry = SchemaRegistryClient(settings.registry.client_config())

        expected = list(simulate_fleet(config))
        assert len(messages) == len(expected)
        reader = parsed(READING_LATEST)
        writers: dict[int, Any] = {}
        versions: Counter[int] = Counter()
        decoded: list[dict] = []
        poison = 0
        for m in messages:
            try:
                schema_id, body = codec.split_frame(m.value)
                if schema_id not in writers:
                    writers[schema_id] = parsed_from_registry(registry, schema_id)
            except (DecodeError, SchemaRegistryError):  # poison: not framed, or framed with an unknown id
                poison += 1
                continue
            versions[schema_id] += 1
            record = codec.decode_body(body, writers[schema_id], reader)
            assert m.key == record["device_id"].encode()
            decoded.append(record)

    by_key = lambda r: (r["device_id"], r["seq"])  # noqa: E731
    assert sorted(decoded, key=by_key) == sorted((e.record for e in expected if e.record), key=by_key)
    assert poison == sum(1 for e in expected if e.bad_value is not None) > 0
    assert len(versions) == 2  # v1 devices wrote v1, the rest v2
    written = [AnomalyLabel.from_dict(json.loads(line)) for line in labels_path.read_text().splitlines()]
    assert sorted(written, key=lambda lb: (lb.start, lb.device_id, lb.metric)) == fleet_labels(config)
    assert len(written) > 0


def parsed_from_registry(registry: SchemaRegistryClient, schema_id: int) -> Any:
    return fastavro.parse_schema(json.loads(registry.get_schema(schema_id).schema_str))
