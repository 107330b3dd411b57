"""Format: readings → Arrow table → Parquet bytes. Knows nothing of destinations."""

from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

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

# Column name → the Reading attribute it comes from (lat and lon come from `location`).
_ATTRS = {
    "device_id": attrgetter("device_id"), "device_type": attrgetter("device_type"),
    "event_time": attrgetter("event_time"), "seq": attrgetter("seq"), "firmware": attrgetter("firmware"),
    "battery": attrgetter("battery"), "signal_dbm": attrgetter("signal_dbm"), "schema_id": attrgetter("schema_id"),
    "schema_version": attrgetter("schema_version"), "kafka_partition": attrgetter("partition"),
    "kafka_offset": attrgetter("offset"),
}
_METRICS, _TAGS, _LOCATION = attrgetter("metrics"), attrgetter("tags"), attrgetter("location")


def _map_column(maps: list[Any], type_: pa.DataType, *, null_if_empty: bool) -> pa.Array:
    """A map column straight from the dicts (Arrow converts dicts to map entries itself, without a list
    of pairs per row). With `null_if_empty`, a missing or empty dict is a null map."""
    if null_if_empty:
        if not any(maps):
            return pa.nulls(len(maps), type_)
        maps = [m if m else None for m in maps]
    try:
        return pa.array(maps, type=type_)
    except (TypeError, ValueError):  # not dicts (another Mapping): the general path, with its own errors
        return pa.array([list(m.items()) if m else None for m in maps] if null_if_empty
                        else [list(m.items()) for m in maps], type=type_)


def readings_table(rows: Sequence[Reading], schema: pa.Schema = READINGS_SCHEMA) -> pa.Table:
    """Column-wise build: one C-level pass (map + attrgetter) per column into a list, then one Arrow
    conversion per column. No Python object is created per row (no tuples, no lists of pairs), which is
    most of the cost a per-row build paid, including the garbage collector's share."""
    locs: list[Any] | None = None
    arrays = []
    for f in schema:
        name = f.name
        getter = _ATTRS.get(name)
        if getter is not None:
            arrays.append(pa.array(list(map(getter, rows)), type=f.type))
        elif name in ("metrics", "tags"):
            maps = list(map(_METRICS if name == "metrics" else _TAGS, rows))
            arrays.append(_map_column(maps, f.type, null_if_empty=name == "tags"))
        elif name in ("lat", "lon"):
            if locs is None:
                locs = list(map(_LOCATION, rows))
            arrays.append(pa.array([loc.lat if loc else None for loc in locs] if name == "lat"
                                   else [loc.lon if loc else None for loc in locs], type=f.type))
        else:
            raise KeyError(name)
    return pa.Table.from_arrays(arrays, schema=schema)


class ParquetContent:
    """The rows of one Parquet file being built in memory.

    Rows arrive as Arrow tables (one per batch) and are compressed into row groups as they
    add up (`encode`), into an in-memory stream: a row there takes about a tenth of its Arrow
    size. `finish` gives the whole file's bytes, for the destination to write in one piece.
    """

    def __init__(self, compression: str) -> None:
        self.compression = compression
        self.tables: list[pa.Table] = []  # not compressed yet
        self.pending_rows = 0
        self.pending_bytes = 0
        self.encoded_rows = 0
        self._stream: pa.BufferOutputStream | None = None
        self._writer: pq.ParquetWriter | None = None

    @property
    def rows(self) -> int:
        return self.encoded_rows + self.pending_rows

    @property
    def nbytes(self) -> int:
        """Estimated memory held: compressed row groups plus the Arrow tables not yet compressed."""
        return (self._stream.tell() if self._stream is not None else 0) + self.pending_bytes

    def add(self, table: pa.Table) -> None:
        self.tables.append(table)
        self.pending_rows += table.num_rows
        self.pending_bytes += table.nbytes

    def take(self, rows: int) -> pa.Table:
        """Remove and return the first `rows` rows not compressed yet."""
        table = pa.concat_tables(self.tables)
        rest = table.slice(rows)
        self.tables = [rest] if rest.num_rows else []
        self.pending_rows, self.pending_bytes = rest.num_rows, rest.nbytes
        return table.slice(0, rows)

    def encode(self, rows: int | None = None, row_group_rows: int = 1 << 62) -> None:
        """Compress the first `rows` pending rows (all by default) into row groups."""
        rows = self.pending_rows if rows is None else min(rows, self.pending_rows)
        if rows <= 0:
            return
        table = self.take(rows)
        if self._writer is None:
            self._stream = pa.BufferOutputStream()
            self._writer = pq.ParquetWriter(self._stream, table.schema, compression=self.compression)
        self._writer.write_table(table, row_group_size=row_group_rows)
        self.encoded_rows += table.num_rows

    def finish(self, row_group_rows: int) -> pa.Buffer:
        """The whole file's bytes: the pending rows compressed, the footer written."""
        self.encode(row_group_rows=row_group_rows)
        assert self._writer is not None and self._stream is not None, "finish() of a file without rows"
        self._writer.close()
        return self._stream.getvalue()
