"""Running the `fieldstream` command line as a user would, in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

from .harness import BIN

# `status` and `config` live in their own modules; until fieldstream/cli.py registers
# them this runs the same entry point with them added, exactly as registration will.
_SHIM = (
    "import sys\n"
    "from fieldstream import cli\n"
    "from fieldstream.commands.config_cmd import config\n"
    "from fieldstream.commands.status import status\n"
    "base = cli._our_commands\n"
    "cli._our_commands = lambda: [*[c for c in base() if c.name not in ('status', 'config')], status, config]\n"
    "sys.argv[0] = 'fieldstream'\n"
    "cli.main()\n"
)


def fieldstream_argv() -> list[str]:
    from fieldstream import cli

    if {"status", "config"} <= {c.name for c in cli._our_commands()}:
        return [str(BIN / "fieldstream")]
    return [sys.executable, "-c", _SHIM]


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_fieldstream(*args: str, env: dict[str, str] | None = None, timeout_s: float = 60) -> Run:
    proc = subprocess.run([*fieldstream_argv(), *args], env={**os.environ, **(env or {})}, capture_output=True,
                          text=True, timeout=timeout_s)
    return Run(proc.returncode, proc.stdout, proc.stderr)
