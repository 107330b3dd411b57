"""`fieldstream status`: the worker group's lag and members, topics, schemas, tables, the lake."""

from __future__ import annotations

import json
import logging
import sys

import click

from fieldstream.config import load_settings
from fieldstream.logs import setup_cli_logging
from fieldstream.ops.status import collect
from fieldstream.ops.status_report import render


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
@click.option("--all", "show_all", is_flag=True, help="Also list topics and subjects that are not fieldstream's.")
@click.option("--timeout", "timeout_s", type=float, default=5.0, show_default=True,
              help="Seconds to wait for each service.")
@click.option("--count-timeout", "count_timeout_s", type=float, default=2.0, show_default=True,
              help="Seconds an exact row count may take before the planner's estimate is shown instead.")
@click.option("-v", "--verbose", is_flag=True, help="Log what each probe does (and why it failed) to stderr.")
def status(as_json: bool, show_all: bool, timeout_s: float, count_timeout_s: float, verbose: bool) -> None:
    """What is running and how far behind it is; exits 1 when a service cannot be reached."""
    setup_cli_logging(logging.DEBUG if verbose else logging.WARNING)
    logging.getLogger("fieldstream.ops.rdkafka").propagate = verbose  # librdkafka's own connection logs
    result = collect(load_settings(), timeout_s=timeout_s, count_timeout_s=count_timeout_s, all_subjects=show_all)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, default=str))
    else:
        click.echo(render(result, show_all=show_all))
    if result.problems:
        sys.exit(1)
