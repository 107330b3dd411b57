"""Format: readings → Arrow table → Parquet bytes. Knows nothing of destinations."""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from fieldstream.schemas.reading import Reading

READINGS_SCHEMA = pa.schema([
    pa.field("device_id", pa.string(), nullable=False),
    pa.field("device_type", pa.string(), nullable=False),
    pa.field("event_time", pa.timestamp("us", tz="UTC"), nullable=False),
    pa.field("seq", pa.int64(), nullable=False),
    pa.field("metrics", pa.map_(pa.string(), pa.float64()), nullable=False),
    pa.field("tags", pa.map_(pa.string(), pa.string())),
    pa.field("lat", pa.float64()),
    pa.field("lon", pa.float64()),
    pa.field("firmware", pa.string()),
    pa.field("battery", pa.float64()),
    pa.field("signal_dbm", pa.int32()),
    pa.field("schema_id", pa.int32(), nullable=False),
    pa.field("schema_version", pa.int32(), nullable=False),
    pa.field("kafka_partition", pa.int32(), nullable=False),
    pa.field("kafka_offset", pa.int64(), nullable=False),
])


def readings_table(rows: Sequence[Reading], schema: pa.Schema = READINGS_SCHEMA) -> pa.Table:
    """Column-wise build: one Python list per column is the cheapest path into Arrow."""
    locs = [r.location for r in rows]
    columns = {
        "device_id": [r.device_id for r in rows],
        "device_type": [r.device_type for r in rows],
        "event_time": [r.event_time for r in rows],
        "seq": [r.seq for r in rows],
        "metrics": [list(r.metrics.items()) for r in rows],
        "tags": [list(r.tags.items()) if r.tags else None for r in rows],
        "lat": [loc.lat if loc else None for loc in locs],
        "lon": [loc.lon if loc else None for loc in locs],
        "firmware": [r.firmware for r in rows],
        "battery": [r.battery for r in rows],
        "signal_dbm": [r.signal_dbm for r in rows],
        "schema_id": [r.schema_id for r in rows],
        "schema_version": [r.schema_version for r in rows],
        "kafka_partition": [r.partition for r in rows],
        "kafka_offset": [r.offset for r in rows],
    }
    return pa.table({f.name: pa.array(columns[f.name], type=f.type) for f in schema}, schema=schema)
