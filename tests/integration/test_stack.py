"""The local stack: real Kafka (KRaft), registry and PostgreSQL, idempotent and self-healing."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import uuid
from pathlib import Path

from confluent_kafka import Producer

from fieldstream.stack import manager
from fieldstream.stack.kafka import KafkaService
from fieldstream.topics import ensure_topics

from .harness import BIN, consume_all, free_port, wait_for


def _by_name(rows):
    return {r.name: r for r in rows}


def test_status_shows_every_service_and_kafka_version(stack_settings):
    rows = _by_name(manager.status(stack_settings))
    assert set(rows) == {"kafka", "registry", "postgres"}
    assert all(r.running and r.pid for r in rows.values()), rows
    major, minor, _ = (int(x) for x in rows["kafka"].version.split("."))
    assert (major, minor) >= (3, 7)
    assert rows["postgres"].version.startswith(("15", "16", "17"))


def test_up_twice_changes_nothing(stack_settings):
    before = {r.name: r.pid for r in manager.status(stack_settings)}
    manager.up(stack_settings)
    after = {r.name: r.pid for r in manager.status(stack_settings)}
    assert before == after


def test_killed_kafka_comes_back_with_its_data(stack_settings):
    topic = f"it-{uuid.uuid4().hex[:8]}.survivor"
    ensure_topics(stack_settings, {topic: 1})
    producer = Producer({**stack_settings.kafka.confluent_config(), "acks": "all"})
    producer.produce(topic, key=b"k", value=b"still here")
    assert producer.flush(30) == 0

    kafka = KafkaService(stack_settings.stack)
    pid = kafka.status().pid
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not kafka.status().running, 30, "kafka to die")

    manager.up(stack_settings)
    assert kafka.status().running and kafka.status().pid != pid
    values = [m.value() for m in consume_all(stack_settings, topic, expect=1, timeout_s=60)]
    assert values == [b"still here"]


def processes_mentioning(text: str) -> list[tuple[int, str]]:
    """Every live process whose command line mentions `text` (here: a stack's data directory)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append((int(proc.name), cmdline[:200]))
    return found


def test_cli_up_status_down_of_a_second_stack_leaves_no_process(stack_settings):
    """A whole second stack (own data directory and ports, shared download cache) through the CLI."""
    data_dir = (stack_settings.stack.data_dir / f"it-down-{uuid.uuid4().hex[:8]}").resolve()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIELDSTREAM_")}
    env.update({
        "FIELDSTREAM_STACK_DATA_DIR": str(data_dir),
        "FIELDSTREAM_STACK_CACHE_DIR": str(stack_settings.stack.cache_dir.resolve()),
        "FIELDSTREAM_STACK_KAFKA_PORT": str(free_port()),
        "FIELDSTREAM_STACK_KAFKA_CONTROLLER_PORT": str(free_port()),
        "FIELDSTREAM_STACK_REGISTRY_PORT": str(free_port()),
        "FIELDSTREAM_STACK_POSTGRES_PORT": str(free_port()),
    })

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN / "fieldstream"), "stack", *args], env=env, capture_output=True,
                              text=True, timeout=600)

    try:
        up = cli("up")
        assert up.returncode == 0, up.stdout + up.stderr
        status = cli("status")
        assert status.returncode == 0, status.stdout + status.stderr
        rows = {line.split()[0]: line.split() for line in status.stdout.splitlines()[1:]}
        assert set(rows) == {"kafka", "registry", "postgres"} and all(r[1] == "up" for r in rows.values())
        major, minor, _ = (int(x) for x in rows["kafka"][-1].split("."))
        assert (major, minor) >= (3, 7)
        assert processes_mentioning(str(data_dir)), "the second stack's servers should be running"
    finally:
        down = cli("down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert "kafka" in down.stdout and "registry" in down.stdout and "postgres" in down.stdout
    assert processes_mentioning(str(data_dir)) == []
    after = cli("status")
    assert after.returncode == 1 and all(line.split()[1] == "down" for line in after.stdout.splitlines()[1:])
    shutil.rmtree(data_dir, ignore_errors=True)
