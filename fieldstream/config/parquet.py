"""The Parquet data lake: where, and when a file is rolled."""

from __future__ import annotations

from pydantic import Field

from fieldstream.config.base import Section, section


class ParquetSettings(Section):
    model_config = section("PARQUET")

    path: str = Field(".stack/lake/readings", description="Local path or any pyarrow filesystem URI")
    roll_rows: int = Field(200_000, ge=1, description="Rows per file, at most")
    roll_bytes: int = Field(64 * 1024 * 1024, ge=1024, description="Estimated in-memory bytes per file, at most")
    buffer_bytes: int = Field(
        48 * 1024 * 1024, ge=1,
        description="Estimated in-memory bytes of all files being filled, at most: past it the largest is written")
    arrow_bytes: int = Field(
        16 * 1024 * 1024, ge=1,
        description="Bytes of rows held as Arrow tables, all files together, at most: past it the largest "
                    "files' rows are compressed into Parquet row groups in memory (about a tenth of the size)")
    roll_age_s: float = Field(30.0, gt=0, description="Oldest buffered row, at most, before a file is written")
    row_group_rows: int = Field(100_000, ge=1000, description="Rows per row group, at most")
    compression: str = Field("zstd", pattern=r"^(zstd|snappy|gzip|lz4|none)$", description="Parquet codec")
    fsync: bool = Field(True, description="fsync local files before counting them durable")
