"""What the peers do on the same broker and data: the Python ceiling, naive Faust, Quix Streams.

    python bench/preload.py --topic bench-peers.readings --readings 200000 --devices 10000 --partitions 12
    python bench/peers.py --topic bench-peers.readings --readings 200000 [--record]

In one run, one after the other, each in its own subprocess with a fresh
consumer group, consuming the whole topic from the beginning until N readings
are processed:

  aiokafka     plain AIOKafkaConsumer, getmany(max_records=50000), decode only
               (split the 5-byte frame, fastavro.schemaless_reader, writer schema
               fetched once from the registry): the Python ceiling
  faust        a naive Faust agent, `async for value in stream`, one event at a
               time, raw value serializer, the same decode (bench/peer_faust_app.py)
  quixstreams  Quix Streams Application/StreamingDataFrame, the same decode as a
               custom deserializer, plus a 1-minute event-time tumbling count per
               device (`.tumbling_window(1 min).count().final()`, RocksDB state with
               its changelog topic, as Quix runs by default)

Figures are each peer's own, from its first message to its N-th: readings/s,
CPU seconds (user + system, all threads, from getrusage) per 1000 readings, and
peak RSS. "CPU incl. start-up" is the whole child process (imports, group join,
shutdown), from RUSAGE_CHILDREN. The last line printed is JSON with the rates, for
bench/pipeline.py and docs.

Quix Streams runs from its own virtualenv (--quix-python, default
.venv-quix/bin/python, which `make bench` creates: `python -m venv .venv-quix &&
.venv-quix/bin/pip install quixstreams fastavro`) because it pins
confluent-kafka < 2.13, older than fieldstream's.

Consumer groups, the topics the peers create (Faust's assignor topic, Quix's
changelog) and their state directories are deleted at the end; the input topic
is left as it is (delete it yourself when done).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import (  # noqa: E402
    QUIX_PYTHON, delete_consumer_groups, delete_topics, fmt, fmt_int, markdown_table, quix_versions, record,
    topic_offsets,
)
from peer_consumers import RESULT_PREFIX  # noqa: E402

from fieldstream.config import load_settings  # noqa: E402
from fieldstream.schemas.files import subject_for  # noqa: E402

PEERS = ("aiokafka", "faust", "quixstreams")
DESCRIPTIONS = {
    "aiokafka": "plain aiokafka getmany + decode (Python ceiling)",
    "faust": "naive Faust agent, one event at a time + decode",
    "quixstreams": "Quix Streams: decode + 1-min tumbling count per device",
}


@dataclass
class PeerRun:
    peer: str
    result: dict | None
    child_cpu_s: float
    wall_s: float
    returncode: int | None
    log: str

    @property
    def rate(self) -> float | None:
        r = self.result
        return r["timed_readings"] / r["seconds"] if r and r["seconds"] > 0 else None

    @property
    def cpu_per_1000(self) -> float | None:
        r = self.result
        return r["cpu_s"] / r["timed_readings"] * 1000 if r and r["timed_readings"] else None


def schema_ids(registry_url: str, topic: str) -> list[int]:
    """Ids of every version registered under the topic's value subject (prefetched by the peers)."""
    base = registry_url.split(",")[0].rstrip("/")
    subject = subject_for(topic)
    try:
        with urllib.request.urlopen(f"{base}/subjects/{subject}/versions", timeout=10) as resp:  # noqa: S310
            versions = json.loads(resp.read())
        ids = []
        for v in versions:
            with urllib.request.urlopen(f"{base}/subjects/{subject}/versions/{v}", timeout=10) as resp:  # noqa: S310
                ids.append(json.loads(resp.read())["id"])
        return ids
    except OSError as e:
        print(f"warning: cannot list {subject} in the registry ({e}); peers fetch schemas on first use",
              file=sys.stderr)
        return []


def peer_command(peer: str, args: argparse.Namespace, group: str, workdir: str, ids: list[int],
                 bootstrap: str, registry: str) -> list[str]:
    common = ["--topic", args.topic, "--readings", str(args.readings), "--group", group,
              "--bootstrap", bootstrap, "--registry", registry]
    for i in ids:
        common += ["--schema-id", str(i)]
    if peer == "aiokafka":
        return [sys.executable, str(HERE / "peer_consumers.py"), "aiokafka", *common]
    if peer == "faust":
        return [sys.executable, str(HERE / "peer_faust_app.py"), *common, "--datadir", workdir,
                "--", "worker", "-l", "warn"]
    return [args.quix_python, str(HERE / "peer_consumers.py"), "quix", *common, "--state-dir", workdir]


def run_peer(peer: str, cmd: list[str], timeout_s: float) -> PeerRun:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with tempfile.TemporaryFile(mode="w+") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, cwd=HERE.parent)
        try:
            out, _ = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
            print(f"{peer}: timed out after {timeout_s:.0f}s", file=sys.stderr)
        err.seek(0)
        log = err.read()
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    child_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    result = None
    for line in out.splitlines():
        if line.startswith(RESULT_PREFIX):
            result = json.loads(line[len(RESULT_PREFIX):])
    if result is None:
        tail = "\n".join((log + out).splitlines()[-25:])
        print(f"{peer}: no result (exit code {proc.returncode}); last output:\n{tail}", file=sys.stderr)
    return PeerRun(peer, result, child_cpu, wall, proc.returncode, log)


