"""Start, find and stop the stack's server processes through pid files."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from fieldstream.errors import StackError


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); it is not a running server.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def read_pid(pid_file: Path) -> int | None:
    """The pid recorded in `pid_file` if that process is still running."""
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if pid_alive(pid) else None


def spawn(argv: Sequence[str], *, log_file: Path, pid_file: Path, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> int:
    """Start `argv` detached in its own session, output appended to `log_file`."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        proc = subprocess.Popen(  # noqa: S603 - argv is built by the stack, not user input
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, **(env or {})},
            cwd=cwd,
        )
    pid_file.write_text(f"{proc.pid}\n")
    return proc.pid


def stop_pid(pid: int, *, timeout_s: float = 30.0) -> None:
    """SIGTERM the process group, then SIGKILL it if it outlives `timeout_s`."""
    for sig, wait in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            _reap(pid)
            if not pid_alive(pid):
                return
            time.sleep(0.1)
    raise StackError(f"process {pid} did not stop")


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def wait_until(check: Callable[[], bool], *, timeout_s: float, what: str, log_file: Path | None = None,
               pid: int | None = None) -> None:
    """Poll `check` until it is true; fail naming the service and its log."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        if pid is not None and not pid_alive(pid):
            raise StackError(f"{what} exited during start-up; see its log: {log_file}")
        time.sleep(0.5)
    raise StackError(f"{what} did not answer within {timeout_s:.0f}s; see its log: {log_file}")


def run(argv: Sequence[str], *, what: str, env: dict[str, str] | None = None, cwd: Path | None = None,
        timeout_s: float = 900) -> str:
    """Run a set-up command to completion; fail with its output."""
    proc = subprocess.run(  # noqa: S603
        list(argv), capture_output=True, text=True, env={**os.environ, **(env or {})}, cwd=cwd,
        timeout=timeout_s,
    )
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-3000:]
        raise StackError(f"{what} failed (exit {proc.returncode}): {' '.join(argv)}\n{tail}")
    return proc.stdout


def wait_port_free(host: str, port: int, timeout_s: float = 15.0) -> bool:
    """A server just killed may hold its port for a moment; True once nothing answers on it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not port_open(host, port):
            return True
        time.sleep(0.3)
    return False
