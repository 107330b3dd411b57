"""`fieldstream dlq inspect | replay`: what is in the dead-letter topic, and sending it back.

The logic lives in fieldstream.ingest.deadletters; this module parses options
and prints. Both commands read the topic from the beginning to the partition
ends seen on start, under a throwaway consumer group, and commit nothing.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any

import click
from tqdm import tqdm

from fieldstream.config import load_settings
from fieldstream.config.settings import Settings
from fieldstream.errors import ConfigError
from fieldstream.ingest.deadletters import (
    DeadLetterReader,
    DeadLetterTopicError,
    GroupSummary,
    Replayer,
    ReplayFilter,
    ReplayResult,
    iso_ms,
    replay,
    summarize,
    summary_data,
)

STAGES = ("decode", "validate", "sink")


class Timestamp(click.ParamType):
    """ISO 8601 time; without a zone it is UTC."""

    name = "TIME"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            t = value
        else:
            try:
                t = datetime.fromisoformat(str(value))
            except ValueError:
                self.fail(f"{value!r} is not an ISO 8601 time such as 2026-01-05T08:30:00Z", param, ctx)
        return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as e:
        raise click.ClickException(str(e)) from e


def _ms(t: datetime | None) -> int | None:
    return None if t is None else int(t.timestamp() * 1000)


@click.group()
def dlq() -> None:
    """Inspect and replay the dead-letter topic."""


def _format_group(g: GroupSummary) -> list[str]:
    assert g.first is not None and g.last is not None
    ex, ctx = g.first, g.first.context
    spans = ", ".join(f"p{p}: {a}..{b}" for p, (a, b) in sorted(g.offsets.items()))
    value = "null" if ex.value is None else f"{len(ex.value)} bytes: {ex.value[:24].hex()}" + (
        "..." if len(ex.value) > 24 else "")
    return [
        f"{g.stage} / {g.reason}: {g.count}",
        f"  first    p{g.first.partition}@{g.first.offset}  {iso_ms(g.first.timestamp_ms)}",
        f"  last     p{g.last.partition}@{g.last.offset}  {iso_ms(g.last.timestamp_ms)}",
        f"  offsets  {spans}",
        f"  example  from {ctx.get('topic', '?')}[{ctx.get('partition', '?')}]@{ctx.get('offset', '?')}, "
        f"record time {iso_ms(int(ctx['timestamp'])) if ctx.get('timestamp', '').isdigit() else '-'}, "
        f"schema id {ctx.get('schema.id') or '-'}, worker {ctx.get('worker') or '-'}",
        f"    key    {ex.key!r}",
        f"    value  {value}",
        f"    error  {ctx.get('error.class', '?')}: {ctx.get('error.message', '')}",
    ]


@dlq.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON document instead of text")
@click.option("--topic", help="Dead-letter topic (default: the dlq topic setting)")
def inspect(as_json: bool, topic: str | None) -> None:
    """Summarise the dead letters by stage and reason: counts, first/last offsets, one example each."""
    settings = _settings()
    topic = topic or settings.topics.dlq
    try:
        with DeadLetterReader(settings.kafka, topic) as reader:
            groups = summarize(reader)
            partitions = reader.partitions
    except DeadLetterTopicError as e:
        raise click.ClickException(str(e)) from e
    if as_json:
        click.echo(json.dumps(summary_data(topic, partitions, groups), indent=2))
        return
    total = sum(g.count for g in groups)
    click.echo(f"{topic}: {total} dead letter(s) in {partitions} partition(s)")
    if not groups:
        return
    click.echo("")
    click.echo(f"  {'COUNT':>7}  {'STAGE':<9} REASON")
    for g in groups:
        click.echo(f"  {g.count:>7}  {g.stage:<9} {g.reason}")
    for g in groups:
        click.echo("")
        click.echo("\n".join(_format_group(g)))


def _replay_report(result: ReplayResult, *, dry_run: bool, source: str, total: int, target: str) -> dict[str, Any]:
    return {
        "dry_run": dry_run,
        "source": source,
        "target": target,
        "dead_letters": total,
        "scanned": result.scanned,
        "matched": result.matched,
        "produced": result.produced,
        "delivered": result.delivered,
        "failed": result.failed,
        "errors": result.errors,
        "by_stage_reason": [{"stage": s, "reason": r, "count": n} for (s, r), n in result.by_group.most_common()],
    }


@dlq.command("replay")
@click.option("--stage", "stages", multiple=True, type=click.Choice(STAGES), help="Only this stage (repeatable)")
@click.option("--reason", "reasons", multiple=True, help="Only this reason, e.g. out_of_range (repeatable)")
@click.option("--since", type=Timestamp(), help="Only dead-lettered at or after this time (ISO 8601, UTC if no zone)")
@click.option("--until", type=Timestamp(), help="Only dead-lettered before this time (ISO 8601, UTC if no zone)")
@click.option("--limit", type=click.IntRange(min=1), help="Replay at most this many")
@click.option("--dry-run", is_flag=True, help="Count what would be replayed; produce nothing")
@click.option("--topic", help="Where to replay to (default: the readings topic setting)")
@click.option("--from-topic", "source", help="Dead-letter topic to read (default: the dlq topic setting)")
@click.option("--json", "as_json", is_flag=True, help="Report as one JSON document")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar on stderr")
def replay_command(stages: tuple[str, ...], reasons: tuple[str, ...], since: datetime | None, until: datetime | None,
                   limit: int | None, dry_run: bool, topic: str | None, source: str | None, as_json: bool,
                   progress: bool) -> None:
    """Re-inject dead letters (original key and value bytes) into the readings topic.

    The record's own headers go along, ours are dropped, and fieldstream.replayed=1
    is added. Counts are reported only after the broker confirmed every delivery.
    A replayed reading the worker has already stored is absorbed by its
    duplicate check and the sinks' idempotent writes.
    """
    settings = _settings()
    source = source or settings.topics.dlq
    target = topic or settings.topics.readings
    if source == target:
        raise click.ClickException(f"refusing to replay {source} into itself")
    if since is not None and until is not None and since >= until:
        raise click.ClickException("--since must be before --until")
    wanted = ReplayFilter(frozenset(stages), frozenset(reasons), _ms(since), _ms(until))
    try:
        with DeadLetterReader(settings.kafka, source) as reader:
            replayer = None if dry_run else Replayer(settings.kafka, target)
            with tqdm(total=reader.total, unit="msg", desc="dlq replay", file=sys.stderr,
                      disable=not progress) as bar:
                result = replay(reader, wanted, replayer, limit=limit, progress=bar.update)
            total = reader.total
    except DeadLetterTopicError as e:
        raise click.ClickException(str(e)) from e
    report = _replay_report(result, dry_run=dry_run, source=source, total=total, target=target)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        verb = "would replay" if dry_run else "replayed"
        click.echo(f"{verb} {result.matched} dead letter(s) into {target}"
                   + (" (dry run: nothing produced)" if dry_run else ""))
        click.echo(f"  scanned {result.scanned} of the {total} in {source}")
        for (stage, reason), n in result.by_group.most_common():
            click.echo(f"  {stage} / {reason}: {n}")
        if not dry_run:
            click.echo(f"  delivered {result.delivered}, failed {result.failed}"
                       + (f" (first errors: {'; '.join(result.errors)})" if result.errors else ""))
    if not dry_run and not result.complete:
        raise click.ClickException(f"{result.failed} of {result.produced} replayed record(s) were not delivered")
