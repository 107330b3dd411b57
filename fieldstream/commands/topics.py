"""`fieldstream topics create | list`."""

from __future__ import annotations

import click

from fieldstream.config import load_settings
from fieldstream.topics import describe_topics, ensure_topics, topic_plan


@click.group()
def topics() -> None:
    """Create and list fieldstream's Kafka topics."""


@topics.command()
def create() -> None:
    """Create the readings, windows, alerts, dead-letter and late-data topics if missing."""
    settings = load_settings()
    created = set(ensure_topics(settings))
    for name, partitions in topic_plan(settings).items():
        click.echo(f"{name:<32} {partitions:>3} partitions  {'created' if name in created else 'exists'}")


@topics.command(name="list")
def list_() -> None:
    """List topics and their partition counts."""
    for name, partitions in sorted(describe_topics(load_settings()).items()):
        click.echo(f"{name:<48} {partitions:>3}")
