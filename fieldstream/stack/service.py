"""What every stack service offers to `stack up | down | status`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from fieldstream.config.stack import StackSettings


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    address: str
    running: bool
    pid: int | None
    version: str
    log: Path


class StackService(Protocol):
    name: str

    def __init__(self, settings: StackSettings) -> None: ...

    def install(self) -> None:
        """Fetch or build the server if the cache lacks it (idempotent)."""

    def up(self) -> None:
        """Start the server unless it already answers; wait until it answers."""

    def down(self) -> bool:
        """Stop the server if `up` started it; True when something was stopped."""

    def status(self) -> ServiceStatus: ...


def stack_paths(settings: StackSettings, name: str) -> tuple[Path, Path, Path]:
    """(data dir, log file, pid file) of one service, all under the stack's data dir."""
    root = settings.data_dir.resolve()
    return root / name, root / "logs" / f"{name}.log", root / "run" / f"{name}.pid"
