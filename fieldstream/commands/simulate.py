"""`fieldstream simulate`: a realistic device fleet, with labelled anomalies, into the readings topic."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import click

from fieldstream.commands.interrupt import stop_on_sigint
from fieldstream.config import load_settings
from fieldstream.config.simulator import simulator_settings
from fieldstream.devices.fleet import ANOMALY_KINDS, FleetConfig, FleetRun
from fieldstream.devices.producer import DeliveryReport, DeviceProducer, SchemaRejected
from fieldstream.devices.simulator import FleetSimulator, SimStats, StatusLine, plan_run
from fieldstream.errors import ConfigError

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class Duration(click.ParamType):
    """Seconds, or a number with s, m, h or d."""

    name = "duration"

    def __init__(self, allow_zero: bool = False) -> None:
        self.allow_zero = allow_zero

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, (int, float)):
            return float(value)
        text = str(value).strip().lower()
        factor = _UNITS.get(text[-1:], None)
        try:
            seconds = float(text[:-1]) * factor if factor else float(text)
        except ValueError:
            self.fail(f"{value!r} is not a duration (e.g. 90, 90s, 15m, 2h, 1d)", param, ctx)
        if seconds < 0 or (seconds == 0 and not self.allow_zero):
            self.fail("a duration must be positive", param, ctx)
        return seconds


def _fraction(ctx: click.Context, param: click.Parameter, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise click.BadParameter("must be within [0, 1]")
    return value


@click.command()
@click.option("--devices", type=click.IntRange(min=1), help="Fleet size (default: FIELDSTREAM_SIM_DEVICES, 100)")
@click.option("--rate", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Readings/s: sampling intervals are scaled to it and event times stay at now; "
                   "0 = as fast as possible, over event time ending now")
@click.option("--realtime", is_flag=True, help="Each device sends at its own real interval (10-60 s), from now")
@click.option("--duration", type=Duration(), help="Event time to cover (e.g. 3600, 30m, 2h); "
              "live modes run until Ctrl-C without it")
@click.option("--count", type=click.IntRange(min=1), help="Stop after this many events")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Same seed, same fleet, same anomalies; with the same --start, the very same readings and labels")
@click.option("--start", type=click.DateTime(formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S"]),
              help="Event time of the run's start (UTC if no offset) instead of one derived from now")
@click.option("--v1-fraction", type=float, default=0.3, show_default=True, callback=_fraction,
              help="Share of devices still writing schema v1")
@click.option("--out-of-order", type=float, default=0.0, show_default=True, callback=_fraction,
              help="Share of readings sent after later readings of their device")
@click.option("--late", type=float, default=0.0, show_default=True, callback=_fraction,
              help="Share of readings sent 2-15 minutes late")
@click.option("--clock-skew", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Each device's clock is off by up to ± this many seconds")
@click.option("--dropouts", type=float, default=0.0, show_default=True, callback=_fraction,
              help="Share of readings lost on the way")
@click.option("--bad-fraction", type=float, default=0.0, show_default=True, callback=_fraction,
              help="Share of events that are poison records (undecodable bytes)")
@click.option("--anomaly-rate", type=click.FloatRange(min=0), default=0.05, show_default=True,
              help="Injected anomalies per device-hour of event time")
@click.option("--warmup", type=Duration(allow_zero=True), default="15m", show_default=True,
              help="No anomaly starts in this first stretch of event time (detectors learn normal first)")
@click.option("--anomaly-kinds", default=",".join(ANOMALY_KINDS), show_default=True,
              help="Comma-separated kinds to inject")
@click.option("--labels", "labels_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write every injected anomaly here, one JSON object per line, as each completes")
@click.option("--topic", help="Topic to produce to (default: the readings topic setting)")
@click.option("--auto-register", is_flag=True,
              help="Register the reading schemas under the topic's subject if missing (for new topics)")
def simulate(devices: int | None, rate: float, realtime: bool, duration: float | None, count: int | None,
             seed: int, start: datetime | None, v1_fraction: float, out_of_order: float, late: float,
             clock_skew: float, dropouts: float, bad_fraction: float, anomaly_rate: float, warmup: float,
             anomaly_kinds: str, labels_path: Path | None, topic: str | None, auto_register: bool) -> None:
    """Simulate a fleet of soil stations, collars, tank probes and air-quality sensors."""
    try:
        settings = load_settings()
        sim = simulator_settings(settings)
    except ConfigError as e:
        raise click.ClickException(str(e)) from e
    if bad_fraction >= 1.0:
        raise click.BadParameter("must be below 1", param_hint="--bad-fraction")
    if start is not None and start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    kinds = tuple(k.strip() for k in anomaly_kinds.split(",") if k.strip())
    try:
        base = FleetConfig(
            devices=devices or sim.devices, seed=seed, count=count, duration_s=duration, v1_fraction=v1_fraction,
            anomaly_rate=anomaly_rate, bad_fraction=bad_fraction, out_of_order_fraction=out_of_order,
            late_fraction=late, clock_skew_s=clock_skew, dropout_fraction=dropouts, anomaly_kinds=kinds,
            warmup_s=warmup, id_prefix=sim.id_prefix,
        )
        plan = plan_run(base, now=datetime.now(UTC), rate=rate, realtime=realtime,
                        burst_s=sim.burst_duration_s, start=start)
    except ValueError as e:
        raise click.UsageError(str(e)) from e
    topic = topic or settings.topics.readings

    def make_producer(schema_file: str, on_delivery: Callable[[DeliveryReport], None]) -> DeviceProducer:
        return DeviceProducer(settings.kafka, settings.registry, topic, schema_file=schema_file,
                              auto_register=auto_register, on_delivery=on_delivery)

    cfg = plan.config
    assert cfg.start is not None
    mode = "paced" if plan.paced else "as fast as possible"
    click.echo(f"simulating {cfg.devices} devices (seed {cfg.seed}) to {topic}, {mode}, event time from "
               f"{cfg.start.isoformat()}" + (f", intervals x{cfg.interval_scale:.4g}" if cfg.interval_scale != 1 else ""),
               err=True)
    stats = SimStats()
    with contextlib.ExitStack() as stack:
        labels_out = stack.enter_context(labels_path.open("w")) if labels_path else None
        should_stop = stack.enter_context(stop_on_sigint())
        simulator = FleetSimulator(make_producer, labels_out=labels_out, stats=stats,
                                   status=StatusLine(stats, sys.stderr, sim.status_interval_s),
                                   flush_timeout_s=sim.flush_timeout_s)
        try:
            simulator.run(FleetRun(cfg), paced=plan.paced, should_stop=should_stop)
        except SchemaRejected as e:
            raise click.ClickException(str(e)) from e
    undelivered = stats.sent - stats.delivered - stats.failed
    if stats.failed or undelivered:
        raise click.ClickException(f"{stats.failed} deliveries failed, {undelivered} not confirmed"
                                   + (f" (last error: {stats.last_error})" if stats.last_error else ""))
