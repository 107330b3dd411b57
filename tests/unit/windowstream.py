"""A seeded telemetry stream for the window tests, and a driver feeding it to a WindowEngine.

The stream is a list of events in processing-time order: deliveries of readings
(in order, out of order, late beyond grace, duplicated, a replayed burst, a device
silent for minutes) and 1-second timer ticks, as the Faust wiring will produce.
"""

from __future__ import annotations

import pickle
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from fieldstream.schemas.reading import Location, Reading
from fieldstream.windows import AddResult, DeviceWindows, WindowEngine

START = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
# device type → (metrics, seconds between readings, has GPS); every interval divides every window size.
FLEET = {
    "soil_station": (("moisture", "temperature", "humidity"), 20, False),
    "collar": (("activity", "body_temperature"), 10, True),
    "tank_probe": (("dissolved_oxygen", "ph", "water_temperature"), 5, False),
    "air_quality": (("tvoc", "pm25"), 15, False),
}
INTERVALS = {kind: float(every) for kind, (_, every, _) in FLEET.items()}


@dataclass(frozen=True)
class Event:
    at: datetime  # processing time
    reading: Reading | None  # None: a timer tick


def us(seconds: float) -> timedelta:
    return timedelta(microseconds=round(seconds * 1e6))


def generate(seed: int, devices: int = 8, minutes: int = 25) -> list[Event]:
    rng = random.Random(seed)
    kinds = list(FLEET)
    deliveries: list[tuple[datetime, int, Reading]] = []
    order = 0
    for d in range(devices):
        kind = kinds[d % len(kinds)]
        names, every, gps = FLEET[kind]
        device_id = f"{kind}-{d}"
        silent = (300 + 60 * d, 300 + 60 * d + 720) if d == 1 else None  # 12 minutes without a word
        values = [rng.uniform(5, 40) for _ in names]
        lat, lon = 46 + rng.random(), 7 + rng.random()
        t = rng.uniform(0, every)
        seq = 0
        while t < minutes * 60:
            seq += 1
            event_s = t
            if rng.random() < 0.02:  # two readings with the same event time: ties broken by seq
                event_s = t - every
            t += every
            if rng.random() < 0.05 or (silent and silent[0] <= event_s < silent[1]):
                continue  # never arrives
            for i in range(len(values)):
                values[i] += rng.gauss(0, 1)
            lat += rng.gauss(0, 2e-4)
            lon += rng.gauss(0, 2e-4)
            metrics = {
                # Rounded to one decimal so that ties (and medians of equal values) happen.
                name: round(value, 1) if rng.random() < 0.5 else value
                for name, value in zip(names, values)
                if rng.random() < 0.93
            } or {names[0]: values[0]}
            event_time = START + us(event_s)
            reading = Reading(device_id, kind, event_time, seq, metrics,
                              location=Location(lat, lon) if gps else None)
            roll = rng.random()
            if roll < 0.03:
                delay = rng.uniform(60, 400)  # far beyond grace: late for some or all windows
            elif roll < 0.11:
                delay = rng.uniform(2, 25)  # out of order, around the 10 s grace
            else:
                delay = rng.uniform(0.05, 2)
            arrival = event_time + us(delay)
            deliveries.append((arrival, order, reading))
            order += 1
            if rng.random() < 0.05:  # a re-delivery (producer retry)
                deliveries.append((arrival + us(rng.uniform(0, 40)), order, reading))
                order += 1
    # A consumer crash: everything delivered in the 90 s before the replay point comes again.
    deliveries.sort(key=lambda x: (x[0], x[1]))
    replay_at = START + timedelta(minutes=minutes / 2)
    burst = [r for a, _, r in deliveries if replay_at - timedelta(seconds=90) <= a < replay_at]
    for i, reading in enumerate(burst):
        deliveries.append((replay_at + us(i * 0.001), order, reading))
        order += 1
    deliveries.sort(key=lambda x: (x[0], x[1]))
    end = deliveries[-1][0]
    ticks = [START + timedelta(seconds=s) for s in range(int((end - START).total_seconds()) + 700)]
    events = [Event(a, r) for a, _, r in deliveries] + [Event(t, None) for t in ticks]
    # Stable: a tick at the same instant as a delivery comes first.
    events.sort(key=lambda e: (e.at, e.reading is not None))
    return events


@dataclass
class Run:
    results: list[AddResult | None]  # per event; None for ticks
    records: list[dict]  # every aggregate emitted, in order
    states: dict[str, DeviceWindows]


def drive(engine: WindowEngine, events: list[Event], states: dict[str, DeviceWindows] | None = None,
          *, roundtrip_every: int = 0) -> Run:
    """Feed events like the Faust wiring would; optionally pickle every state every n events."""
    states = {} if states is None else states
    run = Run([], [], states)
    for n, event in enumerate(events, 1):
        if event.reading is None:
            run.results.append(None)
            for state in states.values():
                run.records.extend(engine.close_due(state, event.at))
        else:
            reading = event.reading
            state = states.get(reading.device_id)
            if state is None:
                state = states[reading.device_id] = engine.new_state(reading.device_id)
            result = engine.add(state, reading, event.at)
            run.results.append(result)
            run.records.extend(result.closed)
        if roundtrip_every and n % roundtrip_every == 0:
            for key, state in list(states.items()):
                states[key] = pickle.loads(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))
    return run


def record_key(record: dict) -> tuple:
    return record["device_id"], record["metric"], record["window"], record["window_start"]
