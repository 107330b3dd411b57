import json
import pickle
from datetime import UTC, datetime, timedelta

import fastavro
import fastavro.validation

from fieldstream.detectors.alerts import AlertTracker, alert_id
from fieldstream.detectors.base import Verdict
from fieldstream.schemas.files import ALERT_V1, schema_text

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def at(i: int) -> datetime:
    return T0 + timedelta(seconds=30 * i)


def spike(metric: str = "temperature", score: float = 7.0, severity: str = "warning") -> Verdict:
    return Verdict("zscore", metric, 42.0 + score, score, 5.0, severity, f"{metric} is odd")


def always(_detector: str, _metric: str) -> bool:
    return True


def never(_detector: str, _metric: str) -> bool:
    return False


def feed(tracker: AlertTracker, pattern: str, looked_at=always, verdict=spike) -> list:
    """'x' = anomalous reading, '.' = normal reading, one every 30 s."""
    events = []
    for i, c in enumerate(pattern):
        events += tracker.observe(at(i), [verdict()] if c == "x" else [], looked_at)
    return events


def test_a_lasting_anomaly_is_one_open_and_one_resolved_event():
    tracker = AlertTracker("d1", "soil_station", cooldown_readings=3)
    events = feed(tracker, "..xxxxxxxx.....")
    assert [e.state for e in events] == ["open", "resolved"]
    opened, resolved = events
    assert opened.alert_id == resolved.alert_id
    assert opened.event_time == at(2)
    assert resolved.event_time == at(12)  # the third normal reading after the last anomalous one (at 9)
    assert (opened.device_id, opened.device_type, opened.detector, opened.metric) == \
        ("d1", "soil_station", "zscore", "temperature")
    assert not tracker.open


def test_short_gaps_do_not_split_an_alert():
    tracker = AlertTracker("d1", "soil_station", cooldown_readings=3)
    events = feed(tracker, "xx..xx.x..x....")
    assert [e.state for e in events] == ["open", "resolved"]


def test_after_resolution_a_new_anomaly_opens_a_new_alert():
    tracker = AlertTracker("d1", "soil_station", cooldown_readings=2)
    events = feed(tracker, "xx...xx..")
    assert [e.state for e in events] == ["open", "resolved", "open", "resolved"]
    assert events[0].alert_id != events[2].alert_id


def test_cooldown_in_seconds_resolves_with_fewer_normal_readings():
    tracker = AlertTracker("d1", "soil_station", cooldown_readings=100, cooldown_s=60)
    events = feed(tracker, "xx.....")
    assert [e.state for e in events] == ["open", "resolved"]
    assert events[1].event_time == at(3)  # 60 s after the last anomalous reading (at 1)


def test_readings_that_did_not_look_at_the_metric_do_not_resolve():
    tracker = AlertTracker("d1", "soil_station", cooldown_readings=2)
    assert [e.state for e in feed(tracker, "x" + "." * 20, looked_at=never)] == ["open"]
    assert tracker.is_open("zscore", "temperature")


def test_the_resolved_event_carries_the_peak_and_worst_severity():
    tracker = AlertTracker("d1", "soil_station", cooldown_readings=1)
    tracker.observe(at(0), [spike(score=6.0)], always)
    tracker.observe(at(1), [spike(score=12.0, severity="critical")], always)
    tracker.observe(at(2), [spike(score=7.0)], always)
    (resolved,) = tracker.observe(at(3), [], always)
    assert resolved.state == "resolved"
    assert resolved.score == 12.0 and resolved.value == 54.0 and resolved.severity == "critical"


def test_each_detector_and_metric_has_its_own_alert():
    tracker = AlertTracker("d1", "soil_station", cooldown_readings=1)
    events = tracker.observe(at(0), [spike("temperature"), spike("moisture"), spike("temperature")], always)
    assert [(e.state, e.metric) for e in events] == [("open", "temperature"), ("open", "moisture")]


def test_ids_are_deterministic_and_depend_on_what_opened_them():
    a = feed(AlertTracker("d1", "soil_station", cooldown_readings=2), "..xxx...")
    b = feed(AlertTracker("d1", "soil_station", cooldown_readings=2), "..xxx...")
    assert [e.alert_id for e in a] == [e.alert_id for e in b]
    assert a[0].alert_id == alert_id("d1", "zscore", "temperature", at(2))
    others = {alert_id("d2", "zscore", "temperature", at(2)), alert_id("d1", "stuck", "temperature", at(2)),
              alert_id("d1", "zscore", "moisture", at(2)), alert_id("d1", "zscore", "temperature", at(3))}
    assert a[0].alert_id not in others and len(others) == 4


def test_the_tracker_pickles_with_its_open_alerts():
    tracker = AlertTracker("d1", "soil_station", cooldown_readings=3)
    feed(tracker, "xxx")
    clone = pickle.loads(pickle.dumps(tracker))
    later = [tracker.observe(at(10 + i), [], always) for i in range(3)]
    later_clone = [clone.observe(at(10 + i), [], always) for i in range(3)]
    assert later == later_clone and later[-1][0].state == "resolved"


def test_events_are_valid_alert_records():
    schema = fastavro.parse_schema(json.loads(schema_text(ALERT_V1)))
    events = feed(AlertTracker("d1", "soil_station", cooldown_readings=1), "x.")
    events.append(AlertTracker("d2", "collar").open_alert(
        Verdict("geofence", "location", None, 1.0, None, "critical", "outside"), at(0)))
    for e in events:
        record = e.to_record()
        assert set(record) == {f["name"] for f in schema["fields"]}
        assert fastavro.validation.validate(record, schema)
