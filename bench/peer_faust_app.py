"""Peer (b) of bench/peers.py: the naive Faust agent a typical Faust user writes.

    python bench/peer_faust_app.py --topic T --readings N --group G --bootstrap B --registry URL [--schema-id ID] \
        [--datadir DIR] -- worker -l warn

One event at a time (`async for value in stream`, raw value serializer), the
same decode as the other peers (bench/peer_consumers.py). Everything else is
Faust's defaults. The agent counts; at the N-th reading it prints
`PEER-RESULT {json}` and sends its own process SIGTERM, which the Faust worker
handles as a graceful shutdown (a watchdog exits hard if that takes > 30 s).
The app id is the consumer group: fresh per run. Faust creates
`<app id>-__assignor-__leader`; bench/peers.py deletes it afterwards.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import faust  # noqa: E402
from peer_consumers import FramedAvroDecoder, Meter, emit, watchdog  # noqa: E402


def create_app(args: argparse.Namespace) -> faust.App:
    app = faust.App(
        args.group,
        broker=";".join(f"kafka://{s.strip()}" for s in args.bootstrap.split(",")),
        value_serializer="raw",
        key_serializer="raw",
        consumer_auto_offset_reset="earliest",
        store="memory://",
        datadir=args.datadir or tempfile.mkdtemp(prefix="bench-faust-"),
        web_enabled=False,
        autodiscover=False,
    )
    topic = app.topic(args.topic, value_serializer="raw", key_serializer="raw")
    decode = FramedAvroDecoder(args.registry, args.schema_id)
    meter = Meter(args.readings, "faust")

    @app.agent(topic)
    async def naive(stream):  # noqa: ANN001 - what a typical Faust user writes
        async for value in stream:
            if meter.done:
                continue  # draining until the worker stops
            decode(value)
            meter.count += 1
            if meter.count == 1:
                meter.first()
            if meter.count >= meter.target:
                emit(meter.result())
                watchdog(30)
                os.kill(os.getpid(), signal.SIGTERM)

    return app


def main() -> None:
    argv = sys.argv[1:]
    faust_argv = argv[argv.index("--") + 1:] if "--" in argv else ["worker", "-l", "warn"]
    ours = argv[:argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--readings", type=int, required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--registry", required=True)
    ap.add_argument("--schema-id", type=int, action="append", default=[])
    ap.add_argument("--datadir", default=None)
    args = ap.parse_args(ours)
    app = create_app(args)
    sys.argv = [sys.argv[0], *faust_argv]
    app.main()


if __name__ == "__main__":
    main()
