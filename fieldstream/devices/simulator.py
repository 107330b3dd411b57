"""Send a simulated fleet to Kafka through the producer SDK, paced, with labels and a status line.

Two producers, one per schema version, so v1 devices really write v1 Avro and
the pipeline exercises schema resolution; poison records go out as raw bytes.
Pacing follows each event's send time (real devices' clocks), so in the live
modes event times stay at "now" and the validator's clock checks hold.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TextIO

from fieldstream.devices.fleet import AnomalyLabel, FleetConfig, FleetRun, SimEvent, natural_rate
from fieldstream.devices.producer import DeliveryReport, DeviceProducer
from fieldstream.schemas.files import READING_V1, READING_V2

ProducerFactory = Callable[[str, Callable[[DeliveryReport], None]], DeviceProducer]


def v1_record(record: dict[str, Any]) -> dict[str, Any]:
    """A v2-shaped reading as a v1 device writes it: `ts`, and none of v2's fields."""
    return {"device_id": record["device_id"], "device_type": record["device_type"], "ts": record["event_time"],
            "seq": record["seq"], "metrics": record["metrics"], "tags": record.get("tags")}


def aligned_now(now: datetime) -> datetime:
    """`now` floored to the second: a run's start that a log line can quote exactly."""
    return now.astimezone(UTC).replace(microsecond=0)


@dataclass(frozen=True)
class RunPlan:
    config: FleetConfig
    paced: bool  # pace by send time (live modes) or send as fast as possible


def plan_run(base: FleetConfig, *, now: datetime, rate: float, realtime: bool, burst_s: float,
             start: datetime | None = None) -> RunPlan:
    """Turn the command's mode into a fleet config.

    --realtime: devices sample at their own intervals from now.
    --rate N>0: intervals are scaled so the fleet sends about N readings/s, from now.
    --rate 0: as fast as possible; the run covers --duration (or `burst_s`, or the span
    --count takes) of event time ending now, so nothing lands in the validator's future.
    """
    if realtime and rate > 0:
        raise ValueError("--realtime and --rate N are two different pacings: choose one")
    if rate < 0:
        raise ValueError("--rate must not be negative")
    if realtime or rate > 0:
        scale = natural_rate(replace(base, interval_scale=1.0)) / rate if rate > 0 else 1.0
        return RunPlan(replace(base, start=start or aligned_now(now), interval_scale=scale), paced=True)
    cfg = base
    if cfg.duration_s is None and cfg.count is None:
        cfg = replace(cfg, duration_s=burst_s)
    if start is None:
        span = cfg.duration_s if cfg.duration_s is not None else (cfg.count or 0) / natural_rate(cfg)
        start = aligned_now(now - timedelta(seconds=span))
    return RunPlan(replace(cfg, start=start), paced=False)


class Clock(Protocol):
    def __call__(self) -> float: ...


@dataclass
class SimStats:
    sent: int = 0
    readings_v1: int = 0
    readings_v2: int = 0
    poison: int = 0
    delivered: int = 0
    failed: int = 0
    labels: int = 0
    last_error: str | None = None
    started: float = field(default_factory=time.monotonic)

    def line(self, now: float) -> str:
        elapsed = max(now - self.started, 1e-9)
        err = f" last error: {self.last_error}" if self.last_error else ""
        return (f"{elapsed:7.1f}s sent {self.sent} ({self.sent / elapsed:,.0f}/s) v1 {self.readings_v1} "
                f"v2 {self.readings_v2} poison {self.poison} delivered {self.delivered} "
                f"errors {self.failed} labels {self.labels}{err}")


class StatusLine:
    """A live status line on a terminal (carriage return), one line per interval otherwise."""

    def __init__(self, stats: SimStats, out: TextIO = sys.stderr, interval_s: float = 1.0,
                 clock: Clock = time.monotonic) -> None:
        self.stats, self.out, self.interval_s, self.clock = stats, out, interval_s, clock
        self.tty = out.isatty()
        self._next = clock() + interval_s

    def maybe(self) -> None:
        now = self.clock()
        if now >= self._next:
            self._next = now + self.interval_s
            self._write(self.stats.line(now), final=False)

    def done(self) -> None:
        self._write(self.stats.line(self.clock()), final=True)

    def _write(self, text: str, final: bool) -> None:
        if self.tty:
            self.out.write("\r\x1b[2K" + text + ("\n" if final else ""))
        else:
            self.out.write(text + "\n")
        self.out.flush()


