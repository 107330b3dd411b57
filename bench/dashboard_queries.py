"""Check every query of the Grafana dashboard against a running stack.

    python bench/dashboard_queries.py                       # worker on FIELDSTREAM_WORKER_WEB_PORT
    python bench/dashboard_queries.py --metrics-url http://127.0.0.1:16066/metrics --metrics-url ...
    python bench/dashboard_queries.py --produce 200 --wait 15   # send readings first (and one bad record)

PromQL panels: without a Prometheus server, each expression is checked by what it
reads: every fieldstream metric it names must be among the samples the workers'
/metrics expose (counters must have moved). SQL panels: each query runs against
PostgreSQL with Grafana's macros expanded for the last --minutes.

A panel whose metric only moves on failures (sink errors, retries) or on features
the running worker has not exercised (alerts) is reported as missing data: that is
the truth about this stack right now. tests/integration/test_dashboard_queries.py
provokes those conditions on purpose. Exits 1 when any query has no data.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg

from fieldstream.config import load_settings
from fieldstream.ops import dashboard


def produce(count: int) -> None:
    from fieldstream.devices import DeviceProducer

    settings = load_settings()
    producer = DeviceProducer(settings.kafka, settings.registry, settings.topics.readings)
    now = datetime.now(UTC)
    prefix = f"dash-{uuid.uuid4().hex[:6]}"
    for i in range(count):
        producer.send({"device_id": f"{prefix}-{i % 5}", "device_type": "soil_station",
                       "event_time": now - timedelta(seconds=count - i), "seq": i,
                       "metrics": {"moisture": 30.0 + i % 7, "temperature": 18.0}, "tags": None,
                       "location": None, "firmware": None, "battery": None, "signal_dbm": None})
    producer.send_raw(prefix.encode(), b"\x07not avro")  # feeds the dead-letter panel
    producer.flush()
    print(f"produced {count} readings as {prefix}-* and one undecodable record to {settings.topics.readings}")


def scrape(urls: list[str]) -> str:
    return "\n".join(urllib.request.urlopen(url, timeout=5).read().decode() for url in urls)


async def run_sql(qs: list[dashboard.Query], minutes: float) -> list[dashboard.Finding]:
    settings = load_settings()
    conn = await asyncpg.connect(**settings.pg.connect_kwargs(), timeout=10)
    try:
        end = datetime.now(UTC) + timedelta(minutes=1)
        return await dashboard.check_sql(qs, conn, end - timedelta(minutes=minutes), end)
    finally:
        await conn.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--metrics-url", action="append", help="A worker's /metrics (repeat for several workers)")
    p.add_argument("--minutes", type=float, default=60.0, help="Time range of the SQL panels")
    p.add_argument("--produce", type=int, default=0, help="Readings to send to the readings topic first")
    p.add_argument("--wait", type=float, default=10.0, help="Seconds to wait after --produce")
    args = p.parse_args()

    settings = load_settings()
    urls = args.metrics_url or [f"http://{settings.worker.web_host}:{settings.worker.web_port}/metrics"]
    if args.produce:
        produce(args.produce)
        time.sleep(args.wait)
    qs = dashboard.queries(dashboard.load())
    try:
        findings = dashboard.check_promql(qs, scrape(urls))
    except OSError as e:
        print(f"cannot scrape {', '.join(urls)}: {e} (start a worker: fieldstream worker -l info)", file=sys.stderr)
        findings = [dashboard.Finding(q, False, "no worker to scrape") for q in qs if q.kind == "promql"]
    findings += asyncio.run(run_sql(qs, args.minutes))
    width = max(len(f.query.panel) for f in findings)
    for f in findings:
        print(f"{'ok  ' if f.ok else 'FAIL'} {f.query.kind:<6} {f.query.panel:<{width}} {f.query.ref_id}  {f.detail}")
    failed = sum(not f.ok for f in findings)
    print(f"{len(findings) - failed}/{len(findings)} queries have data")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
