"""The `fieldstream` command: the Faust app's own command line plus ours.

`fieldstream worker` is Faust's worker (with --web-port, -l, ...); the other
commands are click groups added to the same command line.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from fieldstream.errors import ConfigError

if TYPE_CHECKING:
    from fieldstream.config import Settings


def _our_commands() -> list[click.Command]:
    from fieldstream.commands.alerts import alerts
    from fieldstream.commands.backfill import backfill
    from fieldstream.commands.config_cmd import config
    from fieldstream.commands.db import db
    from fieldstream.commands.demo import demo_cmd
    from fieldstream.commands.dlq import dlq
    from fieldstream.commands.evaluate import evaluate
    from fieldstream.commands.schemas import schemas
    from fieldstream.commands.simulate import simulate
    from fieldstream.commands.stack import stack
    from fieldstream.commands.status import status
    from fieldstream.commands.topics import topics

    return [alerts, backfill, config, db, demo_cmd, dlq, evaluate, schemas, simulate, stack, status, topics]


def name_our_defaults(cli: click.Group, settings: Settings) -> None:
    """Faust's help names Faust's defaults (port 6066, every interface, `{conf.name}-data`);
    a worker starts from our settings instead, so the help says those."""
    w = settings.worker
    helps = {
        "web_port": f"Port of /metrics, /health, /ready (default: FIELDSTREAM_WORKER_WEB_PORT, now {w.web_port})",
        "web_bind": f"Address the web server listens on (default: FIELDSTREAM_WORKER_WEB_HOST, now {w.web_host})",
        "web_host": f"Host name in the web server's URLs (default: FIELDSTREAM_WORKER_WEB_HOST, now {w.web_host})",
        "datadir": f"Directory of table state (default: FIELDSTREAM_WORKER_DATA_DIR, now {w.data_dir})",
    }
    worker = cli.commands.get("worker")
    for param in [*cli.params, *(worker.params if worker else [])]:
        if isinstance(param, click.Option) and param.name in helps:
            param.help, param.show_default = helps[param.name], False


def main() -> None:
    from faust.cli.faust import cli

    for command in _our_commands():
        cli.add_command(command)
    try:
        from fieldstream.config import load_settings
        from fieldstream.streams.app import build_app

        settings = load_settings()
        app = build_app(settings)
    except ConfigError as e:
        click.echo(f"fieldstream: {e}", err=True)
        sys.exit(2)
    name_our_defaults(cli, settings)
    if settings.worker.json_logs and not {"-q", "--quiet"} & set(sys.argv):
        # Faust's banner and console notes are plain text on stdout; with JSON logs every
        # line must parse, so they go; the logs still say what starts, stops and fails.
        sys.argv.insert(1, "--quiet")
    app.main()


if __name__ == "__main__":
    main()
