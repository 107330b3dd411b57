"""Memory and cost of the pipeline's duplicate check (RecentSeqs) at steady state.

Every device keeps its `dedup_window` highest seqs (default 256). The state is
full once each device has sent that many readings, so a short benchmark run
(60 readings per device) shows only part of it. This builds it for N devices
with three seq patterns: consecutive (the simulated fleet), consecutive with 3 %
of readings missing, and seqs derived from event time in µs (backfill files
without a seq column: every seq its own run).

    python bench/dedup_memory.py
    python bench/dedup_memory.py --devices 10000 --readings 300 --record
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import fmt, markdown_table, record  # noqa: E402

from fieldstream.config.validation import ValidationSettings  # noqa: E402
from fieldstream.ingest.validate import RecentSeqs  # noqa: E402

PARTITIONS = 12
BASE = 1_796_000_000_000  # the simulated fleet's seqs start at the epoch in ms


def seqs(pattern: str, readings: int, rng: random.Random) -> list[int]:
    if pattern == "consecutive":
        return [BASE + i for i in range(readings)]
    if pattern == "3 % missing":
        return [BASE + i for i in range(readings) if rng.random() >= 0.03]
    return [BASE * 1000 + i * 10_000_000 for i in range(readings)]  # µs of a reading every 10 s


def measure(pattern: str, devices: int, readings: int, window: int) -> tuple[float, float]:
    """(bytes per device held after every reading, µs per check without tracemalloc)."""
    rng = random.Random(7)
    ids = [f"dev-{d:05d}" for d in range(devices)]
    per_device = [seqs(pattern, readings, rng) for _ in ids]
    rounds = max(len(s) for s in per_device)

    def feed(seen: RecentSeqs) -> int:
        checks = 0
        for r in range(rounds):
            for d, device_id in enumerate(ids):
                if r < len(per_device[d]):
                    seq = per_device[d][r] + 0  # a fresh int object, as decoding makes for each reading
                    seen.is_duplicate(device_id, seq, ("readings", d % PARTITIONS))
                    checks += 1
        return checks

    started = time.perf_counter()
    checks = feed(RecentSeqs(window))
    cost_us = (time.perf_counter() - started) / checks * 1e6
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    seen = RecentSeqs(window)
    feed(seen)
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return held / devices, cost_us


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--readings", type=int, default=300, help="per device; past the window it is full")
    parser.add_argument("--window", type=int, default=ValidationSettings().dedup_window)
    parser.add_argument("--record", action="store_true", help="append the table to docs/BENCHMARKS.md")
    args = parser.parse_args()
    rows = []
    for pattern in ("consecutive", "3 % missing", "µs from event time"):
        per_device, cost_us = measure(pattern, args.devices, args.readings, args.window)
        rows.append([pattern, fmt(per_device, 0), fmt(per_device * args.devices / 2**20, 1), fmt(cost_us)])
        print(f"{pattern}: {per_device:,.0f} bytes/device, {cost_us:.2f} µs/check", flush=True)
    table = markdown_table(["seqs", "bytes / device", f"MiB for {args.devices:,} devices", "µs / check"],
                           rows, "lrrr")
    print(table)
    if args.record:
        record("Duplicate check memory", f"{args.readings} readings per device, window {args.window}.\n\n{table}",
               pg_version="not used")


if __name__ == "__main__":
    main()