def cleanup(groups: list[str]) -> None:
    """Delete the peers' consumer groups and the topics they created (their names contain the group)."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(load_settings().kafka.confluent_config())
    created = [t for t in admin.list_topics(timeout=10).topics if any(g in t for g in groups)]
    if created:
        delete_topics(created)
    pending = groups
    for attempt in range(5):
        pending = delete_consumer_groups(pending, quiet=attempt < 4)
        if not pending:
            return
        time.sleep(15)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--topic", required=True, help="A topic preloaded by bench/preload.py")
    ap.add_argument("--readings", type=int, required=True, help="Stop each peer after this many readings")
    ap.add_argument("--peers", default=",".join(PEERS), help=f"Comma-separated subset of {','.join(PEERS)}")
    ap.add_argument("--quix-python", default=QUIX_PYTHON if os.path.exists(QUIX_PYTHON)
                    else sys.executable, help="Interpreter with quixstreams and fastavro installed")
    ap.add_argument("--timeout-s", type=float, default=900, help="Per peer")
    ap.add_argument("--record", action="store_true", help="Append a section to docs/BENCHMARKS.md")
    args = ap.parse_args()
    peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    if unknown := set(peers) - set(PEERS):
        ap.error(f"unknown peers: {', '.join(sorted(unknown))}")

    settings = load_settings()
    offsets = topic_offsets(args.topic)
    available = sum(high - low for low, high in offsets.values())
    if available < args.readings:
        raise SystemExit(f"{args.topic} holds {available} messages, fewer than --readings {args.readings}")
    ids = schema_ids(settings.registry.url, args.topic)
    bootstrap, registry = settings.kafka.bootstrap_servers, settings.registry.url
    if settings.kafka.security_protocol != "PLAINTEXT" or settings.registry.basic_auth_user:
        print("warning: the peers connect without TLS/SASL/registry auth (local stack only)", file=sys.stderr)
    print(f"{args.topic}: {available:,} messages in {len(offsets)} partitions; reading {args.readings:,} "
          f"per peer; writer schema ids {ids}")

    run_id = uuid.uuid4().hex[:8]
    groups: list[str] = []
    runs: list[PeerRun] = []
    try:
        for peer in peers:
            group = f"bench-peers-{peer}-{run_id}"
            groups.append(group)
            workdir = tempfile.mkdtemp(prefix=f"bench-peers-{peer}-")
            try:
                cmd = peer_command(peer, args, group, workdir, ids, bootstrap, registry)
                print(f"running {peer} ...", flush=True)
                run = run_peer(peer, cmd, args.timeout_s)
                runs.append(run)
                if run.rate:
                    windows = run.result.get("windows_emitted")
                    print(f"  {peer}: {run.rate:,.0f} readings/s, {run.cpu_per_1000:.4f} CPU s / 1000 readings, "
                          f"peak RSS {run.result['peak_rss_mb']:.0f} MB"
                          + (f", {windows:,} final windows emitted" if windows is not None else ""), flush=True)
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
    finally:
        cleanup(groups)

    headers = ["peer", "what it does", "readings", "seconds", "readings/s", "CPU s / 1000 readings",
               "peak RSS MB", "CPU s incl. start-up"]
    rows = []
    for r in runs:
        res = r.result or {}
        rows.append([r.peer, DESCRIPTIONS[r.peer], fmt_int(res.get("readings", 0)), fmt(res.get("seconds"), 1),
                     fmt_int(r.rate) if r.rate else "failed", fmt(r.cpu_per_1000, 4),
                     fmt(res.get("peak_rss_mb"), 0), fmt(r.child_cpu_s, 1)])
    table = markdown_table(headers, rows, align="llrrrrrr")
    print()
    print(table)
    if args.record:
        notes = (
            f"Topic `{args.topic}`: {available:,} single-reading messages (bench/preload.py, Reading v2, "
            f"registry-framed Avro) in {len(offsets)} partitions; each peer read {args.readings:,} of them "
            "from the beginning with a fresh consumer group, in its own process, one peer after the other. "
            "Rate, CPU and peak RSS are each process's own, from its first message to its N-th "
            "(CPU = user + system of all threads, getrusage); 'CPU s incl. start-up' is the whole process "
            "including imports, group join and shutdown."
        )
        record(f"Peers on one topic: aiokafka ceiling, naive Faust, Quix Streams ({args.readings:,} readings)",
               f"{table}\n\n{notes}", extra_versions=quix_versions(args.quix_python))
    summary = {
        "topic": args.topic,
        "readings": args.readings,
        "rates": {r.peer: round(r.rate) if r.rate else None for r in runs},
        "cpu_s_per_1000": {r.peer: round(r.cpu_per_1000, 4) if r.cpu_per_1000 else None for r in runs},
        "peak_rss_mb": {r.peer: round(r.result["peak_rss_mb"], 1) if r.result else None for r in runs},
    }
    print(json.dumps(summary))
    if any(r.rate is None for r in runs):
        sys.exit(1)


if __name__ == "__main__":
    main()
