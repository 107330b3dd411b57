import random
from datetime import UTC, datetime, timedelta

import pytest

from fieldstream.config.validation import ValidationSettings
from fieldstream.errors import ValidationError
from fieldstream.ingest.validate import RecentSeqs, Validator
from fieldstream.schemas.reading import Location, Reading

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def reading(**over) -> Reading:
    base = dict(device_id="d1", device_type="soil_station", event_time=NOW - timedelta(seconds=5), seq=1,
                metrics={"moisture": 40.0, "temperature": 18.0})
    base.update(over)
    return Reading(**base)


@pytest.fixture
def validator() -> Validator:
    return Validator(ValidationSettings())


def test_a_good_reading_passes(validator):
    validator.check(reading(), b"d1", NOW)


@pytest.mark.parametrize(("over", "key", "reason"), [
    ({"metrics": {"moisture": float("nan")}}, b"d1", "not_finite"),
    ({"metrics": {"moisture": float("inf")}}, b"d1", "not_finite"),
    ({"metrics": {"moisture": 140.0}}, b"d1", "out_of_range"),
    ({"event_time": datetime(1970, 1, 1, tzinfo=UTC)}, b"d1", "too_old"),
    ({"event_time": datetime(3000, 1, 1, tzinfo=UTC)}, b"d1", "future"),
    ({}, b"someone-else", "key_mismatch"),
    ({}, None, "missing_key"),
    ({"device_id": ""}, b"", "missing_device_id"),
    ({"metrics": {}}, b"d1", "no_metrics"),
    ({"location": Location(95.0, 0.0)}, b"d1", "bad_location"),
])
def test_each_rule_has_its_reason(validator, over, key, reason):
    with pytest.raises(ValidationError) as err:
        validator.check(reading(**over), key, NOW)
    assert err.value.reason == reason


def test_clock_skew_tolerance(validator):
    validator.check(reading(event_time=NOW + timedelta(seconds=299)), b"d1", NOW)
    with pytest.raises(ValidationError):
        validator.check(reading(event_time=NOW + timedelta(seconds=301)), b"d1", NOW)


def test_unknown_device_types_are_only_checked_for_finiteness(validator):
    validator.check(reading(device_type="weird", metrics={"anything": 1e6}), b"d1", NOW)  # no range to break
    with pytest.raises(ValidationError) as err:
        validator.check(reading(device_type="weird", metrics={"anything": float("nan")}), b"d1", NOW)
    assert err.value.reason == "not_finite"


def test_recent_seqs_drop_duplicates_and_forget_old_ones():
    seen = RecentSeqs(size=3)
    assert not seen.is_duplicate("a", 1)
    assert seen.is_duplicate("a", 1)
    assert not seen.is_duplicate("b", 1)  # per device
    for seq in (2, 3, 4):
        assert not seen.is_duplicate("a", seq)
    assert not seen.is_duplicate("a", 1)  # below the 3 highest: forgotten


@pytest.mark.parametrize("seed", range(20))
def test_recent_seqs_remember_exactly_the_highest_seqs_seen(seed):
    """Against a plain set: out of order, gaps, replays, µs-sized steps, a counter restart."""
    rng = random.Random(seed)
    size = rng.choice([1, 2, 5, 16, 256])
    seen, model = RecentSeqs(size), set()
    seq = rng.randrange(10**12)
    for _ in range(3000):
        roll = rng.random()
        if roll < 0.6:
            seq += 1
            candidate = seq
        elif roll < 0.7:
            seq += rng.randrange(2, 10**6)  # a gap, or seqs derived from event time
            candidate = seq
        elif roll < 0.98:
            candidate = seq - rng.randrange(0, 3 * size + 3)  # a replay or a late reading
        else:
            seq = candidate = rng.randrange(100)  # the device restarted its counter
        assert seen.is_duplicate("d", candidate) == (candidate in model), (seed, candidate)
        model.add(candidate)
        model = set(sorted(model)[-size:])


def test_recent_seqs_forget_a_lost_partition_so_its_replay_is_processed_again():
    seen = RecentSeqs(size=10)
    p0, p1 = ("readings", 0), ("readings", 1)
    assert not seen.is_duplicate("a", 1, p0)
    assert not seen.is_duplicate("b", 1, p1)
    seen.forget_partitions({p0})
    assert not seen.is_duplicate("a", 1, p0)  # replayed after the partition came back: new work
    assert seen.is_duplicate("b", 1, p1)  # a kept partition still drops its duplicates
