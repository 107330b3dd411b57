"""Planted secret values never show up: not in worker logs (debug level), endpoints, CLI output or files.

The local stack needs no Kafka SASL, registry auth or TLS key passwords, yet those
settings are loaded: they are planted with unique values and the worker must still
work (under PLAINTEXT the SASL password is not used; a registry password without a
user is not sent). PostgreSQL's password is needed, so a second test plants a wrong
one and checks the connection-failure logs.
"""

from __future__ import annotations

import os
import subprocess
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fieldstream.devices import DeviceProducer

from .cli_support import Run, run_fieldstream
from .conftest import pg_fetch
from .harness import BIN, Scenario, Worker, wait_for

MASK = "**********"


class DebugWorker(Worker):
    """A real `fieldstream worker`, logging at debug level: the most any deployment would log."""

    def __init__(self, scenario: Scenario, extra_env: dict[str, str]) -> None:  # noqa: D107
        from .harness import free_port

        self.scenario = scenario
        self.port = free_port()
        self.log = scenario.tmp / "worker-debug.log"
        env = {**os.environ, **scenario.env, "FIELDSTREAM_WORKER_WEB_PORT": str(self.port), **extra_env}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [str(BIN / "fieldstream"), "worker", "-l", "debug", "--web-port", str(self.port)],
                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
            )


def planted(label: str) -> str:
    return f"planted-{label}-{uuid.uuid4().hex}"


def get(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - a local worker
            return resp.read().decode(errors="replace")
    except urllib.error.HTTPError as e:  # /ready answers 503 while not ready: its body counts too
        return e.read().decode(errors="replace")


def files_containing(root: Path, secrets: list[str]) -> list[str]:
    """Every file under `root` (logs, lake, worker state) that holds one of `secrets`, raw bytes."""
    needles = [s.encode() for s in secrets]
    return [str(p) for p in root.rglob("*") if p.is_file() and any(n in p.read_bytes() for n in needles)]


def assert_nowhere(secrets: list[str], texts: dict[str, str], root: Path) -> None:
    for name, text in texts.items():
        for secret in secrets:
            assert secret not in text, f"a planted secret leaked into {name}"
    assert files_containing(root, secrets) == []


def test_planted_secrets_leak_nowhere_and_break_nothing(scenario, workers, monkeypatch):
    secrets = {
        "FIELDSTREAM_KAFKA_SASL_PASSWORD": planted("kafka-sasl"),
        "FIELDSTREAM_KAFKA_SSL_KEY_PASSWORD": planted("kafka-key"),
        "FIELDSTREAM_REGISTRY_BASIC_AUTH_PASSWORD": planted("registry"),
        "FIELDSTREAM_REGISTRY_SSL_KEY_PASSWORD": planted("registry-key"),
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    settings = scenario.settings()
    assert settings.kafka.sasl_password.get_secret_value() == secrets["FIELDSTREAM_KAFKA_SASL_PASSWORD"]

    # Device side (confluent-kafka producer and registry client) with the same planted settings.
    producer = DeviceProducer(settings.kafka, settings.registry, settings.topics.readings)
    now = datetime.now(UTC).replace(microsecond=0)
    for i in range(30):
        producer.send({"device_id": f"{scenario.name}-dev-{i % 3}", "device_type": "soil_station",
                       "event_time": now - timedelta(seconds=30 - i), "seq": i, "metrics": {"moisture": 21.5},
                       "tags": None, "location": None, "firmware": None, "battery": None, "signal_dbm": None})
    producer.send_raw(b"bad", b"\x07not avro")  # exercises the worker's dead-letter producer too
    assert producer.flush() == 0 and producer.failed == 0

    worker = DebugWorker(scenario, secrets)
    workers.append(worker)
    wait_for(lambda: pg_fetch(settings, "SELECT count(*) AS n FROM readings WHERE device_id LIKE $1",
                              f"{scenario.name}-%")[0]["n"] == 30, 60, "30 readings in PostgreSQL", workers=workers)
    base = f"http://127.0.0.1:{worker.port}"
    texts = {f"GET {path}": get(base + path) for path in ("/metrics", "/health", "/ready")}
    env = {**scenario.env, **secrets}
    runs: dict[str, Run] = {
        "config show": run_fieldstream("config", "show", env=env),
        "config show --json": run_fieldstream("config", "show", "--json", env=env),
        "--help": run_fieldstream("--help", env=env),
        "config show --help": run_fieldstream("config", "show", "--help", env=env),
        "status -v": run_fieldstream("status", "-v", env=env),
        "status --json": run_fieldstream("status", "--json", env=env),
    }
    for name, run in runs.items():
        assert run.returncode == 0, f"{name}: {run.output}"
        texts[name] = run.output
    # The settings were loaded (and masked), and the commands are the real ones.
    for variable in secrets:
        assert f"{variable}={MASK}    # set" in runs["config show"].stdout
    assert "status" in runs["--help"].stdout and "config" in runs["--help"].stdout
    assert '"unreachable": []' in runs["status --json"].stdout

    worker.stop()  # a shutdown logs too
    texts["worker log"] = worker.log_text()
    assert "[DEBUG]" in texts["worker log"] and "Stopping..." in texts["worker log"]
    assert_nowhere(list(secrets.values()), texts, scenario.tmp)


def test_a_wrong_planted_pg_password_is_not_in_the_failure_logs(scenario, workers):
    secret = planted("pg")
    env = {**scenario.env, "FIELDSTREAM_PG_PASSWORD": secret}
    worker = DebugWorker(scenario, {"FIELDSTREAM_PG_PASSWORD": secret})
    workers.append(worker)
    wait_for(lambda: "password authentication failed" in worker.log_text() or not worker.alive(), 60,
             "the worker to report the refused PostgreSQL login")
    status = run_fieldstream("status", env=env)
    verbose = run_fieldstream("status", "-v", env=env)  # debug logs, tracebacks included
    migrate = run_fieldstream("db", "migrate", env=env)
    worker.kill()
    log = worker.log_text()
    assert "password authentication failed" in log  # the failure really happened and was logged
    assert status.returncode == 1 and "PostgreSQL at" in status.stdout and "password authentication" in status.stdout
    assert "Traceback" not in status.output
    assert migrate.returncode != 0 and "password authentication failed" in migrate.output
    assert "InvalidPasswordError" in verbose.output
    assert_nowhere([secret], {"worker log": log, "status": status.output, "status -v": verbose.output,
                              "db migrate": migrate.output}, scenario.tmp)
