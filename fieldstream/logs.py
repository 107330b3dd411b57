"""Logging set-up: readable lines by default, one JSON object per line on request."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def worker_logging_config(json_logs: bool) -> dict[str, Any] | None:
    """The worker's logging, given to Faust (which calls dictConfig with it at start-up).

    None keeps Faust's own coloured lines. `merge` keeps Faust's loggers and level
    (from `-l`) and replaces only its default handler's formatter.
    """
    if not json_logs:
        return None
    return {
        "merge": True,
        "formatters": {"json": {"()": f"{__name__}.JsonFormatter"}},
        "handlers": {"default": {"class": "logging.StreamHandler", "formatter": "json",
                                 "stream": "ext://sys.stderr"}},
    }


def setup_cli_logging(level: int = logging.INFO, json_logs: bool | None = None) -> None:
    """Logging for our own (non-worker) commands; the worker's goes through Faust.

    `json_logs` None follows the FIELDSTREAM_WORKER_JSON_LOGS setting.
    """
    if json_logs is None:
        from fieldstream.config import load_settings
        from fieldstream.errors import ConfigError

        try:
            json_logs = load_settings().worker.json_logs
        except ConfigError:
            json_logs = False  # the command itself reports the bad setting
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_logs else logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
