"""How rows of a historical file become readings: the backfill mapping, and row validation.

A mapping is a small YAML file::

    format: auto                 # csv | jsonl | parquet | auto (from the extension)
    csv_delimiter: ","
    device_id: {column: sensor}  # or {value: pump-7}, or {from_filename: true, prefix: "nab-"}
    device_type: soil_station    # a constant, or {column: type}
    timestamp:
      column: time
      format: iso                # iso | epoch_s | epoch_ms | epoch_us | epoch_ns | a strptime pattern
      timezone: UTC              # for naive timestamps
      shift_to: now              # optional: shift every timestamp so the latest is now (or an ISO time)
    metrics: {moisture: soil_moisture_pct, temperature: temp_c}   # metric: column (or a list of columns)
    location: {lat: lat, lon: lon}   # optional
    seq: null                    # optional column; default: the event time in microseconds
    tags: {source: archive}      # optional constant tags

Every row either becomes a reading the pipeline's own `Validator` accepts, or
is rejected with a machine-readable reason; nothing is dropped silently. An
empty metric cell means "not measured" (the metric is left out).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from fieldstream.config.validation import ValidationSettings
from fieldstream.errors import ConfigError, FieldstreamError, ValidationError
from fieldstream.ingest.validate import Validator
from fieldstream.schemas.reading import Reading

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EPOCH_UNITS_US = {"epoch_s": 1_000_000, "epoch_ms": 1_000, "epoch_us": 1, "epoch_ns": 0.001}


class RowRejected(FieldstreamError):
    """A row that cannot become a valid reading; `reason` is short and machine-readable."""

    reason = "rejected"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DeviceIdSpec(_Strict):
    column: str | None = None
    value: str | None = None
    from_filename: bool = False
    prefix: str = ""

    @model_validator(mode="after")
    def _one_source(self) -> DeviceIdSpec:
        if sum((self.column is not None, self.value is not None, self.from_filename)) != 1:
            raise ValueError("give exactly one of column, value or from_filename")
        return self


class DeviceTypeSpec(_Strict):
    column: str | None = None
    value: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> DeviceTypeSpec:
        if (self.column is None) == (self.value is None):
            raise ValueError("give exactly one of column or value")
        return self


class TimestampSpec(_Strict):
    column: str
    format: str = "iso"
    timezone: str = "UTC"
    shift_to: str | None = None  # "now" or an ISO time

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        zone(v)
        return v

    @field_validator("shift_to")
    @classmethod
    def _shift_target(cls, v: str | None) -> str | None:
        if v is not None and v != "now":
            try:
                datetime.fromisoformat(v)
            except ValueError as e:
                raise ValueError("shift_to is `now` or an ISO 8601 time") from e
        return v


class LocationSpec(_Strict):
    lat: str
    lon: str


class Mapping(_Strict):
    format: Literal["auto", "csv", "jsonl", "parquet"] = "auto"
    csv_delimiter: str = Field(",", min_length=1, max_length=1)
    device_id: DeviceIdSpec
    device_type: DeviceTypeSpec = DeviceTypeSpec(value="generic")
    timestamp: TimestampSpec
    metrics: dict[str, str]
    location: LocationSpec | None = None
    seq: str | None = None
    tags: dict[str, str] | None = None

    @field_validator("device_type", mode="before")
    @classmethod
    def _constant_type(cls, v: Any) -> Any:
        return {"value": v} if isinstance(v, str) else v

    @field_validator("metrics", mode="before")
    @classmethod
    def _metric_list(cls, v: Any) -> Any:
        return {c: c for c in v} if isinstance(v, list) else v

    @field_validator("metrics")
    @classmethod
    def _some_metrics(cls, v: dict[str, str]) -> dict[str, str]:
        if not v:
            raise ValueError("map at least one metric")
        return v

    def columns(self) -> set[str]:
        """Every column the mapping reads."""
        cols = {self.timestamp.column, *self.metrics.values()}
        for spec in (self.device_id, self.device_type):
            if spec.column:
                cols.add(spec.column)
        if self.location:
            cols |= {self.location.lat, self.location.lon}
        if self.seq:
            cols.add(self.seq)
        return cols


def zone(name: str) -> tzinfo:
    if name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ValueError(f"unknown time zone {name!r}") from e


def parse_mapping(text: str, origin: str = "<mapping>") -> Mapping:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{origin}: not YAML: {e}") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"{origin}: a mapping file is a YAML mapping")
    try:
        return Mapping.model_validate(raw)
    except pydantic.ValidationError as e:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}" for err in e.errors())
        raise ConfigError(f"{origin}: {problems}") from e


def load_mapping(path: Path) -> tuple[Mapping, str]:
    """The mapping and a digest of its text (a resume point is only valid for the same mapping)."""
    text = path.read_text()
    return parse_mapping(text, str(path)), hashlib.sha256(text.encode()).hexdigest()


def shift_for(mapping: Mapping, latest: datetime | None, now: datetime) -> timedelta:
    """How far to move every timestamp so the latest lands on the mapping's `shift_to` (zero without one)."""
    target_text = mapping.timestamp.shift_to
    if target_text is None or latest is None:
        return timedelta(0)
    target = now if target_text == "now" else datetime.fromisoformat(target_text)
    if target.tzinfo is None:
        target = target.replace(tzinfo=zone(mapping.timestamp.timezone))
    return target.astimezone(UTC).replace(microsecond=0) - latest


