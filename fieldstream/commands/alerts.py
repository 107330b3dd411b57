"""`fieldstream alerts tail`: follow the alerts topic, filtered, as lines or JSON.

A tail is a reader, not a member of a processing group: each run joins a
fresh consumer group and commits nothing, so it never moves anyone's offsets.
"""

from __future__ import annotations

import fnmatch
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import click
from confluent_kafka import Consumer, KafkaError, KafkaException
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext, SerializationError

from fieldstream.commands.interrupt import stop_on_sigint
from fieldstream.config import load_settings
from fieldstream.errors import ConfigError
from fieldstream.schemas.files import ALERT_V1, schema_text

SEVERITIES = ("info", "warning", "critical")


@dataclass(frozen=True)
class AlertFilter:
    min_severity: str | None = None
    devices: tuple[str, ...] = ()  # glob patterns, e.g. sim-collar-*
    detectors: tuple[str, ...] = ()
    device_types: tuple[str, ...] = ()
    states: tuple[str, ...] = ()

    def matches(self, alert: dict[str, Any]) -> bool:
        if self.min_severity and SEVERITIES.index(alert["severity"]) < SEVERITIES.index(self.min_severity):
            return False
        if self.devices and not any(fnmatch.fnmatchcase(alert["device_id"], p) for p in self.devices):
            return False
        if self.detectors and alert["detector"] not in self.detectors:
            return False
        if self.device_types and alert["device_type"] not in self.device_types:
            return False
        return not self.states or alert["state"] in self.states


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def format_alert(alert: dict[str, Any]) -> str:
    """One readable line: time, state, severity, detector, device, metric and numbers, message."""
    t: datetime = alert["event_time"]
    numbers = f"{alert['metric']}={_num(alert.get('value'))} score={_num(alert.get('score'))}"
    if alert.get("threshold") is not None:
        numbers += f" threshold={_num(alert['threshold'])}"
    return (f"{t.isoformat(timespec='milliseconds')}  {alert['state'].upper():<8} {alert['severity']:<8} "
            f"{alert['detector']:<10} {alert['device_id']} ({alert['device_type']})  {numbers}  {alert['message']}")


def alert_json(alert: dict[str, Any]) -> str:
    return json.dumps({k: v.isoformat() if isinstance(v, datetime) else v for k, v in alert.items()})


@click.group()
def alerts() -> None:
    """Follow the anomaly alerts the detectors publish."""


@alerts.command()
@click.option("--severity", type=click.Choice(SEVERITIES), help="Only alerts at least this severe")
@click.option("--device", "devices", multiple=True, help="Only these devices (glob patterns; repeatable)")
@click.option("--detector", "detectors", multiple=True, help="Only these detectors (repeatable)")
@click.option("--device-type", "device_types", multiple=True, help="Only these device types (repeatable)")
@click.option("--state", "states", multiple=True, type=click.Choice(["open", "resolved"]),
              help="Only opening or resolving events (repeatable)")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line")
@click.option("--from-beginning", is_flag=True, help="Start at the oldest retained alert instead of new ones")
@click.option("--limit", type=click.IntRange(min=1), help="Exit after printing this many alerts")
@click.option("--idle-timeout", type=click.FloatRange(min=0), default=0.0,
              help="Exit after this many seconds without a message (0 = follow forever)")
@click.option("--topic", help="Topic to read (default: the alerts topic setting)")
def tail(severity: str | None, devices: tuple[str, ...], detectors: tuple[str, ...], device_types: tuple[str, ...],
         states: tuple[str, ...], as_json: bool, from_beginning: bool, limit: int | None, idle_timeout: float,
         topic: str | None) -> None:
    """Print alerts as they are published (Ctrl-C to stop)."""
    try:
        settings = load_settings()
    except ConfigError as e:
        raise click.ClickException(str(e)) from e
    topic = topic or settings.topics.alerts
    wanted = AlertFilter(severity, devices, detectors, device_types, states)
    deserialize = AvroDeserializer(SchemaRegistryClient(settings.registry.client_config()), schema_text(ALERT_V1))
    consumer = Consumer({
        **settings.kafka.confluent_config(),
        "group.id": f"fieldstream-alerts-tail-{uuid.uuid4().hex[:12]}",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest" if from_beginning else "latest",
    })
    out: Callable[[dict[str, Any]], str] = alert_json if as_json else format_alert
    printed = 0
    warned: set[str] = set()  # e.g. "topic not available yet" repeats on every metadata refresh
    last_message = time.monotonic()
    assigned = False

    def on_assign(consumer_: Consumer, partitions: list) -> None:
        # Idle time counts from when we can actually read: joining a group on a freshly
        # started broker can take longer than the idle timeout.
        nonlocal assigned, last_message
        if not assigned:
            where = "from the oldest retained alert" if from_beginning else "new alerts only"
            click.echo(f"following {topic} ({len(partitions)} partitions, {where}); Ctrl-C to stop", err=True)
        assigned, last_message = True, time.monotonic()

    consumer.subscribe([topic], on_assign=on_assign)
    try:
        with stop_on_sigint() as should_stop:
            while not should_stop() and (limit is None or printed < limit):
                msg = consumer.poll(0.5)
                if msg is None:
                    if idle_timeout and assigned and time.monotonic() - last_message >= idle_timeout:
                        break
                    continue
                last_message = time.monotonic()
                if msg.error():
                    if msg.error().fatal():
                        raise click.ClickException(f"consumer failed: {msg.error()}")
                    if msg.error().code() != KafkaError._PARTITION_EOF and str(msg.error()) not in warned:
                        warned.add(str(msg.error()))
                        click.echo(f"warning: {msg.error()}", err=True)
                    continue
                try:
                    alert = deserialize(msg.value(), SerializationContext(msg.topic(), MessageField.VALUE))
                except SerializationError as e:
                    click.echo(f"warning: undecodable alert at {msg.topic()}[{msg.partition()}]@{msg.offset()}: {e}",
                               err=True)
                    continue
                if alert is not None and wanted.matches(alert):
                    click.echo(out(alert))
                    printed += 1
    except KafkaException as e:
        raise click.ClickException(f"consumer failed: {e}") from e
    finally:
        consumer.close()
