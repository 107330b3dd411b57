"""`fieldstream config show`: every effective setting, secrets masked."""

from __future__ import annotations

import json
from dataclasses import asdict

import click

from fieldstream.config import load_settings
from fieldstream.ops.config_view import reference as settings_reference
from fieldstream.ops.config_view import rows


@click.group(name="config")
def config() -> None:
    """Inspect fieldstream's settings (FIELDSTREAM_* variables and .env)."""


@config.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of lines.")
@click.option("--changed", is_flag=True, help="Only settings that differ from their defaults.")
def show(as_json: bool, changed: bool) -> None:
    """Print every effective setting as VARIABLE=value; secrets are masked."""
    shown = [r for r in rows(load_settings()) if r.source == "set" or not changed]
    if as_json:
        click.echo(json.dumps([asdict(r) for r in shown], indent=2))
        return
    for r in shown:
        click.echo(f"{r.variable}={r.value}" + ("" if r.source == "default" else "    # set"))


@config.command()
def reference() -> None:
    """Print every setting with its default and what it does, as Markdown (docs/SETTINGS.md)."""
    click.echo(settings_reference(), nl=False)
