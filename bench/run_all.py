"""Every benchmark in one run, on one broker and one data set, so the ratios compare like with like.

    python bench/run_all.py --readings 2000000 --devices 10000 --partitions 12 --record

1. Preload N single-reading messages (10,000 devices, 12 partitions).
2. The peers on that topic: plain aiokafka + decode (the Python ceiling), a naive
   Faust agent, Quix Streams with a 1-minute tumbling count (bench/peers.py).
3. fieldstream's full pipeline on the same topic with 1 and 2 workers.
4. The same N readings as ReadingBatch messages (--per-message readings each),
   1 and 2 workers.
5. End-to-end latency at half the 1-worker single-reading rate.
6. Sinks alone (bench/sinks.py) and detection cost (bench/detection_cost.py).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import exit_on_sigterm, markdown_table, record  # noqa: E402
from pipeline import run_latency, run_pipeline  # noqa: E402
from preload import preload  # noqa: E402

from fieldstream.config import load_settings  # noqa: E402

BENCH = Path(__file__).parent


def peers(topic: str, n: int) -> dict[str, float]:
    out = subprocess.run([sys.executable, str(BENCH / "peers.py"), "--topic", topic, "--readings", str(n)],
                         capture_output=True, text=True, check=False)
    print(out.stdout[-3000:], out.stderr[-2000:])
    last = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else "{}"
    try:
        return {k: v for k, v in json.loads(last).get("rates", {}).items() if v}
    except json.JSONDecodeError:
        return {}


def main() -> None:
    exit_on_sigterm()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--readings", type=int, default=2_000_000)
    p.add_argument("--devices", type=int, default=10_000)
    p.add_argument("--partitions", type=int, default=12)
    p.add_argument("--per-message", type=int, default=20)
    p.add_argument("--latency-s", type=float, default=60.0)
    p.add_argument("--skip-peers", action="store_true")
    p.add_argument("--record", action="store_true")
    args = p.parse_args()
    settings = load_settings()
    workdir = Path(tempfile.mkdtemp(prefix="fieldstream-bench-"))
    single = f"bench-{uuid.uuid4().hex[:6]}.readings"
    batched = f"bench-{uuid.uuid4().hex[:6]}.readings"

    print(f"preloading {args.readings:,} single-reading messages into {single}")
    preload(settings, single, args.readings, args.devices, args.partitions, 1)
    peer_rates = {} if args.skip_peers else peers(single, args.readings)
    results = [run_pipeline(settings, single, args.readings, k, f"fieldstream, {k} worker(s), 1 reading/message",
                            workdir, 3600) for k in (1, 2)]
    print(f"preloading {args.readings:,} readings as {args.per_message} per message into {batched}")
    preload(settings, batched, args.readings, args.devices, args.partitions, args.per_message)
    results += [run_pipeline(settings, batched, args.readings, k,
                             f"fieldstream, {k} worker(s), {args.per_message} readings/message (ReadingBatch)",
                             workdir, 3600) for k in (1, 2)]
    for r in results:
        print(f"  {r.label}: {r.rate:,.0f} readings/s")

    rows = [[name, f"{rate:,.0f}", "", "", ""] for name, rate in peer_rates.items()]
    rows += [[r.label, f"{r.rate:,.0f}", f"{r.cpu_ms_per_1000:,.0f}", f"{r.peak_rss_mb:,.0f}",
              " · ".join(f"{r.rate / rate:.2f}x {name}" for name, rate in peer_rates.items())] for r in results]
    body = markdown_table(["run", "readings/s", "CPU ms / 1000 readings", "peak RSS MB / worker",
                           "ratio to each peer"], rows)
    one, two, one_b, two_b = results
    body += (f"\n\nScaling 1 → 2 workers: {two.rate / one.rate:.2f}x (single readings), "
             f"{two_b.rate / one_b.rate:.2f}x (ReadingBatch). Targets: ≥ 20,000 readings/s per worker, "
             f"2 workers ≥ 1.7x one, peak memory < 500 MB per worker with {args.devices:,} devices.\n")
    if args.latency_s > 0:
        offered = one.rate / 2
        lat = run_latency(settings, offered, args.latency_s, args.devices, workdir)
        body += (f"\nEnd-to-end latency (event time = send time → committed in PostgreSQL) at {offered:,.0f} "
                 f"readings/s offered to 1 worker (half its measured maximum), {lat['n']:,.0f} readings: "
                 f"p50 {lat['p50']:.3f} s, p95 {lat['p95']:.3f} s, p99 {lat['p99']:.3f} s (target p99 < 2 s).\n")
    print(body)
    if args.record:
        record(f"Full pipeline vs peers ({args.readings:,} readings, {args.devices:,} devices)", body)
        for script in ("sinks.py", "detection_cost.py"):
            subprocess.run([sys.executable, str(BENCH / script), "--record"], check=False)


if __name__ == "__main__":
    main()
