"""Which allocator Arrow uses in a worker (FIELDSTREAM_WORKER_ARROW_MEMORY_POOL).

A worker's Arrow memory comes in bursts: the Parquet sink converts each batch into
Arrow tables and encodes them into Parquet row groups as they add up. pyarrow's default
pool (mimalloc or jemalloc, by build) keeps the pages it freed for a while before
giving them back; the system allocator gives them back at once: 16-38 MB less per
worker with two workers, same throughput, side by side (docs/BENCHMARKS.md).
"""

from __future__ import annotations

import logging

import pyarrow as pa

from fieldstream.config.worker import ArrowPool

log = logging.getLogger(__name__)

_POOLS = {
    "system": pa.system_memory_pool,
    "jemalloc": pa.jemalloc_memory_pool,
    "mimalloc": pa.mimalloc_memory_pool,
}


def use_arrow_pool(name: ArrowPool) -> None:
    """Make `name` Arrow's default pool for this process (buffers already made keep theirs)."""
    try:
        pool = _POOLS[name]()
    except NotImplementedError as e:  # this pyarrow build lacks that allocator
        log.warning("arrow: no %s allocator in this pyarrow build (%s); keeping %s", name, e,
                    pa.default_memory_pool().backend_name)
        return
    pa.set_memory_pool(pool)
    log.info("arrow: allocations use the %s allocator", pool.backend_name)
