"""The README's main command, smaller: a simulated fleet through two workers lands in every sink."""

from __future__ import annotations

import re

from .cli_support import run_fieldstream


def test_demo_lands_something_in_every_sink(stack_settings):
    run = run_fieldstream("demo", "--devices", "100", "--history", "90m", "--workers", "2", timeout_s=480)
    assert run.returncode == 0, run.output[-4000:]
    report = run.stdout.split("5/5 what landed where (this run)", 1)[1]
    counts = {name.strip(): int(n.replace(",", ""))
              for name, n in re.findall(r"^  (.+?)\s+([\d,]+)$", report, flags=re.MULTILINE)}
    for wanted in ("Kafka telemetry.readings", "PostgreSQL readings", "PostgreSQL alerts", "PostgreSQL devices",
                   "PostgreSQL windows_tumbling_1m", "PostgreSQL windows_hopping_5m_1m", "Parquet files",
                   "Kafka telemetry.windows", "Kafka telemetry.alerts", "Kafka telemetry.dlq (dead letters)"):
        assert counts.get(wanted, 0) > 0, (wanted, counts)
    parquet = next(n for name, n in counts.items() if name.startswith("Parquet ") and name != "Parquet files")
    # Every record sent is a stored reading or a dead letter (the simulator sends no duplicates),
    # the same readings in both sinks. A record read again after a rebalance may be dead-lettered
    # twice (the dead-letter topic is at least once), so the sum may exceed what was sent.
    sent, stored = counts["Kafka telemetry.readings"], counts["PostgreSQL readings"]
    assert stored == parquet
    assert stored < sent <= stored + counts["Kafka telemetry.dlq (dead letters)"]
