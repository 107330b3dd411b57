"""Ctrl-C for long-running commands: stop cleanly first, abort on the second press."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator
from types import FrameType

import click


@contextlib.contextmanager
def stop_on_sigint() -> Iterator[Callable[[], bool]]:
    """First Ctrl-C asks the loop to stop and flush; a second one aborts."""
    stop = {"asked": False}

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop["asked"]:
            raise KeyboardInterrupt
        stop["asked"] = True
        click.echo("\nstopping: flushing outstanding deliveries (Ctrl-C again to abort)", err=True)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: stop["asked"]
    finally:
        signal.signal(signal.SIGINT, previous)
