"""Running the `fieldstream` command line as a user would, in a subprocess."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass

from .harness import BIN

@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_fieldstream(*args: str, env: dict[str, str] | None = None, timeout_s: float = 60) -> Run:
    proc = subprocess.run([str(BIN / "fieldstream"), *args], env={**os.environ, **(env or {})}, capture_output=True,
                          text=True, timeout=timeout_s)
    return Run(proc.returncode, proc.stdout, proc.stderr)
