"""How a device's state grows with its history: window and detector state, live and pickled.

A worker holds, per device, its window state (fieldstream.windows) and its detection engine
(fieldstream.detectors), live in memory, and writes them pickled to their changelogs. This
feeds the fleet simulator's readings (anomalies included) through both, as the worker's
stages do (windows closed and emitted as event time passes, detectors with the worker's
per-type HalfSpaceTrees), and every `--every-min` minutes of event time reports per device:

  live      bytes of the states rebuilt from their pickles (tracemalloc), i.e. what a worker
            holds once it has restored them, without the simulator's own memory
  pickled   bytes written to the changelog per checkpoint
  in models what the worker's per-type HalfSpaceTrees keep per device (its recent block means
            and open block), live; not checkpointed, rebuilt after a rebalance

    python bench/state_growth.py [--devices 300] [--hours 6] [--every-min 30] [--record]

No Kafka, no database: pure Python, a few minutes for the defaults.
"""

from __future__ import annotations

import argparse
import gc
import pickle
import sys
import time
import tracemalloc
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fieldstream.config.detection import DetectionSettings
from fieldstream.config.windows import WindowSettings
from fieldstream.detectors.engine import FleetEngine
from fieldstream.detectors.evaluate import sim_geofence, sim_readings
from fieldstream.devices.fleet import FleetConfig
from fieldstream.windows import DeviceWindows, WindowEngine

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import fmt_int, markdown_table, record  # noqa: E402


def live_bytes(blobs: Sequence[bytes]) -> int:
    """Bytes that the objects unpickled from `blobs` hold (tracemalloc)."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    objects = [pickle.loads(b) for b in blobs]  # noqa: S301 - pickled just now
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    del objects
    return held


def measure(windows: dict[str, DeviceWindows], fleet: FleetEngine) -> tuple[float, ...]:
    """(window live, window pickled, detector live, detector pickled, in the models) bytes per device."""
    n = len(windows)
    w = [pickle.dumps(s, protocol=pickle.HIGHEST_PROTOCOL) for s in windows.values()]
    d = [pickle.dumps(e, protocol=pickle.HIGHEST_PROTOCOL) for e in fleet.devices.values()]
    # The models' per-device parts (private: a benchmark may look inside).
    per_device = [(m._norms, m._pending) for m in fleet.models.models.values()]  # noqa: SLF001
    in_models = live_bytes([pickle.dumps(per_device, protocol=pickle.HIGHEST_PROTOCOL)])
    return (live_bytes(w) / n, sum(map(len, w)) / n, live_bytes(d) / len(d), sum(map(len, d)) / len(d),
            in_models / n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=300)
    ap.add_argument("--hours", type=float, default=6.0, help="event time simulated")
    ap.add_argument("--every-min", type=float, default=30.0, help="event time between measurements")
    ap.add_argument("--record", action="store_true", help="append the result to docs/BENCHMARKS.md")
    args = ap.parse_args()

    config = FleetConfig(devices=args.devices, seed=7, start=datetime(2026, 1, 5, tzinfo=UTC),
                         duration_s=args.hours * 3600)
    engine = WindowEngine.from_settings(WindowSettings())
    fleet = FleetEngine(DetectionSettings(), sim_geofence)
    windows: dict[str, DeviceWindows] = {}
    step = timedelta(minutes=args.every_min)
    mark = config.start + step
    readings = 0
    rows: list[list[Any]] = []
    started = time.perf_counter()
    print(f"{args.devices} devices, {args.hours:g} h of event time, measured every {args.every_min:g} min",
          flush=True)
    for reading, sent in sim_readings(config):
        if reading.event_time >= mark:
            w_live, w_pickled, d_live, d_pickled, in_models = measure(windows, fleet)
            per_device = readings / args.devices
            rows.append([f"{(mark - config.start).total_seconds() / 3600:g}", fmt_int(per_device),
                         fmt_int(w_live), fmt_int(w_pickled), fmt_int(d_live), fmt_int(d_pickled),
                         fmt_int(in_models), fmt_int(w_live + d_live + in_models)])
            print(f"  {rows[-1][0]:>5} h  {rows[-1][1]:>5} readings/device  windows {rows[-1][2]:>6} B live "
                  f"{rows[-1][3]:>6} B pickled  detectors {rows[-1][4]:>6} B live {rows[-1][5]:>6} B pickled "
                  f"{rows[-1][6]:>6} B in models  ({time.perf_counter() - started:.0f} s)", flush=True)
            mark += step
        now = sent or reading.event_time
        state = windows.get(reading.device_id)
        if state is None:
            state = windows[reading.device_id] = engine.new_state(reading.device_id, reading.device_type)
        engine.add(state, reading, now)
        engine.close_due(state, now)
        fleet.process(reading, seen_at=now)
        readings += 1

    models = pickle.dumps(fleet.models, protocol=pickle.HIGHEST_PROTOCOL)
    table = markdown_table(
        ["event time (h)", "readings per device", "windows live B", "windows pickled B",
         "detectors live B", "detectors pickled B", "in the models B", "live in all B"],
        rows, align="r" * 8)
    body = (f"{args.devices} simulated devices (the fleet simulator's mix of types and intervals, anomalies "
            f"included), {args.hours:g} h of event time, {readings:,} readings. Per device: its window state "
            "and detection engine live (rebuilt from their pickles, measured with tracemalloc) and pickled "
            "(what each checkpoint writes to the changelog), and what the worker's per-type HalfSpaceTrees "
            "keep per device (block means and the open block; not checkpointed). \"Live in all\" is what a "
            "worker holds per device. The models with their trees: "
            f"{live_bytes([models]) / 2**20:.1f} MiB live for the fleet.\n\n"
            + table + "\n")
    print(table)
    if args.record:
        record(f"Device state by length of history ({args.devices} devices, {args.hours:g} h)", body)


if __name__ == "__main__":
    main()
