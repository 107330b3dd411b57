"""`fieldstream backfill PATH... --mapping FILE`: historical files into the readings topic."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from fieldstream.commands.interrupt import stop_on_sigint
from fieldstream.config import load_settings
from fieldstream.config.simulator import simulator_settings
from fieldstream.devices.backfill import Backfill, BackfillOptions, BackfillResult
from fieldstream.devices.mapping import load_mapping
from fieldstream.devices.producer import SchemaRejected
from fieldstream.errors import ConfigError


def _summary(result: BackfillResult, options: BackfillOptions) -> str:
    lines = [f"rows read {result.rows:,} (skipped, already done: {result.skipped:,}), valid {result.valid:,}, "
             f"rejected {result.rejected:,}" + (f" -> {options.rejects_path}" if result.rejected else "")]
    if result.reasons:
        lines.append("  reasons: " + ", ".join(f"{k} {v:,}" for k, v in result.reasons.most_common()))
    if result.first_time is not None and result.last_time is not None:
        lines.append(f"  {len(result.devices):,} devices, event times {result.first_time.isoformat()} .. "
                     f"{result.last_time.isoformat()}")
    if result.shift:
        lines.append(f"  timestamps shifted by {result.shift.total_seconds():+.0f}s ({result.shift})")
    if not options.dry_run:
        lines.append(f"  produced {result.produced:,}, delivered {result.delivered:,}, failed {result.failed:,}"
                     + (f" (first error: {result.first_error})" if result.first_error else ""))
        if options.resume_path is not None:
            state = "complete" if result.complete else "resume with the same command"
            lines.append(f"  resume point saved in {options.resume_path}: {state}")
    return "\n".join(lines)


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--mapping", "mapping_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="YAML file mapping columns to the reading (see examples/nab-mapping.yaml)")
@click.option("--dry-run", is_flag=True, help="Validate every row and write the rejects file; produce nothing")
@click.option("--rate", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Rows per second at most (0 = unlimited)")
@click.option("--rejects", "rejects_path", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("backfill-rejects.jsonl"), show_default=True,
              help="Rejected rows (file, line, row, reason), one JSON object per line")
@click.option("--resume-file", "resume_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Resume point: created on the first run, continued from on the next")
@click.option("--max-rows", type=click.IntRange(min=1), help="Stop after this many rows (continue later with the resume file)")
@click.option("--topic", help="Topic to produce to (default: the readings topic setting)")
@click.option("--auto-register", is_flag=True,
              help="Register the reading schema under the topic's subject if missing (for new topics)")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar")
def backfill(paths: tuple[Path, ...], mapping_path: Path, dry_run: bool, rate: float, rejects_path: Path,
             resume_path: Path | None, max_rows: int | None, topic: str | None, auto_register: bool, progress: bool) -> None:
    """Backfill historical readings from CSV, JSON lines or Parquet files."""
    try:
        settings = load_settings()
        sim = simulator_settings(settings)
        mapping, digest = load_mapping(mapping_path)
    except ConfigError as e:
        raise click.ClickException(str(e)) from e
    options = BackfillOptions(
        topic=topic or settings.topics.readings, rejects_path=rejects_path, resume_path=resume_path,
        dry_run=dry_run, rate=rate, max_rows=max_rows, progress=progress, checkpoint_s=sim.backfill_checkpoint_s,
        flush_timeout_s=sim.flush_timeout_s, auto_register=auto_register,
    )
    if resume_path is None and not dry_run:
        click.echo("note: no --resume-file, so an interrupted run cannot be continued", err=True)
    try:
        job = Backfill(list(paths), mapping, digest, options, kafka=settings.kafka, registry=settings.registry,
                       validation=settings.validation, now=datetime.now(UTC))
        with stop_on_sigint() as should_stop:
            result = job.run(should_stop)
            interrupted = should_stop()
    except (ConfigError, SchemaRejected) as e:
        raise click.ClickException(str(e)) from e
    click.echo(_summary(result, options), err=True)
    if result.failed or (not dry_run and result.produced != result.delivered):
        raise click.ClickException("some rows were not delivered; run again with the same --resume-file")
    if interrupted:
        sys.exit(130)  # the shell's code for Ctrl-C: scripts can tell an interrupted backfill from a done one
