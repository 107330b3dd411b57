"""`fieldstream evaluate`: replay labelled data through the detectors and report their quality."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import click
import pydantic

from fieldstream.config.detection import DetectionSettings
from fieldstream.detectors.evaluate import evaluate_fleet, evaluate_nab, format_table
from fieldstream.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def detection_settings() -> DetectionSettings:
    """The detection section (from load_settings() once it is registered there)."""
    try:
        from fieldstream.config import load_settings

        section = getattr(load_settings(), "detection", None)
        return section if isinstance(section, DetectionSettings) else DetectionSettings()
    except pydantic.ValidationError as e:
        raise ConfigError(f"invalid detection setting: {e}") from e


def resolve_nab(path: Path) -> Path:
    """A relative path is tried from the current directory, then from the repository."""
    if path.is_absolute() or path.exists():
        return path
    return REPO / path


@click.command()
@click.option("--nab-path", "nab_path", type=click.Path(path_type=Path), default=None,
              help="Folder with the NAB series and labels.json [default: FIELDSTREAM_DETECT_NAB_PATH]")
@click.option("--nab/--no-nab", "with_nab", default=True, help="Evaluate on the NAB series")
@click.option("--sim/--no-sim", "with_sim", default=True, help="Evaluate on the fleet simulator")
@click.option("--devices", default=200, show_default=True, help="Simulated devices")
@click.option("--hours", default=12.0, show_default=True, help="Simulated event time")
@click.option("--anomaly-rate", default=0.2, show_default=True, help="Anomalies per device-hour")
@click.option("--seed", default=1, show_default=True, help="Simulator seed")
@click.option("--start", default="2026-01-05T00:00:00+00:00", show_default=True,
              help="Simulated start time (ISO 8601, with offset)")
@click.option("--dropout", default=0.0, show_default=True, help="Share of simulated readings lost")
@click.option("--out-of-order", default=0.0, show_default=True, help="Share sent 1.5-4 intervals late")
@click.option("--late", default=0.0, show_default=True, help="Share sent minutes late")
@click.option("--clock-skew", default=0.0, show_default=True, help="Device clocks off by up to ± this many seconds")
@click.option("--poison", default=0.0, show_default=True, help="Share of undecodable records (skipped)")
@click.option("--tolerance", type=float, default=None,
              help="Seconds after a window's end an alert still detects it "
                   "[default: FIELDSTREAM_DETECT_EVAL_TOLERANCE_S]")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the full report as JSON here")
def evaluate(nab_path: Path | None, with_nab: bool, with_sim: bool, devices: int, hours: float,
             anomaly_rate: float, seed: int, start: str, dropout: float, out_of_order: float, late: float,
             clock_skew: float, poison: float, tolerance: float | None, json_out: Path | None) -> None:
    """Replay labelled data (NAB series, simulated fleet) through the detectors; report recall,
    precision, F1 and detection delay per anomaly kind and per series."""
    settings = detection_settings()
    tol = settings.eval_tolerance_s if tolerance is None else tolerance
    report: dict[str, object] = {"tolerance_s": tol, "settings": settings.model_dump(mode="json")}
    if with_sim:
        from fieldstream.devices.fleet import FleetConfig

        try:
            begin = datetime.fromisoformat(start)
        except ValueError as e:
            raise click.BadParameter(f"not an ISO 8601 time: {start}", param_hint="--start") from e
        if begin.utcoffset() is None:
            begin = begin.replace(tzinfo=UTC)
        try:
            config = FleetConfig(devices=devices, seed=seed, start=begin, duration_s=hours * 3600,
                                 anomaly_rate=anomaly_rate, dropout_fraction=dropout,
                                 out_of_order_fraction=out_of_order, late_fraction=late,
                                 clock_skew_s=clock_skew, bad_fraction=poison)
        except ValueError as e:
            raise click.UsageError(str(e)) from e
        t0 = time.perf_counter()
        ev, replayed = evaluate_fleet(config, settings, tol)
        click.echo(f"Simulator: {devices} devices, {hours:g} h, seed {seed}: {replayed.readings} readings, "
                   f"{replayed.events} alert events, {time.perf_counter() - t0:.1f} s (tolerance {tol:g} s)\n")
        click.echo(format_table("anomaly kind", ev.by_kind, ev.overall))
        click.echo()
        click.echo(format_table("device type", ev.by_series))
        click.echo(f"\nfalse positives by detector: {ev.fp_by_detector or 'none'}")
        click.echo(f"first detector per kind: {ev.detected_by}\n")
        report["simulator"] = {"devices": devices, "hours": hours, "seed": seed, "anomaly_rate": anomaly_rate,
                               "dropout": dropout, "out_of_order": out_of_order, "late": late,
                               "clock_skew_s": clock_skew, "poison": poison,
                               "readings": replayed.readings, **ev.to_dict()}
    if with_nab:
        path = resolve_nab(nab_path or settings.nab_path)
        if not (path / "labels.json").exists():
            raise click.ClickException(f"no NAB labels.json in {path} (set --nab-path or FIELDSTREAM_DETECT_NAB_PATH)")
        ev, sizes = evaluate_nab(path, settings, tol)
        click.echo(f"NAB ({path}): {sum(sizes.values())} readings in {len(sizes)} series (tolerance {tol:g} s)\n")
        click.echo(format_table("series", ev.by_series, ev.overall))
        click.echo(f"\nfalse positives by detector: {ev.fp_by_detector or 'none'}")
        report["nab"] = {"path": str(path), "readings": sizes, **ev.to_dict()}
    if json_out is not None:
        json_out.write_text(json.dumps(report, indent=2, default=str) + "\n")
        click.echo(f"\nwrote {json_out}")


if __name__ == "__main__":  # until it is registered in fieldstream/cli.py
    evaluate()