class FleetSimulator:
    """Sends one FleetRun; stops at its end or when `should_stop()` turns true, then flushes."""

    def __init__(self, make_producer: ProducerFactory, *, labels_out: TextIO | None = None,
                 status: StatusLine | None = None, stats: SimStats | None = None,
                 flush_timeout_s: float = 30.0, clock: Clock = time.monotonic) -> None:
        self.stats = stats or SimStats()
        self._make_producer = make_producer
        self._producers: dict[int, DeviceProducer] = {}
        self.labels_out = labels_out
        self.status = status
        self.flush_timeout_s = flush_timeout_s
        self.clock = clock

    def _on_delivery(self, report: DeliveryReport) -> None:
        if report.ok:
            self.stats.delivered += 1
        else:
            self.stats.failed += 1
            self.stats.last_error = report.error

    def producer(self, version: int) -> DeviceProducer:
        if version not in self._producers:
            self._producers[version] = self._make_producer(READING_V1 if version == 1 else READING_V2,
                                                           self._on_delivery)
        return self._producers[version]

    def run(self, run: FleetRun, *, paced: bool, should_stop: Callable[[], bool] = lambda: False) -> SimStats:
        """Send every event of `run`; returns the counts (deliveries complete unless the flush timed out)."""
        for version in sorted({d.spec.schema_version for d in run.devices}):
            self.producer(version)  # look the schemas up before the first send, not mid-run
        wall0 = self.clock()
        try:
            for event in run:
                if paced and not self._wait_until(wall0 + _sim_seconds(event, run), should_stop):
                    break
                if should_stop():
                    break
                self.send(event)
                self._write_labels(run.take_labels())
                if self.status:
                    self.status.maybe()
        finally:
            run.finish()
            self._write_labels(run.take_labels())
            self.flush()
            if self.status:
                self.status.done()
        return self.stats

    def send(self, event: SimEvent) -> None:
        producer = self.producer(event.schema_version)
        if event.bad_value is not None or event.record is None:
            producer.send_raw(event.device_id.encode(), event.bad_value, device_id=event.device_id)
            self.stats.poison += 1
        elif event.schema_version == 1:
            producer.send(v1_record(event.record))
            self.stats.readings_v1 += 1
        else:
            producer.send(event.record)
            self.stats.readings_v2 += 1
        self.stats.sent += 1

    def _wait_until(self, target: float, should_stop: Callable[[], bool]) -> bool:
        """Serve delivery reports until the wall-clock target; False if told to stop meanwhile."""
        while True:
            remaining = target - self.clock()
            if should_stop():
                return False
            if remaining <= 0:
                return True
            self._poll(min(remaining, 0.2))
            if self.status:
                self.status.maybe()

    def _poll(self, timeout_s: float) -> None:
        producers = list(self._producers.values())
        if not producers:
            time.sleep(timeout_s)
            return
        for p in producers[1:]:
            p.poll(0)
        producers[0].poll(timeout_s)

    def _write_labels(self, labels: list[AnomalyLabel]) -> None:
        for label in labels:
            self.stats.labels += 1
            if self.labels_out is not None:
                self.labels_out.write(json.dumps(label.to_dict()) + "\n")
        if labels and self.labels_out is not None:
            self.labels_out.flush()

    def flush(self) -> int:
        """Wait for outstanding deliveries; returns how many are still in flight after the timeout."""
        deadline = self.clock() + self.flush_timeout_s
        left = 0
        for p in self._producers.values():
            left += p.flush(max(deadline - self.clock(), 0.0))
        return left


def _sim_seconds(event: SimEvent, run: FleetRun) -> float:
    if event.send_time is None:
        return 0.0
    return (event.send_time - run.start).total_seconds()
