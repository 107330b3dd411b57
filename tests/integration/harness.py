"""Helpers for integration tests: unique names, settings for them, worker processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fieldstream.config.settings import Settings, _load

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Scenario:
    """One test's own topics, consumer group, lake directory and device-id prefix."""

    tmp: Path
    partitions: int = 4
    name: str = field(default_factory=lambda: f"it-{uuid.uuid4().hex[:10]}")

    @property
    def env(self) -> dict[str, str]:
        return {
            "FIELDSTREAM_TOPIC_READINGS": f"{self.name}.readings",
            "FIELDSTREAM_TOPIC_WINDOWS": f"{self.name}.windows",
            "FIELDSTREAM_TOPIC_ALERTS": f"{self.name}.alerts",
            "FIELDSTREAM_TOPIC_DLQ": f"{self.name}.dlq",
            "FIELDSTREAM_TOPIC_LATE": f"{self.name}.late",
            "FIELDSTREAM_TOPIC_PARTITIONS": str(self.partitions),
            "FIELDSTREAM_WORKER_APP_ID": self.name,
            "FIELDSTREAM_WORKER_DATA_DIR": str(self.tmp / "worker"),
            "FIELDSTREAM_PARQUET_PATH": str(self.tmp / "lake"),
            "FIELDSTREAM_PARQUET_ROLL_AGE_S": "2",
            "FIELDSTREAM_WORKER_BATCH_WITHIN_S": "0.2",
            # Tests wait for commits, which wait for the checkpoint: short, and still in two steps.
            "FIELDSTREAM_WINDOW_CHECKPOINT_S": "4",
        }

    def settings(self) -> Settings:
        saved = {k: os.environ.get(k) for k in self.env}
        os.environ.update(self.env)
        try:
            return _load()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


# Faust's own setting (read from the environment by Faust): a SIGKILLed member's partitions
# move after this many seconds instead of the default 60, to keep kill tests short.
FAST_FAILOVER_ENV = {"BROKER_SESSION_TIMEOUT": "15"}


class Worker:
    """A real `fieldstream worker` process."""

    def __init__(self, scenario: Scenario, label: str = "w1", extra_env: dict[str, str] | None = None) -> None:
        self.scenario = scenario
        self.port = free_port()
        self.log = scenario.tmp / f"worker-{label}.log"
        env = {**os.environ, **scenario.env, "FIELDSTREAM_WORKER_WEB_PORT": str(self.port), **(extra_env or {})}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [str(BIN / "fieldstream"), "worker", "-l", "info", "--web-port", str(self.port)],
                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
            )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout_s: float = 60) -> int:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def kill(self) -> None:
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def wait_for(check: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.5,
             workers: list[Worker] | None = None) -> None:
    """Poll `check`; fail at the timeout, or at once (with its log) if a worker died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        for w in workers or []:
            if not w.alive():
                raise AssertionError(f"worker exited with {w.proc.returncode} while waiting for {what}:\n"
                                     + w.log_text()[-3000:])
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")


def consume_all(settings: Settings, topic: str, expect: int, timeout_s: float = 30) -> list:
    """Every message of `topic` from the beginning; stops at `expect` messages or the timeout."""
    from confluent_kafka import Consumer

    consumer = Consumer({**settings.kafka.confluent_config(), "group.id": f"reader-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    messages = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and len(messages) < expect:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            messages.append(msg)
        # A little longer, to catch messages beyond what was expected.
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            msg = consumer.poll(0.2)
            if msg is not None and not msg.error():
                messages.append(msg)
    finally:
        consumer.close()
    return messages


def scrape_metrics(port: int, timeout_s: float = 5) -> list:
    """Every sample a worker's /metrics endpoint exports right now."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout_s) as resp:  # noqa: S310
        text = resp.read().decode()
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def metric_total(port: int, name: str, **labels: str) -> float:
    """The sum of the samples called `name` (e.g. fieldstream_duplicates_total) that carry `labels`."""
    return sum(s.value for s in scrape_metrics(port)
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    """Partition → high watermark (the offset the next message would get) of `topic`."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({**settings.kafka.confluent_config(), "group.id": f"offsets-{uuid.uuid4().hex}"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
    finally:
        consumer.close()


def committed_offsets(settings: Settings, group: str, topic: str) -> dict[int, int]:
    """Partition → offset the consumer group `group` (a worker's app id) has committed on `topic` (-1: none)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({**settings.kafka.confluent_config(), "group.id": group, "enable.auto.commit": False})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        committed = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
        return {tp.partition: tp.offset for tp in committed}
    finally:
        consumer.close()  # never subscribed: leaves the group's membership alone
