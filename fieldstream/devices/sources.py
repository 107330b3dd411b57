"""Rows of historical files (CSV, JSON lines, Parquet), each with where it came from.

Every data row gets an index (0-based, what a resume point counts) and, in
text formats, its line number; a row that cannot even be read as a row (wrong
number of CSV fields, a line that is not a JSON object) comes back with an
error instead of values, so the caller rejects it rather than losing it.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fieldstream.errors import ConfigError

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet",
           ".pq": "parquet"}


@dataclass(frozen=True, slots=True)
class SourceRow:
    index: int  # 0-based data row of the file
    line: int | None  # 1-based line (text formats; a CSV record's last line)
    values: dict[str, Any] | None
    error: tuple[str, str] | None = None  # (reason, message) when the row is malformed


def detect_format(path: Path, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    found = FORMATS.get(path.suffix.lower())
    if found is None:
        raise ConfigError(f"{path}: cannot tell the format from the extension; set `format` in the mapping")
    return found


def read_rows(path: Path, fmt: str, columns: set[str], delimiter: str = ",") -> Iterator[SourceRow]:
    """Rows of one file; ConfigError up front if a tabular file lacks a mapped column."""
    if fmt == "csv":
        return _csv_rows(path, columns, delimiter)
    if fmt == "jsonl":
        return _jsonl_rows(path)
    if fmt == "parquet":
        return _parquet_rows(path, columns)
    raise ConfigError(f"unknown format {fmt!r}")


def count_rows(path: Path, fmt: str) -> int:
    """Data rows in a file, cheaply (for the progress bar; blank lines make text counts an upper bound)."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    lines = 0
    last = b"\n"
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    lines += last != b"\n"
    return max(lines - (fmt == "csv"), 0)


def _missing(path: Path, present: set[str] | list[str], wanted: set[str]) -> None:
    missing = sorted(wanted - set(present))
    if missing:
        raise ConfigError(f"{path}: no column {', '.join(missing)} (it has: {', '.join(present)})")


def _csv_rows(path: Path, columns: set[str], delimiter: str) -> Iterator[SourceRow]:
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f, delimiter=delimiter)
        header = next(reader, None)
        if header is None:
            return
        header = [h.strip() for h in header]
        _missing(path, header, columns)
        index = 0
        for fields in reader:
            if not fields:  # a blank line holds no row
                continue
            if len(fields) != len(header):
                yield SourceRow(index, reader.line_num, None,
                                ("bad_shape", f"{len(fields)} fields where the header has {len(header)}: {fields!r}"))
            else:
                yield SourceRow(index, reader.line_num, dict(zip(header, fields)))
            index += 1


def _jsonl_rows(path: Path) -> Iterator[SourceRow]:
    with path.open(encoding="utf-8") as f:
        index = 0
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as e:
                yield SourceRow(index, line_no, None, ("bad_json", f"{e}: {line.strip()[:200]!r}"))
            else:
                if isinstance(value, dict):
                    yield SourceRow(index, line_no, value)
                else:
                    yield SourceRow(index, line_no, None, ("not_object", f"a JSON {type(value).__name__}, not an object"))
            index += 1


def _parquet_rows(path: Path, columns: set[str]) -> Iterator[SourceRow]:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    _missing(path, pf.schema_arrow.names, columns)
    index = 0
    for batch in pf.iter_batches(batch_size=10_000, columns=sorted(columns)):
        for values in batch.to_pylist():
            yield SourceRow(index, None, values)
            index += 1
