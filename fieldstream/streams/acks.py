"""Hold Faust messages until every part that buffers their effects has made them durable.

Faust commits an offset when the message's reference count drops to zero.
take_events() drops one reference after each batch. The ingest agent takes
one more for every message when its batch is taken (`pin`), so a cancelled or
failed batch is never committed by take_events, and registers the messages it
is about to process (`hold`) only once it holds the batch lock: a batch still
waiting for the lock when the worker stops is never acked by the final release. The messages are acked
(`release`) once the buffering parts (Parquet files, window and detector
checkpoints) report their partition durable past the message's offset; the
agent never releases while a batch is in flight, since its offsets are not
yet covered by what the buffering parts report.

Contiguity. faust-streaming 0.15 can drop records fetched for a partition
while a rebalance suspends the flow, mark them read, and later commit past
them (seen in the scaling test: readings in neither sink nor the dead-letter
topic, offsets committed). So the gate also checks that each partition's
offsets arrive without holes: the newest contiguous message of a partition
is never released (its successor has not been seen yet), and a hole makes
the gate ask for a seek back to its start, so the skipped records are read
again before anything past them is committed.

Seeking back. Records fetched before the seek are still queued in Faust's
stream, ahead of the ones read again; they are skipped (pinned, never acked:
they come again, in order, after the seek) until the first record read again
arrives. Faust drops records below its own read offset, so a stale record
that its fetcher delivers after the seek can also swallow the ones read again:
when a rewind sees no record for `REWIND_PATIENCE_S`, it asks for the seek
again. Before this, every stale record looked like a new hole and asked for a
new seek, which kept a partition re-reading for minutes under load.

Silent partitions. A hole is only revealed by a later record. When Faust drops
every record it fetched of a partition (seen after restarts: a partition with
no committed offset, the consumer's position at the end of the log, nothing
delivered, nothing ever committed), no record comes. So a partition that has
records we have not seen (highwater past the next expected offset) and has shown
nothing while the agent took several batches or sat idle is `quiet`: the agent
asks the consumer where it is, and seeks back if its position is past what
reached the stream. Silence does not count while Faust itself holds fetched
records back (a commit flushing its producer buffer, or that buffer over its
limit): those records are late, not lost.

A partition newly ours starts at its committed offset, not at the consumer's
position: records fetched and then dropped during the rebalance have already
moved the position past them, and nothing would reveal the hole.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass

from faust.types import TP, AppT, EventT
from faust.types.tuples import Message

log = logging.getLogger(__name__)

# How long a rewind may see nothing of its partition before it asks for the seek again; also
# how long a partition with unseen records may stay silent before its position is checked.
REWIND_PATIENCE_S = 3.0
# Batches the agent may take without a record of a partition that has unseen records.
QUIET_BATCHES = 3


@dataclass
class Rewind:
    """A partition being read again from `to` (its first missing offset)."""

    to: int
    sought: bool  # the consumer was sent back; False: the agent has yet to seek
    seen_at: float  # when a record (or the seek) last showed the partition alive


class AckGate:
    def __init__(self, app: AppT, batch_max: int | None = None) -> None:
        self.app = app
        self.batch_max = batch_max  # a batch this full means a backlog (records queue in Faust)
        self._backlogged = False  # the last batch taken was full
        self._held: dict[TP, deque[Message]] = {}
        self._expected: dict[TP, int] = {}  # next offset a contiguous stream would bring
        self._rewinds: dict[TP, Rewind] = {}
        self._unconfirmed: set[TP] = set()  # newly ours, start offset not yet known: release nothing
        self._batches = 0  # batches taken so far
        self._last_batch_at = time.monotonic()
        self._seen: dict[TP, tuple[float, int]] = {}  # when a record of the partition last arrived, batch number
        self._behind_since: dict[TP, float] = {}  # when quiet() first saw records of it not yet arrived
        self._held_back_at = float("-inf")  # when Faust last held fetched records back from the stream

    @property
    def holes(self) -> dict[TP, int]:
        """Partitions to seek back now: their first missing offset."""
        return {tp: r.to for tp, r in self._rewinds.items() if not r.sought}

    def overdue(self, now: float | None = None) -> dict[TP, int]:
        """Rewinds that have seen nothing for REWIND_PATIENCE_S: to seek back again."""
        now = time.monotonic() if now is None else now
        return {tp: r.to for tp, r in self._rewinds.items() if r.sought and now - r.seen_at > REWIND_PATIENCE_S}

    def quiet(self, now: float | None = None) -> dict[TP, int]:
        """Partitions with records not seen yet that have stayed silent: {partition: next expected offset}."""
        now = time.monotonic() if now is None else now
        if self._backlogged:
            # Thousands of records queue in Faust between the consumer and the agent, and a
            # partition can go unseen for many batches: its position proves nothing then.
            return {}
        # Silence only counts while Faust lets records through (see faust_holds_records_back).
        flowing_since = self._held_back_at
        idle = now - max(self._last_batch_at, flowing_since) > REWIND_PATIENCE_S
        found: dict[TP, int] = {}
        for tp, expected in self._expected.items():
            if tp in self._rewinds or tp in self._unconfirmed:
                continue
            if self._highwater(tp) <= expected:
                self._behind_since.pop(tp, None)
                continue
            # Silent since the later of its last record and the first sign of records to come
            # (counting from the assignment would flag the first records of an idle partition).
            behind_since = self._behind_since.setdefault(tp, now)
            seen_at, batch = self._seen.get(tp, (now, self._batches))
            if now - max(seen_at, behind_since, flowing_since) > REWIND_PATIENCE_S \
                    and (idle or self._batches - batch >= QUIET_BATCHES):
                found[tp] = expected
        return found

    def held_back(self, now: float | None = None) -> None:
        """Faust is holding fetched records back (flushing its producer): none is silent meanwhile."""
        self._held_back_at = time.monotonic() if now is None else now

    def processed(self, now: float | None = None) -> None:
        """The agent finished a batch: idleness counts from here (a batch can take seconds)."""
        self._last_batch_at = time.monotonic() if now is None else now

    def checked(self, tp: TP) -> None:
        """The partition's position was checked: give it another spell before the next check."""
        self._seen[tp] = (time.monotonic(), self._batches)

    def pin(self, events: list[EventT]) -> None:
        """Take a reference on every message as its batch is taken, so take_events can never ack it
        (it acks a batch even when its processing is cancelled or never starts). Only `release`
        acks, and only messages `hold` kept; the rest (strays, stale records, a batch a stopping
        worker never processed) are never acked by us."""
        for event in events:
            event.message.incref()
        self._backlogged = self.batch_max is not None and len(events) >= self.batch_max

    def hold(self, events: list[EventT]) -> list[EventT]:
        """Pinned messages about to be processed: returns those to process (stale ones are not)."""
        kept: list[EventT] = []
        now = time.monotonic()
        self._batches += 1
        self._last_batch_at = now
        seen = (now, self._batches)
        for event in events:
            message = event.message
            tp, offset = message.tp, message.offset
            self._seen[tp] = seen
            rewind = self._rewinds.get(tp)
            if rewind is not None:
                if rewind.sought and offset == rewind.to:
                    del self._rewinds[tp]  # read again from here: what was fetched before the seek is behind us
                elif offset >= rewind.to:
                    rewind.seen_at = now
                    continue  # fetched before the seek: pinned, never acked; it comes again in order
            expected = self._expected.get(tp)
            if expected is not None and offset > expected:
                self._hole(tp, expected, offset)
                continue  # past the hole: it comes again after the seek
            if expected is None or offset == expected:
                self._expected[tp] = offset + 1
            # offset < expected: read again after a seek; acked like any other, and the sinks and
            # stages take what they already have only once.
            self._held.setdefault(tp, deque()).append(message)
            kept.append(event)
        return kept

    @property
    def unconfirmed(self) -> set[TP]:
        """Partitions whose start offset is not known yet (a lookup failed or was cancelled)."""
        return set(self._unconfirmed)

    def expect_start(self, tps: set[TP]) -> None:
        """Partitions newly ours: nothing of them is released until `starts_at` says where they begin."""
        self._unconfirmed |= tps
        for tp in tps:
            self.checked(tp)

    def starts_at(self, tp: TP, offset: int | None) -> None:
        """A partition newly ours is read from `offset` (the committed one).

        Records may already be held (the agent runs while the offset is looked up):
        if the first of them is past `offset`, the records between never reached the
        stream and are read again. None (the offset could not be read) trusts the
        first record.
        """
        self._unconfirmed.discard(tp)
        if offset is None:
            return
        queue = self._held.get(tp)
        if not queue and tp not in self._expected:
            self._expected[tp] = offset
            return
        first = queue[0].offset if queue else self._expected[tp]
        if first > offset and tp not in self._rewinds:
            self._hole(tp, offset, first)

    def _hole(self, tp: TP, missing_from: int, seen: int) -> None:
        """Offsets missing_from..seen-1 never reached the stream: the agent is to seek back."""
        log.error("ingest: offsets %d..%d of %s[%d] never reached the stream; reading them again "
                  "before committing past %d", missing_from, seen - 1, tp.topic, tp.partition, missing_from - 1)
        self._rewinds[tp] = Rewind(missing_from, sought=False, seen_at=time.monotonic())

    def rewound(self, tp: TP, offset: int) -> None:
        """The consumer was sent back to `offset`: records before the first read again are stale."""
        self._rewinds[tp] = Rewind(offset, sought=True, seen_at=time.monotonic())
        self._expected[tp] = offset
        self.checked(tp)

    def drop(self, events: list[EventT]) -> None:
        """A batch that will not be processed here: never ack it; the next owner reads it again."""
        dropped = {id(e.message) for e in events}
        for tp in {e.message.tp for e in events}:
            queue = self._held.get(tp)
            if queue:
                self._held[tp] = deque(m for m in queue if id(m) not in dropped)

    def release(self, pending_low: dict[tuple[str, int], int], final: bool = False) -> int:
        """Ack held messages below each partition's lowest pending offset; returns how many.

        Only messages whose successor was seen (offset < expected - 1) go, unless `final`
        (a clean stop) or the partition's newest message is the last one in the log (no
        later record can reveal a hole). Nothing goes at or past a hole.
        """
        released = 0
        for tp, queue in self._held.items():
            if tp in self._unconfirmed:
                continue
            low = pending_low.get((tp.topic, tp.partition))
            expected = self._expected.get(tp, 0)
            at_end = final or self._highwater(tp) <= expected
            limit = expected - (0 if at_end else 1)
            rewind = self._rewinds.get(tp)
            if rewind is not None:
                limit = min(limit, rewind.to - 1)
            if low is not None:
                limit = min(limit, low)
            while queue and queue[0].offset < limit:
                queue.popleft().ack(self.app.consumer)
                released += 1
        return released

    def _highwater(self, tp: TP) -> int:
        try:
            return self.app.consumer.highwater(tp) or 0
        except Exception:  # noqa: BLE001 - unknown yet: assume more is coming
            return 1 << 62

    def forget(self, tps: set[TP]) -> None:
        """Partitions taken from this worker: their messages must never be acked by us."""
        for tp in tps:
            self._held.pop(tp, None)
            self._expected.pop(tp, None)
            self._rewinds.pop(tp, None)
            self._seen.pop(tp, None)
            self._behind_since.pop(tp, None)
            self._unconfirmed.discard(tp)

    @property
    def held(self) -> int:
        return sum(len(q) for q in self._held.values())


async def committed_starts(app: AppT, tps: set[TP]) -> dict[TP, int]:
    """Where the consumer starts each partition: its committed offset, or the log's start when
    nothing is committed or the log no longer holds that offset (auto_offset_reset=earliest)."""
    if not tps:
        return {}
    consumer = app.consumer
    thread = consumer._thread  # type: ignore[attr-defined]  # aiokafka runs on Faust's consumer thread
    aiokafka_consumer = thread._ensure_consumer()
    earliest = await consumer.earliest_offsets(*tps)
    starts: dict[TP, int] = {}
    for tp in tps:
        # A remote call each: aiokafka does not cache committed offsets.
        committed = await thread.call_thread(aiokafka_consumer.committed, tp)
        starts[tp] = max(committed or 0, earliest.get(tp, 0))
    return starts
