"""The Faust worker: identity, web server, state store, batching."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from fieldstream.config.base import Section, section

ArrowPool = Literal["system", "jemalloc", "mimalloc"]  # Arrow's allocators (streams/arrow_memory.py)


class WorkerSettings(Section):
    model_config = section("WORKER")

    app_id: str = Field("fieldstream", min_length=1, description="Faust app id = consumer group")
    web_port: int = Field(16066, ge=1, le=65535, description="Port of /metrics, /health, /ready")
    web_host: str = Field("127.0.0.1", description="Address /metrics, /health, /ready listen on (0.0.0.0: every "
                                                  "interface, as in a container)")
    data_dir: Path = Field(Path(".stack/worker"), description="Faust table state")
    store: str = Field("memory://", description="Faust table store URL; only memory:// (state is restored "
                                                "from the changelogs at start-up)")
    batch_max: int = Field(
        1000, ge=1, description="Kafka messages taken from the stream per batch (a ReadingBatch holds several readings)"
    )
    # What a worker holds fetched ahead of its stream. Faust's defaults (a 4,096-message stream
    # buffer, 1 MiB per partition and fetch, no limit per poll) let it hold the whole backlog of
    # 12 partitions of ReadingBatches: ~75 MB of records no batch was working on.
    prefetch_max: int = Field(
        2048, ge=1, description="Kafka messages held fetched ahead of the stream, at most (Faust: 4096); "
                                "at least batch_max, so that a batch can fill"
    )
    fetch_partition_bytes: int = Field(
        256 * 1024, ge=1024, description="Bytes fetched from one partition per request (Faust: 1 MiB)"
    )
    batch_within_s: float = Field(0.5, gt=0, description="Longest wait to fill a batch")
    json_logs: bool = Field(False, description="Log one JSON object per line")
    gc_young_threshold: int = Field(
        50_000, ge=100, description="Allocations between young garbage collections (CPython: 700)"
    )
    gc_full_every: int = Field(
        100, ge=1, description="Middle collections between full ones, which walk all device state (CPython: 10)"
    )
    arrow_memory_pool: ArrowPool = Field(
        "system", description="Allocator of Arrow's buffers (the Parquet sink's); pyarrow's default "
                              "(mimalloc or jemalloc) keeps freed pages resident for a while after a burst",
    )
    fetch_max_wait_ms: int = Field(
        100, ge=1, le=30_000,
        description="Longest the broker holds a fetch that found less than FIELDSTREAM_WORKER_FETCH_MIN_BYTES "
                    "(Faust: 1500)",
    )
    fetch_min_bytes: int = Field(
        1, ge=1,
        description="Bytes the broker gathers before it answers a fetch, waiting at most "
                    "FIELDSTREAM_WORKER_FETCH_MAX_WAIT_MS. 65536: a live worker used 15 % less CPU, but two "
                    "workers catching up on a backlog read 7-11 % slower (docs/OPERATIONS.md)",
    )

    @property
    def poll_records_max(self) -> int:
        """Records one poll of the consumer hands to the stream buffer: a quarter of it, so that
        the buffer's back-pressure stops fetching before it overflows by much."""
        return max(1, self.prefetch_max // 4)

    @model_validator(mode="after")
    def _prefetch_holds_a_batch(self) -> WorkerSettings:
        if self.prefetch_max < self.batch_max:
            raise ValueError(f"FIELDSTREAM_WORKER_PREFETCH_MAX ({self.prefetch_max}) is below "
                             f"FIELDSTREAM_WORKER_BATCH_MAX ({self.batch_max}): no batch could fill")
        return self

    @field_validator("store")
    @classmethod
    def _memory_store(cls, value: str) -> str:
        # Faust's rocksdb store files a write under the partition of the event being processed;
        # checkpoints and window closes write from timers, outside any event.
        if value != "memory://":
            raise ValueError(f"{value!r} is not supported: only memory:// (the state tables are written "
                             "from timers, which Faust's rocksdb store refuses)")
        return value
