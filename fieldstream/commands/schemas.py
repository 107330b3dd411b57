"""`fieldstream schemas register | list | check FILE`."""

from __future__ import annotations

import json
from pathlib import Path

import click
from confluent_kafka.schema_registry.error import SchemaRegistryError

from fieldstream.config import load_settings
from fieldstream.schemas import admin
from fieldstream.schemas.files import subject_for


@click.group()
def schemas() -> None:
    """Register, list and check Avro schemas in the schema registry."""


@schemas.command()
def register() -> None:
    """Register the bundled schemas (idempotent) and set each subject's compatibility."""
    settings = load_settings()
    try:
        for r in admin.register_bundled(settings):
            click.echo(f"{r.subject:<32} v{r.version:<3} id={r.schema_id:<5} {r.file}")
    except SchemaRegistryError as e:
        raise click.ClickException(f"registry at {settings.registry.url}: {e}") from e


@schemas.command(name="list")
def list_() -> None:
    """List subjects, their versions, ids and compatibility levels."""
    settings = load_settings()
    client = admin.registry_client(settings)
    try:
        for subject in sorted(client.get_subjects()):
            level = client.get_compatibility(subject_name=subject)
            for version in client.get_versions(subject):
                reg = client.get_version(subject, version)
                click.echo(f"{subject:<32} v{version:<3} id={reg.schema_id:<5} {level}")
    except SchemaRegistryError as e:
        raise click.ClickException(f"registry at {settings.registry.url}: {e}") from e


@schemas.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--subject", help="Subject to check against (default: the readings topic's value subject)")
def check(file: Path, subject: str | None) -> None:
    """Check a candidate .avsc against the registry before deploying it; exit 1 if incompatible."""
    settings = load_settings()
    text = file.read_text()
    try:
        json.loads(text)
    except json.JSONDecodeError as e:
        raise click.ClickException(f"{file}: not JSON: {e}") from e
    subject = subject or subject_for(settings.topics.readings)
    try:
        ok, why = admin.check_compatible(settings, subject, text)
    except SchemaRegistryError as e:
        raise click.ClickException(f"registry refused {file}: {e}") from e
    click.echo(f"{file}: {why}")
    if not ok:
        raise SystemExit(1)
