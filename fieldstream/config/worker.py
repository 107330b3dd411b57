"""The Faust worker: identity, web server, state store, batching."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from fieldstream.config.base import Section, section


class WorkerSettings(Section):
    model_config = section("WORKER")

    app_id: str = Field("fieldstream", min_length=1, description="Faust app id = consumer group")
    web_port: int = Field(16066, ge=1, le=65535, description="Port of /metrics, /health, /ready")
    web_host: str = "127.0.0.1"
    data_dir: Path = Field(Path(".stack/worker"), description="Faust table state")
    store: str = Field("memory://", description="Faust table store URL; only memory:// (state is restored "
                                                "from the changelogs at start-up)")
    batch_max: int = Field(
        2000, ge=1, description="Kafka messages taken from the stream per batch (a ReadingBatch holds several readings)"
    )
    batch_within_s: float = Field(0.5, gt=0, description="Longest wait to fill a batch")
    json_logs: bool = Field(False, description="Log one JSON object per line")
    gc_young_threshold: int = Field(
        50_000, ge=100, description="Allocations between young garbage collections (CPython: 700)"
    )
    gc_full_every: int = Field(
        100, ge=1, description="Middle collections between full ones, which walk all device state (CPython: 10)"
    )
    fetch_max_wait_ms: int = Field(
        100, ge=1, le=30_000,
        description="Longest the broker holds a fetch that found no new records (Faust: 1500)",
    )

    @field_validator("store")
    @classmethod
    def _memory_store(cls, value: str) -> str:
        # Faust's rocksdb store files a write under the partition of the event being processed;
        # checkpoints and window closes write from timers, outside any event.
        if value != "memory://":
            raise ValueError(f"{value!r} is not supported: only memory:// (the state tables are written "
                             "from timers, which Faust's rocksdb store refuses)")
        return value
