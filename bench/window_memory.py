"""Memory of the window state for a fleet: bytes per device in the process and pickled.

Builds the state of N devices (default 10,000, ~4 metrics each, collars with GPS)
by feeding simulated readings through WindowEngine.add for long enough that every
window the default specs keep open is populated (one tumbling minute plus five
overlapping 5-minute hopping windows, as panes), then reports what tracemalloc
sees allocated for the states, and their pickled size (what a Faust table's
changelog stores per update).

    python bench/window_memory.py                   # realistic mix of intervals
    python bench/window_memory.py --interval 1      # every device at 1 Hz (stress)
    python bench/window_memory.py --no-trace        # throughput without tracemalloc's overhead
"""

from __future__ import annotations

import argparse
import gc
import pickle
import random
import statistics
import time
import tracemalloc
from collections import defaultdict
from datetime import UTC, datetime, timedelta

from fieldstream.config.windows import WindowSettings
from fieldstream.schemas.reading import Location, Reading
from fieldstream.windows import DeviceWindows, WindowEngine
from fieldstream.windows.clock import from_us

# device type → (metrics, seconds between readings, has GPS)
FLEET = {
    "soil_station": (("moisture", "temperature", "humidity", "conductivity"), 30, False),
    "collar": (("activity", "body_temperature", "heart_rate", "speed"), 15, True),
    "tank_probe": (("dissolved_oxygen", "ph", "water_temperature", "turbidity"), 10, False),
    "air_quality": (("tvoc", "eco2", "pm25", "humidity"), 10, False),
}


def build(engine: WindowEngine, devices: int, seconds: int, interval: int | None, seed: int
          ) -> tuple[dict[str, DeviceWindows], int]:
    rng = random.Random(seed)
    t0 = datetime(2024, 6, 1, tzinfo=UTC)
    types = list(FLEET)
    fleet = []
    due: dict[int, list[int]] = defaultdict(list)
    for d in range(devices):
        kind = types[d % len(types)]
        every = interval or FLEET[kind][1]
        fleet.append([f"dev-{d:05d}", kind, every, 0, [rng.uniform(10, 30) for _ in FLEET[kind][0]],
                      [45 + rng.random(), 7 + rng.random()]])
        due[rng.randrange(every)].append(d)
    states: dict[str, DeviceWindows] = {}
    adds = 0
    for second in range(seconds):
        for d in due.pop(second, ()):
            device_id, kind, every, seq, values, pos = fleet[d]
            names, _, gps = FLEET[kind]
            for i in range(len(values)):
                values[i] += rng.gauss(0, 0.3)
            if rng.random() < 0.03:  # a few readings never arrive
                fleet[d][3] = seq + 1
                due[second + every].append(d)
                continue
            pos[0] += rng.gauss(0, 1e-4)
            pos[1] += rng.gauss(0, 1e-4)
            event = t0 + timedelta(seconds=second, microseconds=rng.randrange(1_000_000))
            reading = Reading(device_id, kind, event, seq, dict(zip(names, values)),
                              location=Location(pos[0], pos[1]) if gps else None)
            state = states.get(device_id)
            if state is None:
                state = states[device_id] = engine.new_state(device_id, kind)
            engine.add(state, reading, event + timedelta(seconds=rng.uniform(0.05, 2.0)))
            adds += 1
            fleet[d][3] = seq + 1
            due[second + every].append(d)
    return states, adds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--seconds", type=int, default=7 * 60 + 30,
                        help="event time simulated; past 5 min every hopping window is populated")
    parser.add_argument("--interval", type=int, default=None, help="seconds between readings for every device")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-trace", action="store_true", help="skip tracemalloc, report adds/s")
    args = parser.parse_args()

    engine = WindowEngine.from_settings(WindowSettings())
    gc.collect()
    if not args.no_trace:
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
    started = time.perf_counter()
    states, adds = build(engine, args.devices, args.seconds, args.interval, args.seed)
    elapsed = time.perf_counter() - started
    gc.collect()
    print(f"specs {[s.name for s in engine.specs]}, pane {engine.pane_us // 1_000_000}s, "
          f"{args.devices} devices, {adds} readings in {elapsed:.1f}s ({adds / elapsed:,.0f} adds/s)")
    if not args.no_trace:
        held = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        print(f"state in memory: {held / len(states):,.0f} bytes/device, total {held / 2**20:,.1f} MiB")
    # What the worker's timer costs: one close_due sweep over every device (most have nothing due).
    now = max(s.watermark_at for s in states.values())
    for _ in range(2):  # the second sweep finds nothing due: the timer's usual cost
        started = time.perf_counter()
        emitted = sum(len(engine.close_due(s, from_us(now))) for s in states.values())
        sweep = time.perf_counter() - started
        print(f"close_due sweep over {len(states)} devices: {sweep * 1e3:.1f} ms ({emitted} aggregates due)")
    panes = [len(s.panes) for s in states.values()]
    sizes = [len(pickle.dumps(s, protocol=pickle.HIGHEST_PROTOCOL)) for s in states.values()]
    print(f"open panes per device: mean {statistics.fmean(panes):.1f}, max {max(panes)}")
    print(f"pickled state: mean {statistics.fmean(sizes):,.0f} bytes/device, max {max(sizes):,}, "
          f"total {sum(sizes) / 2**20:,.1f} MiB")
    for kind in FLEET:
        kind_sizes = [n for s, n in zip(states.values(), sizes) if s.device_type == kind]
        print(f"  {kind:<13} pickled mean {statistics.fmean(kind_sizes):,.0f} bytes")


if __name__ == "__main__":
    main()
