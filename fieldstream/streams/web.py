"""The worker's web endpoints: /metrics (Prometheus), /health (alive), /ready."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import faust
from aiokafka.errors import IllegalStateError
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from fieldstream import metrics

Readiness = Callable[[], dict[str, bool]]


def attach_web(app: faust.App, readiness: Readiness) -> None:
    @app.page("/metrics")
    async def metrics_view(self: View, request: Request) -> Response:
        # aiohttp wants the charset out of content_type; Prometheus text is ASCII anyway.
        return self.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/health")
    async def health_view(self: View, request: Request) -> Response:
        return self.json({"status": "alive"})

    @app.page("/ready")
    async def ready_view(self: View, request: Request) -> Response:
        checks = readiness()
        ready = all(checks.values())
        return self.json({"ready": ready, **checks}, status=200 if ready else 503)


def attach_lag_gauge(app: faust.App, topic: str, interval_s: float = 5.0) -> None:
    """Consumer lag per assigned partition: the partition's end minus our position."""

    @app.timer(interval=interval_s)
    async def measure_lag() -> None:
        await update_lag(app.consumer, topic)


async def update_lag(consumer: Any, topic: str) -> None:
    for tp in consumer.assignment():
        if tp.topic != topic:
            continue
        try:
            position = await consumer.position(tp)
            highwater = consumer.highwater(tp)
        except (IllegalStateError, AssertionError):  # revoked by a rebalance since assignment() listed it
            continue  # (aiokafka raises the one for position, asserts for highwater)
        if position is not None and highwater is not None:
            metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(max(0, highwater - position))