@dataclass(frozen=True)
class RowConverter:
    """Turns one row (column → value) of one file into a validated v2 reading record."""

    mapping: Mapping
    source: Path
    validator: Validator
    now: datetime
    shift: timedelta = timedelta(0)

    @classmethod
    def build(cls, mapping: Mapping, source: Path, validation: ValidationSettings, now: datetime,
              shift: timedelta = timedelta(0)) -> RowConverter:
        return cls(mapping, source, Validator(validation), now, shift)

    def timestamp(self, row: dict[str, Any]) -> datetime:
        """The row's timestamp, unshifted, timezone-aware UTC."""
        spec = self.mapping.timestamp
        value = _required(row, spec.column, "missing_timestamp")
        try:
            return parse_time(value, spec.format, zone(spec.timezone))
        except (ValueError, TypeError, OverflowError) as e:
            raise RowRejected(f"column {spec.column}: {value!r} is not a {spec.format} time: {e}",
                              reason="bad_timestamp") from e

    def convert(self, row: dict[str, Any]) -> dict[str, Any]:
        """The reading record for `row`, or RowRejected saying why not."""
        m = self.mapping
        device_id = self._device_id(row)
        event_time = self.timestamp(row) + self.shift
        metrics: dict[str, float] = {}
        for name, column in m.metrics.items():
            if column not in row:
                raise RowRejected(f"no column {column!r}", reason="missing_column")
            number = _number(row[column], column)
            if number is not None:
                metrics[name] = number
        location = None
        if m.location is not None:
            lat, lon = _number(row.get(m.location.lat), m.location.lat), _number(row.get(m.location.lon), m.location.lon)
            if lat is not None and lon is not None:
                location = {"lat": lat, "lon": lon}
        record = {
            "device_id": device_id,
            "device_type": self._device_type(row),
            "event_time": event_time,
            "seq": self._seq(row, event_time),
            "metrics": metrics,
            "tags": dict(m.tags) if m.tags else None,
            "location": location,
            "firmware": None,
            "battery": None,
            "signal_dbm": None,
        }
        try:
            self.validator.check(Reading.from_record(record), device_id.encode(), self.now)
        except ValidationError as e:
            raise RowRejected(str(e), reason=e.reason) from e
        return record

    def _device_id(self, row: dict[str, Any]) -> str:
        spec = self.mapping.device_id
        if spec.value is not None:
            return spec.prefix + spec.value
        if spec.from_filename:
            return spec.prefix + self.source.stem
        return spec.prefix + str(_required(row, spec.column or "", "missing_device_id")).strip()

    def _device_type(self, row: dict[str, Any]) -> str:
        spec = self.mapping.device_type
        if spec.value is not None:
            return spec.value
        return str(_required(row, spec.column or "", "missing_device_type")).strip()

    def _seq(self, row: dict[str, Any], event_time: datetime) -> int:
        column = self.mapping.seq
        if column is None:
            # Deterministic, so a row re-sent after a crash carries the same (device_id, seq)
            # and the pipeline's dedup and the Timescale key absorb it.
            return (event_time - EPOCH) // timedelta(microseconds=1)
        value = _required(row, column)
        try:
            return int(str(value).strip())
        except ValueError as e:
            raise RowRejected(f"column {column}: {value!r} is not an integer", reason="bad_seq") from e


def _required(row: dict[str, Any], column: str, empty_reason: str = "missing_value") -> Any:
    if column not in row:
        raise RowRejected(f"no column {column!r}", reason="missing_column")
    value = row[column]
    if value is None or (isinstance(value, str) and not value.strip()):
        raise RowRejected(f"column {column} is empty", reason=empty_reason)
    return value


def _number(value: Any, column: str) -> float | None:
    """A float, None for an empty cell, RowRejected for text that is not a number."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise RowRejected(f"column {column}: {value!r} is not a number", reason="bad_number")
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    if not text:
        return None
    try:
        return float(text)  # "nan" and "inf" parse, and the validator rejects them as not_finite
    except ValueError as e:
        raise RowRejected(f"column {column}: {value!r} is not a number", reason="bad_number") from e


def parse_time(value: Any, fmt: str, tz: tzinfo) -> datetime:
    """A timestamp cell as an aware UTC datetime; naive times are read in `tz`."""
    if isinstance(value, datetime):
        parsed = value
    elif fmt in EPOCH_UNITS_US:
        if isinstance(value, bool):
            raise TypeError("a boolean is not a time")
        number = value if isinstance(value, (int, float)) else float(str(value).strip())
        if not math.isfinite(number):
            raise ValueError("not finite")
        micros = number * EPOCH_UNITS_US[fmt] if fmt != "epoch_ns" else int(number) // 1000
        return EPOCH + timedelta(microseconds=round(micros))
    elif fmt == "iso":
        parsed = datetime.fromisoformat(str(value).strip())
    else:
        parsed = datetime.strptime(str(value).strip(), fmt)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
    return parsed.astimezone(UTC)
