"""Start-up details of the worker process: its state directory and garbage-collector settings."""

from __future__ import annotations

import gc
from pathlib import Path

from fieldstream.config.settings import Settings
from fieldstream.config.worker import WorkerSettings
from fieldstream.streams.app import create_app
from fieldstream.streams.gc_tuning import tune_gc


def test_a_data_dir_whose_parents_do_not_exist_yet_is_created(tmp_path: Path) -> None:
    data_dir = tmp_path / "not" / "there" / "yet"
    app = create_app(Settings(worker=WorkerSettings(data_dir=data_dir)))
    app._create_directories()  # what the worker does first
    assert Path(app.conf.tabledir).is_dir()
    assert Path(app.conf.tabledir).is_relative_to(data_dir)


def test_gc_tuning_freezes_start_up_objects_and_makes_full_collections_rare() -> None:
    before = gc.get_threshold()
    try:
        tune_gc(50_000, 100)
        assert gc.get_threshold() == (50_000, 10, 100)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
