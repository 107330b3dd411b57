from datetime import UTC, datetime

import pytest

from fieldstream.errors import DecodeError
from fieldstream.schemas import codec
from fieldstream.schemas.files import READING_V1, READING_V2, parsed

V1 = {"device_id": "d1", "device_type": "soil_station", "ts": datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
      "seq": 7, "metrics": {"moisture": 31.5}, "tags": {"site": "north"}}


def test_frame_round_trip():
    framed = codec.frame(42, b"body")
    schema_id, body = codec.split_frame(framed)
    assert schema_id == 42 and bytes(body) == b"body"
    assert framed[0] == 0 and framed[1:5] == (42).to_bytes(4, "big")


@pytest.mark.parametrize(("value", "reason"), [
    (b"", "empty"), (None, "empty"), (b"\x00\x00", "truncated"), (b"\x01\x00\x00\x00\x01abc", "bad_magic"),
])
def test_bad_frames(value, reason):
    with pytest.raises(DecodeError) as err:
        codec.split_frame(value)
    assert err.value.reason == reason


def test_v1_resolves_to_v2_with_defaults_and_the_renamed_field():
    body = codec.encode_body(V1, parsed(READING_V1))
    record = codec.decode_body(body, parsed(READING_V1), parsed(READING_V2))
    assert record["event_time"] == V1["ts"]  # `ts` was renamed `event_time` with an alias
    assert record["metrics"] == {"moisture": 31.5} and record["seq"] == 7
    assert record["location"] is None and record["firmware"] is None and record["battery"] is None


def test_truncated_body_is_a_decode_error():
    body = codec.encode_body(V1, parsed(READING_V1))
    with pytest.raises(DecodeError) as err:
        codec.decode_body(body[: len(body) // 2], parsed(READING_V1), parsed(READING_V2))
    assert err.value.reason in {"truncated", "malformed"}


def test_trailing_bytes_are_a_decode_error():
    body = codec.encode_body(V1, parsed(READING_V1))
    with pytest.raises(DecodeError) as err:
        codec.decode_body(body + b"\x00\x01", parsed(READING_V1), parsed(READING_V2))
    assert err.value.reason == "trailing_bytes"


def test_another_record_type_does_not_resolve():
    from fieldstream.schemas.files import ALERT_V1

    alert = {"alert_id": "a", "state": "open", "device_id": "d", "device_type": "t",
             "event_time": V1["ts"], "detector": "z", "metric": "m", "value": None, "score": None,
             "threshold": None, "severity": "info", "message": "x"}
    body = codec.encode_body(alert, parsed(ALERT_V1))
    with pytest.raises(DecodeError) as err:
        codec.decode_body(body, parsed(ALERT_V1), parsed(READING_V2))
    assert err.value.reason in {"schema_mismatch", "malformed"}


@pytest.mark.parametrize("times", ["datetimes", "micros"])
def test_published_aggregates_encode_exactly_as_fastavro_writes_their_datetimes(times: str):
    import io
    from datetime import UTC, datetime

    import fastavro

    from fieldstream.schemas.files import parsed, schema_dict
    from fieldstream.sinks.topic import AvroPublisher, timestamp_micros_fields, writer_schema
    from fieldstream.windows.clock import to_us

    schema = parsed("window.v1.avsc")
    when = datetime(2026, 3, 4, 10, 59, 50, 123456, tzinfo=UTC)
    record = {"device_id": "d1", "device_type": "soil_station", "metric": "moisture", "window": "tumbling_1m",
              "window_start": when, "window_end": when, "count": 6, "sum": 1.5, "mean": 0.25, "min": 0.0,
              "max": 1.0, "variance": 0.1, "stddev": 0.3, "first_value": 0.0, "first_time": when,
              "last_value": 1.0, "last_time": when, "median": 0.5, "p95": 1.0, "range": 1.0,
              "rate_of_change": 0.01, "expected": 6, "missing": 0, "quality": 1.0, "distance_m": None}
    reference = io.BytesIO()
    fastavro.schemaless_writer(reference, schema, record)  # the registered schema, datetimes
    publisher = AvroPublisher.__new__(AvroPublisher)  # no broker or registry: only the encoding
    publisher._schema, publisher._header = writer_schema(schema_dict("window.v1.avsc")), b"\x00\x00\x00\x00\x07"
    publisher._micros_fields = timestamp_micros_fields(schema)
    assert set(publisher._micros_fields) == {"window_start", "window_end", "first_time", "last_time"}
    if times == "micros":  # as the window engine emits them
        record = {**record, **{f: to_us(when) for f in publisher._micros_fields}}
    given = dict(record)
    assert publisher.frame(record) == b"\x00\x00\x00\x00\x07" + reference.getvalue()
    assert record == given  # the caller's record is left as it was
