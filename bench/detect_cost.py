"""Per-reading cost of the detection engine (pure Python, no Kafka, no Faust).

Pre-generates simulator readings, then times `DeviceEngine.process` over them
(with the worker's per-type HalfSpaceTrees, as the Faust wiring would call it)
and, separately, each detector family alone. Run:

    python bench/detect_cost.py [--devices 100] [--hours 4] [--repeat 3]

Reports the best of `--repeat` passes (the machine is shared; the minimum is
the least disturbed), after one untimed pass so every baseline is warm.
"""

from __future__ import annotations

import argparse
import copy
import pickle
import time
from datetime import UTC, datetime

from fieldstream.config.detection import DetectionSettings
from fieldstream.detectors.base import normalise
from fieldstream.detectors.engine import FleetEngine
from fieldstream.detectors.evaluate import sim_geofence, sim_readings
from fieldstream.devices.fleet import FleetConfig


def timed(fn, readings, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(readings)
        best = min(best, time.perf_counter() - t0)
    return best / len(readings) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=100)
    ap.add_argument("--hours", type=float, default=4.0)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    settings = DetectionSettings()
    config = FleetConfig(devices=args.devices, seed=7, start=datetime(2026, 1, 5, tzinfo=UTC),
                         duration_s=args.hours * 3600)
    readings = [r for r, _ in sim_readings(config)]
    print(f"{len(readings)} readings from {args.devices} devices, {args.hours:g} h of event time")

    warm = FleetEngine(settings, sim_geofence)
    for r in readings:  # one untimed pass: every baseline past its warm-up
        warm.process(r)
    state = pickle.dumps(warm)

    def engine_pass(rs):
        fleet = pickle.loads(state)  # the same warm state for every pass
        engines, models = fleet.devices, fleet.models
        t0 = time.perf_counter()
        for r in rs:
            engines[r.device_id].process(r, models.for_type(r.device_type))
        return time.perf_counter() - t0

    best = min(engine_pass(readings) for _ in range(args.repeat))
    print(f"DeviceEngine.process (all families, HST every {settings.hst_sample_every}): "
          f"{best / len(readings) * 1e6:.2f} µs/reading")

    # Each family alone, on the warm per-device detectors.
    fleet = pickle.loads(state)
    normal = [normalise(r) for r in readings]
    families: dict[str, list] = {}
    for eng in fleet.devices.values():
        for d in eng.detectors:
            families.setdefault(d.name, [])
    for name in families:
        dets = {dev: copy.deepcopy(next(d for d in eng.detectors if d.name == name))
                for dev, eng in fleet.devices.items() if any(d.name == name for d in eng.detectors)}

        def run(rs, dets=dets):
            for r in rs:
                d = dets.get(r.device_id)
                if d is not None:
                    d.score_learn_one(r)

        print(f"  {name:<10} {timed(run, normal, args.repeat):6.2f} µs/reading (averaged over all readings)")
    models = copy.deepcopy(fleet.models)

    def run_hst(rs):
        for r in rs:
            models.for_type(r.device_type).score_learn_one(r)

    print(f"  {'halfspace':<10} {timed(run_hst, normal, args.repeat):6.2f} µs/reading (one model per device type)")
    sizes = sorted(len(pickle.dumps(e)) for e in fleet.devices.values())
    print(f"pickled DeviceEngine: median {sizes[len(sizes) // 2]} B, max {sizes[-1]} B; "
          f"HalfSpaceTrees per type: {len(pickle.dumps(next(iter(fleet.models.models.values())))) // 1024} KB")


if __name__ == "__main__":
    main()
