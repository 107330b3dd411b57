import json
import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from fieldstream.commands.evaluate import evaluate
from fieldstream.config.detection import DetectionSettings
from fieldstream.detectors.evaluate import Label, Opening, Tally, evaluate_fleet, evaluate_nab, score
from fieldstream.schemas.reading import Reading

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def t(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def test_event_level_scores_on_a_hand_made_case():
    labels = [
        Label("a", "spike", "m", t(10), t(10)),
        Label("a", "level_shift", "m", t(20), t(30)),
        Label("b", "offline", "*", t(5), t(15)),
        Label("b", "geofence", "location", t(40), t(50)),
        Label("a", "noise_burst", "m2", t(60), t(61)),
    ]
    openings = [
        Opening("a", "zscore", "m", t(10)),  # spike, no delay
        Opening("a", "zscore", "m", t(25)),  # level shift, 5 s / 5 readings late
        Opening("a", "zscore", "m", t(31.5)),  # level shift again, inside the 2 s tolerance: not a FP
        Opening("a", "zscore", "other", t(22)),  # wrong metric: FP
        Opening("b", "offline", "*", t(8)),  # offline, 3 s after it started, no reading in between
        Opening("b", "zscore", "m", t(45)),  # only a geofence alert detects a geofence window: FP
        Opening("a", "halfspace", "*", t(12)),  # multivariate, inside the spike's tolerance: matches it
        Opening("a", "stuck", "m", t(100)),  # FP
        Opening("a", "zscore", "m2", t(62)),  # noise burst, after its end but within tolerance
    ]
    times = {"a": [t(i) for i in range(101)], "b": [t(i) for i in list(range(5)) + list(range(16, 61))]}
    ev = score(labels, openings, 2.0, times, group={"a": "soil", "b": "collar"}.get)

    spike = ev.by_kind["spike"]
    assert (spike.labels, spike.detected, spike.false_positives) == (1, 1, 2)  # the two zscore FPs
    assert spike.delays_s == [0.0] and spike.delays_readings == [0]
    assert spike.precision == pytest.approx(1 / 3) and spike.recall == 1.0 and spike.f1 == pytest.approx(0.5)
    shift = ev.by_kind["level_shift"]
    assert shift.delays_s == [5.0] and shift.delays_readings == [5]
    offline = ev.by_kind["offline"]
    assert (offline.detected, offline.false_positives, offline.delays_readings) == (1, 0, [0])
    assert offline.precision == 1.0 and offline.delays_s == [3.0]
    geofence = ev.by_kind["geofence"]
    assert (geofence.detected, geofence.recall, geofence.precision, geofence.f1) == (0, 0.0, None, None)
    burst = ev.by_kind["noise_burst"]
    assert (burst.detected, burst.after_end, burst.delays_readings) == (1, 1, [2])

    overall = ev.overall
    assert (overall.labels, overall.detected, overall.false_positives) == (5, 4, 3)
    assert overall.precision == pytest.approx(4 / 7) and overall.recall == pytest.approx(0.8)
    assert overall.f1 == pytest.approx(2 * (4 / 7) * 0.8 / (4 / 7 + 0.8))
    assert ev.fp_by_detector == {"zscore": 2, "stuck": 1}
    assert [m.kind for m in ev.missed] == ["geofence"]
    assert ev.by_series["soil"].labels == 3 and ev.by_series["collar"].false_positives == 1
    assert ev.detected_by["spike"] == {"zscore": 1}


def test_tally_median_delays_and_empty_rows():
    row = Tally(labels=3, detected=3, delays_readings=[0, 4, 1], delays_s=[0.0, 40.0, 10.0])
    assert row.median_delay_readings == 1 and row.median_delay_s == 10.0
    assert Tally().recall is None and Tally().median_delay_s is None


def test_nab_loader_maps_prefixed_label_keys_to_files(tmp_path):
    rows = ["timestamp,value"] + [
        f"2014-01-01 {h:02d}:{m:02d}:00,{50 + (40 if (h, m) == (6, 0) else 0) + math.sin(h * 12 + m / 5):.3f}"
        for h in range(12) for m in range(0, 60, 5)
    ]
    (tmp_path / "tiny.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "labels.json").write_text(json.dumps({
        "realSomething/tiny.csv": [["2014-01-01 05:50:00.000000", "2014-01-01 06:30:00.000000"]],
        "realSomething/absent.csv": [["2014-01-01 01:00:00.000000", "2014-01-01 02:00:00.000000"]],
    }))
    ev, sizes = evaluate_nab(tmp_path, DetectionSettings(), tolerance_s=0)
    assert sizes == {"tiny": 144}
    assert ev.overall.labels == 1 and ev.overall.detected == 1
    assert ev.by_series["tiny"].delays_readings == [2]  # 05:50 → 06:00


