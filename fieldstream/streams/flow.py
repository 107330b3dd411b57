"""What the timers need to know about the stream: owned partitions, and since when it flows freely."""

from __future__ import annotations

import time
from datetime import UTC, datetime


class FlowTracker:
    """Silence only counts while we keep up: a rebalance, a backlog or a sink pause resets the clock."""

    def __init__(self, topic: str, batch_max: int, slow_batch_s: float = 5.0) -> None:
        self.topic = topic
        self.batch_max = batch_max
        self.slow_batch_s = slow_batch_s
        self.started = False  # an assignment has been received (it may be empty: more workers than partitions)
        self.rebalancing = False  # between a revocation and the next assignment
        # Set when the worker stops: timers and new batches must not touch sinks that are closing.
        self.stopping = False
        self._owned: set[int] = set()
        self._since = datetime.now(UTC)

    def revoked(self) -> None:
        self.rebalancing = True

    def assigned(self, partitions: set[int]) -> None:
        self._owned = set(partitions)
        self.started = True
        self.rebalancing = False
        self._since = datetime.now(UTC)

    @property
    def has_assignment(self) -> bool:
        """Joined the group and not in the middle of a rebalance: what /ready reports."""
        return self.started and not self.rebalancing

    def owned_partitions(self) -> set[int]:
        return self._owned

    def batch_done(self, size: int, started_monotonic: float) -> None:
        """A full batch means a backlog; a slow one means a pause (e.g. a sink outage)."""
        if size >= self.batch_max or time.monotonic() - started_monotonic > self.slow_batch_s:
            self._since = datetime.now(UTC)

    def flowing_since(self) -> datetime:
        return self._since
