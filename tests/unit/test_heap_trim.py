"""The worker's heap trim: what it returns to the system, and where it does nothing."""

from __future__ import annotations

import ctypes.util
from pathlib import Path

import pytest

from fieldstream.config.settings import Settings
from fieldstream.config.worker import WorkerSettings
from fieldstream.streams import heap
from fieldstream.streams.app import build_app


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(heap.malloc_trim() is None, reason="needs glibc's malloc_trim (the worker's platform)")
def test_trimming_returns_the_pages_freed_below_the_top_of_the_heap() -> None:
    blocks = [bytes(2000) for _ in range(100_000)]  # ~200 MB of malloc'd (not pymalloc) objects
    top = bytes(2000)  # allocated after them: the heap cannot shrink from its top
    before = _rss_mb()
    del blocks
    freed = _rss_mb()
    assert before - freed < 50, "glibc returned the freed middle of the heap by itself"
    heap.malloc_trim()()  # type: ignore[misc]
    assert freed - _rss_mb() > 150
    assert len(top) == 2000


def test_without_malloc_trim_in_the_c_library_nothing_is_attempted(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    assert heap.malloc_trim() is None
    with_timer = build_app(Settings(worker=WorkerSettings(data_dir=tmp_path, heap_trim_s=10)))
    without = build_app(Settings(worker=WorkerSettings(data_dir=tmp_path, heap_trim_s=0)))
    assert len(with_timer._app_tasks) == len(without._app_tasks)


@pytest.mark.skipif(heap.malloc_trim() is None, reason="needs glibc's malloc_trim (the worker's platform)")
def test_the_worker_trims_on_a_timer_unless_the_setting_is_zero(tmp_path: Path) -> None:
    with_timer = build_app(Settings(worker=WorkerSettings(data_dir=tmp_path, heap_trim_s=10)))
    without = build_app(Settings(worker=WorkerSettings(data_dir=tmp_path, heap_trim_s=0)))
    assert len(with_timer._app_tasks) == len(without._app_tasks) + 1