@dataclass(frozen=True)
class FakeLabel:  # the fleet's AnomalyLabel contract
    device_id: str
    device_type: str
    metric: str
    kind: str
    start: datetime
    end: datetime


def fake_fleet() -> tuple[list[Reading], list[FakeLabel]]:
    """Two tank probes every 30 s for 2 h: a spike on one, a 20-minute silence on the other."""
    rng = random.Random(3)
    readings, labels = [], []
    for i in range(240):
        at = T0 + timedelta(seconds=30 * i)
        for dev in ("tank-1", "tank-2"):
            if dev == "tank-2" and 100 <= i < 140:
                continue
            do = 8.0 + 0.5 * math.sin(i / 100) + rng.gauss(0, 0.08)
            if dev == "tank-1" and i == 150:
                do += 1.0
            readings.append(Reading(dev, "tank_probe", at, i, {"dissolved_oxygen": round(do, 2)}))
    labels.append(FakeLabel("tank-1", "tank_probe", "dissolved_oxygen", "spike",
                            T0 + timedelta(seconds=4500), T0 + timedelta(seconds=4500)))
    labels.append(FakeLabel("tank-2", "tank_probe", "*", "offline",
                            T0 + timedelta(seconds=3000), T0 + timedelta(seconds=4200)))
    return readings, labels


def test_fleet_evaluation_against_the_simulator_contract():
    readings, labels = fake_fleet()
    settings = DetectionSettings()
    ev, replayed = evaluate_fleet(None, settings, tolerance_s=60, readings=readings, labels=labels,
                                  geofences=lambda d, t: None)
    assert replayed.readings == len(readings)
    assert ev.by_kind["spike"].detected == 1 and ev.by_kind["spike"].delays_readings == [0]
    offline = ev.by_kind["offline"]
    # It opens k intervals after the last reading, which was one interval before the window started.
    assert offline.detected == 1 and offline.delays_s == [settings.offline_k * 30 - 30]
    assert ev.overall.false_positives == 0
    assert ev.by_series["tank_probe"].labels == 2


def test_the_evaluate_command_on_nab_and_a_small_simulated_fleet(tmp_path):
    rows = ["timestamp,value"] + [f"2014-01-01 {h:02d}:{m:02d}:00,{10 + (m % 10) * 0.01:.3f}"
                                  for h in range(6) for m in range(0, 60, 5)]
    (tmp_path / "flat.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "labels.json").write_text(json.dumps({"x/flat.csv": []}))
    out = tmp_path / "report.json"
    result = CliRunner().invoke(evaluate, ["--nab-path", str(tmp_path), "--devices", "8", "--hours", "1",
                                           "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "anomaly kind" in result.output and "flat" in result.output
    report = json.loads(out.read_text())
    assert report["simulator"]["devices"] == 8 and report["nab"]["readings"] == {"flat": 72}


def test_the_evaluate_command_refuses_a_folder_without_labels(tmp_path):
    result = CliRunner().invoke(evaluate, ["--no-sim", "--nab-path", str(tmp_path)])
    assert result.exit_code != 0 and "labels.json" in result.output


def test_replay_ticks_on_arrival_times_and_not_past_the_end():
    from fieldstream.detectors.engine import FleetEngine
    from fieldstream.detectors.evaluate import replay

    settings = DetectionSettings(offline_min_readings=3)
    steady = [(Reading("d", "tank_probe", t(30 * i), i, {"ph": 7.0 + 0.01 * (i % 3)}), t(30 * i + 2))
              for i in range(20)]
    straggler = (Reading("d2", "tank_probe", t(0), 0, {"ph": 7.0}), t(3600))  # arrives an hour later
    result = replay(steady + [straggler], FleetEngine(settings), tick_s=10, until=t(600))
    assert result.openings == []  # "d" stopped at 572 s; by 600 s it has not missed 5 intervals
    result = replay(steady + [straggler], FleetEngine(settings), tick_s=10)
    assert [(o.series, o.detector) for o in result.openings] == [("d", "offline")]
    assert result.openings[0].time == t(30 * 19 + 2) + timedelta(seconds=settings.offline_k * 30)
