"""A worker puts Arrow's buffers on the allocator its setting names."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pytest

from fieldstream.streams.arrow_memory import use_arrow_pool


@pytest.fixture(autouse=True)
def restore_default_pool() -> Iterator[None]:
    before = pa.default_memory_pool()
    yield
    pa.set_memory_pool(before)


@pytest.mark.parametrize("name", ["system", "mimalloc", "jemalloc"])
def test_new_buffers_come_from_the_named_pool(name: str) -> None:
    use_arrow_pool(name)  # type: ignore[arg-type]
    assert pa.default_memory_pool().backend_name == name
    pool = pa.default_memory_pool()
    before = pool.bytes_allocated()
    table = pa.table({"x": pa.array(range(100_000), type=pa.int64())})
    assert pool.bytes_allocated() - before >= table.nbytes


def test_a_pool_this_build_lacks_keeps_the_current_one(monkeypatch: pytest.MonkeyPatch,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    def missing() -> pa.MemoryPool:
        raise NotImplementedError("built without it")

    use_arrow_pool("system")
    monkeypatch.setitem(use_arrow_pool.__globals__["_POOLS"], "jemalloc", missing)
    use_arrow_pool("jemalloc")
    assert pa.default_memory_pool().backend_name == "system"
    assert "no jemalloc allocator" in caplog.text
