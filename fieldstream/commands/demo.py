"""`fieldstream demo`: the README's main command."""

from __future__ import annotations

import os
import subprocess
import time
import uuid

import click

from fieldstream import demo
from fieldstream.config import load_settings


@click.command(name="demo")
@click.option("--devices", default=300, show_default=True, help="Simulated fleet size")
@click.option("--history", default="3h", show_default=True, help="Event time the fleet covers, ending now")
@click.option("--workers", "n_workers", default=2, show_default=True, help="Workers to start")
@click.option("--timeout", default=240.0, show_default=True, help="Longest wait for the workers to catch up (s)")
def demo_cmd(devices: int, history: str, n_workers: int, timeout: float) -> None:
    """Run a simulated fleet through N workers into every sink, then report what landed where."""
    settings = load_settings()
    say = click.echo
    say("1/5 topics, schemas and database")
    demo.prepare(settings)
    before = demo.snapshot(settings)
    say(f"2/5 starting {n_workers} workers (logs in {settings.stack.data_dir / 'logs'})")
    env = {"FIELDSTREAM_PARQUET_ROLL_AGE_S": "5"}
    workers = [demo.WorkerProcess(i + 1, settings.worker.web_port + i, settings.stack.data_dir / "logs", env)
               for i in range(n_workers)]
    try:
        time.sleep(5)
        # A new fleet each run: the same device ids again would resend event time whose windows
        # closed in the last run (all "late"). Ids still start with the simulator prefix the
        # workers know (geofences of simulated collars).
        id_prefix = f"{settings.sim.id_prefix}.{uuid.uuid4().hex[:6]}"
        say(f"3/5 simulating {devices} devices ({id_prefix}-*) over {history} of event time ending now")
        labels = settings.stack.data_dir / "demo-labels.jsonl"
        sim = subprocess.run(
            [str(demo.BIN / "fieldstream"), "simulate", "--devices", str(devices), "--rate", "0",
             "--duration", history, "--bad-fraction", "0.002", "--anomaly-rate", "0.3", "--warmup", "30m",
             "--out-of-order", "0.01", "--labels", str(labels)],
            check=False, env={**os.environ, "FIELDSTREAM_SIM_ID_PREFIX": id_prefix},
        )
        if sim.returncode != 0:
            raise click.ClickException("the simulator failed (see above)")
        sent = demo.topic_messages(settings, settings.topics.readings) - before.topics[settings.topics.readings]
        say(f"4/5 waiting for the workers to catch up with {sent} records")
        demo.wait_caught_up(settings, before, sent, timeout, say)
    finally:
        for w in workers:
            w.stop()
    after = demo.snapshot(settings)
    say("5/5 what landed where (this run)")
    t = settings.topics
    rows = [(f"Kafka {t.readings}", after.topics[t.readings] - before.topics[t.readings])]
    rows += [(f"PostgreSQL {name}", n - before.tables.get(name, 0)) for name, n in after.tables.items()]
    rows += [
        (f"Parquet {settings.parquet.path}", after.parquet_rows - before.parquet_rows),
        ("Parquet files", after.parquet_files - before.parquet_files),
        (f"Kafka {t.windows}", after.topics[t.windows] - before.topics[t.windows]),
        (f"Kafka {t.alerts}", after.topics[t.alerts] - before.topics[t.alerts]),
        (f"Kafka {t.late}", after.topics[t.late] - before.topics[t.late]),
        (f"Kafka {t.dlq} (dead letters)", after.topics[t.dlq] - before.topics[t.dlq]),
    ]
    width = max(len(name) for name, _ in rows)
    for name, n in rows:
        say(f"  {name:<{width}}  {n:>9,}")
    empty = [name for name, n in rows if n <= 0]
    if empty:  # every sink takes part in the main job: one that received nothing is a failure
        raise click.ClickException(f"nothing landed in: {', '.join(empty)} (worker logs in "
                                   f"{settings.stack.data_dir / 'logs'})")
