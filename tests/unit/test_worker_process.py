"""Details of the worker process: its state directory, garbage-collector settings, and consumer."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

from faust.types import TP

from fieldstream.config.settings import Settings
from fieldstream.config.worker import WorkerSettings
from fieldstream.streams.app import build_app, create_app
from fieldstream.streams.consumer import AckedOnlyConsumer
from fieldstream.streams.gc_tuning import tune_gc


def test_a_data_dir_whose_parents_do_not_exist_yet_is_created(tmp_path: Path) -> None:
    data_dir = tmp_path / "not" / "there" / "yet"
    app = create_app(Settings(worker=WorkerSettings(data_dir=data_dir)))
    app._create_directories()  # what the worker does first
    assert Path(app.conf.tabledir).is_dir()
    assert Path(app.conf.tabledir).is_relative_to(data_dir)


def test_the_web_server_listens_only_where_the_setting_says(tmp_path: Path) -> None:
    assert create_app(Settings(worker=WorkerSettings(data_dir=tmp_path))).conf.web_bind == "127.0.0.1"
    conf = create_app(Settings(worker=WorkerSettings(data_dir=tmp_path, web_host="0.0.0.0"))).conf
    assert conf.web_bind == conf.web_host == "0.0.0.0"


def test_the_app_bounds_what_the_worker_fetches_ahead_of_its_stream(tmp_path: Path) -> None:
    worker = WorkerSettings(data_dir=tmp_path, batch_max=500, prefetch_max=1200, fetch_partition_bytes=65536)
    conf = create_app(Settings(worker=worker)).conf
    assert conf.stream_buffer_maxsize == 1200
    assert conf.broker_max_poll_records == 300  # a quarter of the buffer per poll
    assert conf.consumer_max_fetch_size == 65536


def test_gc_tuning_freezes_start_up_objects_and_makes_full_collections_rare() -> None:
    before = gc.get_threshold()
    try:
        tune_gc(50_000, 100)
        assert gc.get_threshold() == (50_000, 10, 100)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_the_consumer_never_counts_a_jump_in_readings_offsets_as_acknowledged(tmp_path: Path) -> None:
    settings = Settings(worker=WorkerSettings(data_dir=tmp_path))
    app = build_app(settings)
    consumer = app.consumer
    assert isinstance(consumer, AckedOnlyConsumer)
    readings = TP(settings.topics.readings, 0)
    changelog = TP(next(iter(app.tables.changelog_topics)), 0)

    async def jumps() -> None:
        await consumer._add_gap(readings, 5, 9)  # Faust would commit past 5..9 unprocessed
        await consumer._add_gap(changelog, 5, 9)  # compacted: the jump is real

    asyncio.run(jumps())
    assert not consumer._gap[readings]
    assert consumer._gap[changelog]


def test_the_consumer_asks_the_broker_for_fetches_as_the_settings_say(tmp_path: Path) -> None:
    settings = Settings(worker=WorkerSettings(data_dir=tmp_path, fetch_max_wait_ms=75, fetch_min_bytes=4096))
    app = build_app(settings)

    async def created() -> tuple[int, int]:
        thread = app.consumer._new_consumer_thread()
        consumer = thread._create_worker_consumer(app.transport)  # what the thread starts with
        try:
            return consumer._fetch_max_wait_ms, consumer._fetch_min_bytes
        finally:
            await consumer.stop()

    # Faust's own consumer would ask for 1500 ms and 1 byte (an answer per new record)
    assert asyncio.run(created()) == (75, 4096)
