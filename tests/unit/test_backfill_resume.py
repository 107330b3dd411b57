"""The pieces that make a backfill resumable: watermark, in-flight rows, rejects file, resume point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fieldstream.devices.resume import FileProgress, InFlight, RejectsFile, ResumeState, Watermark
from fieldstream.errors import ConfigError


def test_watermark_covers_only_the_all_finished_prefix() -> None:
    wm = Watermark(start=10)
    for row in (12, 11, 14):
        wm.finish(row)
    assert wm.done == 10  # row 10 is still out
    wm.finish(10)
    assert wm.done == 13  # 14 waits for 13
    wm.finish(13)
    wm.finish(3)  # before the start: already finished, ignored
    assert wm.done == 15


def test_in_flight_rows_are_matched_to_reports_per_device_in_send_order() -> None:
    inflight = InFlight()
    for device, row in (("a", 0), ("b", 1), ("a", 2), ("b", 3), ("a", 4)):
        inflight.sent(device, row)
    inflight.unsent("a")  # row 4's send failed before it reached the producer
    assert [inflight.reported(d) for d in ("b", "a", "a", "b")] == [1, 0, 2, 3]
    assert inflight.count == 0
    with pytest.raises(RuntimeError):
        inflight.reported("a")


def test_rejects_file_appends_each_row_once_across_runs(tmp_path: Path) -> None:
    path = tmp_path / "rejects.jsonl"
    first = RejectsFile(path, append=False)
    first.write("/data/a.csv", 3, 5, "bad_number", "column v: 'x' is not a number", {"v": "x"})
    first.write("/data/a.csv", 9, 11, "too_old", "old", {"v": "1"})
    first.close()
    with path.open("a") as f:
        f.write('{"file": "/data/a.csv", "row": 1')  # torn by a crash mid-line
    again = RejectsFile(path, append=True)
    again.write("/data/a.csv", 9, 11, "too_old", "old", {"v": "1"})  # already there: skipped
    again.write("/data/a.csv", 20, 22, "future", "future", {"v": "2"})
    again.close()
    entries = []
    for line in path.read_text().splitlines():
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            assert line.startswith('{"file": "/data/a.csv", "row": 1')
    assert [(e["row"], e["line"], e["reason"]) for e in entries] == [(3, 5, "bad_number"), (9, 11, "too_old"),
                                                                     (20, 22, "future")]
    assert again.count == 1
    # A fresh (non-resuming) run starts the file over.
    RejectsFile(path, append=False).close()
    assert path.read_text() == ""


def test_resume_point_round_trips_and_guards_its_inputs(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    assert ResumeState.load(path) is None
    state = ResumeState("abc", "readings", [FileProgress("/d/a.csv", 100, True), FileProgress("/d/b.csv", 7)],
                        shift_s=3600.0)
    state.save(path)
    loaded = ResumeState.load(path)
    assert loaded == state
    loaded.check_matches(path, "abc", "readings", ["/d/a.csv", "/d/b.csv"])
    with pytest.raises(ConfigError, match="different mapping"):
        loaded.check_matches(path, "xyz", "readings", ["/d/a.csv", "/d/b.csv"])
    with pytest.raises(ConfigError, match="topic"):
        loaded.check_matches(path, "abc", "other", ["/d/a.csv", "/d/b.csv"])
    with pytest.raises(ConfigError, match="other input files"):
        loaded.check_matches(path, "abc", "readings", ["/d/b.csv", "/d/a.csv"])
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="not a backfill resume file"):
        ResumeState.load(path)
    assert not (tmp_path / "state.json.tmp").exists()
