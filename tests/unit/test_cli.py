"""The `fieldstream` command line, run as users run it: a process, its output, its exit code."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fieldstream.cli import _our_commands

FIELDSTREAM = Path(sys.executable).parent / "fieldstream"


def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FIELDSTREAM_")}
    return subprocess.run([str(FIELDSTREAM), *args], capture_output=True, text=True, timeout=120,
                          env={**clean, **(env or {})}, cwd=cwd)


def command_lines(help_text: str) -> dict[str, str]:
    """The 'Commands:' section of a click help page: name → its one-line summary."""
    lines = help_text.split("Commands:", 1)[1].splitlines()
    out = {}
    for line in lines:
        if line.startswith("  ") and line.strip():
            name, _, summary = line.strip().partition(" ")
            out[name] = summary.strip()
    return out


def test_help_lists_every_command_with_one_line_each():
    result = run("--help")
    assert result.returncode == 0, result.stderr
    commands = command_lines(result.stdout)
    ours = {c.name for c in _our_commands()}
    assert ours <= set(commands), ours - set(commands)
    assert {"worker", "agents", "tables"} <= set(commands)  # Faust's own commands are there too
    assert all(commands[name] for name in ours), {n: commands[n] for n in ours if not commands[n]}


def test_worker_help_has_fausts_flags():
    result = run("worker", "--help")
    assert result.returncode == 0, result.stderr
    assert "--web-port" in result.stdout and "--loglevel" in result.stdout


def test_worker_help_names_the_defaults_a_worker_starts_with_not_fausts():
    help_text = " ".join(run("worker", "--help", env={"FIELDSTREAM_WORKER_WEB_PORT": "17077"}).stdout.split())
    assert "FIELDSTREAM_WORKER_WEB_PORT, now 17077" in help_text and "6066" not in help_text
    assert "FIELDSTREAM_WORKER_WEB_HOST, now 127.0.0.1" in help_text
    root = " ".join(run("--help").stdout.split())
    assert "FIELDSTREAM_WORKER_DATA_DIR, now .stack/worker" in root and "{conf.name}-data" not in root


def test_a_bad_setting_stops_startup_naming_it():
    result = run("status", env={"FIELDSTREAM_PG_PORT": "not-a-port"})
    assert result.returncode == 2
    assert "FIELDSTREAM_PG_PORT" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("where", ["environment", "dotenv"])
def test_settings_come_from_the_environment_or_dotenv(tmp_path, where):
    if where == "dotenv":
        (tmp_path / ".env").write_text("FIELDSTREAM_TOPIC_READINGS=from-dotenv.readings\n")
        env = {}
    else:
        env = {"FIELDSTREAM_TOPIC_READINGS": "from-dotenv.readings"}
    result = run("config", "show", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "from-dotenv.readings" in result.stdout


def test_config_reference_prints_the_settings_doc(tmp_path):
    result = run("config", "reference", cwd=tmp_path)  # no .env of the repository's around
    assert result.returncode == 0, result.stderr
    assert result.stdout == (Path(__file__).resolve().parents[2] / "docs" / "SETTINGS.md").read_text()
