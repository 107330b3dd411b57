"""The ack gate and the ownership fence: which held messages may be committed, and when."""

import asyncio
import time
from dataclasses import dataclass, field

from faust.types import TP

from fieldstream.streams.acks import QUIET_BATCHES, REWIND_PATIENCE_S, AckGate, committed_starts
from fieldstream.streams.ownership import Ownership

P0 = TP("readings", 0)
P1 = TP("readings", 1)


@dataclass
class FakeMessage:
    tp: TP
    offset: int
    refs: int = 0
    acked: bool = False

    def incref(self) -> None:
        self.refs += 1

    def ack(self, consumer: object) -> None:
        self.acked = True


@dataclass
class FakeEvent:
    message: FakeMessage


@dataclass
class FakeConsumer:
    highwaters: dict = field(default_factory=dict)

    def highwater(self, tp: TP) -> int:
        return self.highwaters[tp]


@dataclass
class FakeApp:
    consumer: FakeConsumer


def events(tp: TP, offsets) -> list[FakeEvent]:
    return [FakeEvent(FakeMessage(tp, o)) for o in offsets]


def acked(batch) -> list[int]:
    return [e.message.offset for e in batch if e.message.acked]


def take(g: AckGate, batch: list) -> list:
    """What the agent does with a batch it processes: pin it when taken, hold it under the lock."""
    g.pin(batch)
    return g.hold(batch)


def gate(highwater: int = 1000) -> AckGate:
    return AckGate(FakeApp(FakeConsumer({P0: highwater, P1: highwater})))


def test_held_messages_go_below_the_lowest_pending_offset_and_keep_the_newest():
    g = gate()
    batch = events(P0, range(10))
    take(g, batch)
    assert g.release({("readings", 0): 5}) == 5
    assert acked(batch) == [0, 1, 2, 3, 4]
    g.release({})
    assert acked(batch) == list(range(9))  # 9 waits for its successor: a hole after it would show there


def test_the_newest_message_goes_once_the_partition_is_caught_up():
    g = gate(highwater=10)
    batch = events(P0, range(10))
    take(g, batch)
    g.release({})
    assert acked(batch) == list(range(10))


def test_a_hole_holds_everything_from_it_and_asks_for_a_seek_back():
    g = gate()
    first, later = events(P0, range(5)), events(P0, range(8, 12))
    assert take(g, first) == first
    assert take(g, later) == []  # past the hole: not processed now, read again after the seek
    assert g.holes == {P0: 5}
    g.release({})
    assert acked(first) == [0, 1, 2, 3] and acked(later) == []
    g.rewound(P0, 5)
    assert g.holes == {}
    again = events(P0, range(5, 13))  # the skipped records, then 8..11 again, then 12
    assert take(g, again) == again
    g.release({})
    assert acked(again) == list(range(5, 12))
    assert acked(later) == [] and all(e.message.refs == 1 for e in later)  # pinned: never acked by anyone


def test_records_fetched_before_the_seek_are_skipped_until_the_re_read_arrives():
    g = gate()
    take(g, events(P0, range(5)))
    take(g, events(P0, range(8, 10)))  # hole at 5
    g.rewound(P0, 5)
    stale = events(P0, range(10, 300))  # queued in Faust's stream before the seek
    assert take(g, stale) == []
    assert g.holes == {}  # no new seek for each stale record
    again = events(P0, range(5, 12))
    assert take(g, again) == again
    g.release({})
    assert acked(again) == list(range(5, 11)) and acked(stale) == []
    later = events(P0, range(14, 16))  # a hole after the re-read is a new one
    assert take(g, later) == [] and g.holes == {P0: 12}


def test_a_rewind_that_sees_nothing_asks_for_the_seek_again():
    g = gate()
    take(g, events(P0, range(5)))
    take(g, events(P0, range(8, 10)))
    g.rewound(P0, 5)
    now = time.monotonic()
    assert g.overdue(now) == {}
    assert g.overdue(now + REWIND_PATIENCE_S + 1) == {P0: 5}  # the re-read was swallowed: seek again
    take(g, events(P0, [5]))
    assert g.overdue(now + REWIND_PATIENCE_S + 1) == {}


def test_a_new_partition_releases_nothing_until_its_start_is_known():
    g = gate()
    g.expect_start({P0})
    batch = events(P0, range(20, 30))
    take(g, batch)
    assert g.release({}) == 0
    g.starts_at(P0, 20)
    g.release({})
    assert acked(batch) == list(range(20, 29))


def test_records_skipped_before_the_first_one_seen_are_read_again():
    g = gate()
    g.expect_start({P0})
    batch = events(P0, range(25, 30))  # the committed offset is 20: 20..24 never reached the stream
    take(g, batch)
    g.starts_at(P0, 20)
    assert g.holes == {P0: 20}
    g.release({})
    assert acked(batch) == []


def test_a_partition_with_unseen_records_that_stays_silent_is_quiet():
    g = gate(highwater=1000)
    g.app.consumer.highwaters[P1] = QUIET_BATCHES  # P1 is read to its end
    take(g, events(P0, range(5)))
    later = time.monotonic() + REWIND_PATIENCE_S + 1
    assert g.quiet(time.monotonic()) == {}
    for i in range(QUIET_BATCHES):
        take(g, events(P1, [i]))  # the agent keeps taking batches, none with P0
    assert g.quiet(later) == {P0: 5}  # its records were fetched and dropped, or are coming: ask the consumer
    g.checked(P0)
    assert g.quiet(time.monotonic()) == {}


def test_an_idle_agent_makes_a_silent_partition_quiet_but_not_one_at_its_end():
    g = gate(highwater=5)
    take(g, events(P0, range(5)))
    assert g.quiet(time.monotonic() + REWIND_PATIENCE_S + 1) == {}  # nothing more in the log
    g.app.consumer.highwaters[P0] = 9
    now = time.monotonic() + REWIND_PATIENCE_S + 1
    assert g.quiet(now) == {}  # records just appeared: they may be on their way
    assert g.quiet(now + REWIND_PATIENCE_S + 1) == {P0: 5}


def test_the_first_records_of_a_partition_idle_since_its_assignment_are_given_time_to_arrive():
    g = gate(highwater=0)
    g.expect_start({P0})
    g.starts_at(P0, 0)
    assigned_long_ago = time.monotonic() + 60
    assert g.quiet(assigned_long_ago) == {}
    g.app.consumer.highwaters[P0] = 30  # the first records are fetched, not yet in a batch
    assert g.quiet(assigned_long_ago + 1) == {}
    assert g.quiet(assigned_long_ago + 1 + REWIND_PATIENCE_S + 1) == {P0: 0}  # still nothing: ask the consumer


def test_a_start_never_confirmed_stays_listed_for_another_lookup():
    g = gate()
    g.expect_start({P0, P1})
    g.starts_at(P1, 0)
    assert g.unconfirmed == {P0}  # its lookup was cancelled: the next assignment looks it up again


@dataclass
class FakeAiokafkaConsumer:
    committed_offsets: dict

    async def committed(self, tp: TP) -> int | None:
        return self.committed_offsets.get(tp)


@dataclass
class FakeConsumerThread:
    aiokafka_consumer: FakeAiokafkaConsumer

    def _ensure_consumer(self) -> FakeAiokafkaConsumer:
        return self.aiokafka_consumer

    async def call_thread(self, fn, *args):
        return await fn(*args)


@dataclass
class FakeThreadedConsumer:
    _thread: FakeConsumerThread
    earliest: dict

    async def earliest_offsets(self, *tps: TP) -> dict:
        return {tp: self.earliest[tp] for tp in tps}


def test_a_partition_starts_at_its_committed_offset_or_the_log_start():
    P2 = TP("readings", 2)
    consumer = FakeThreadedConsumer(FakeConsumerThread(FakeAiokafkaConsumer({P0: 120, P1: 5})),
                                    earliest={P0: 100, P1: 40, P2: 7})
    starts = asyncio.run(committed_starts(FakeApp(consumer), {P0, P1, P2}))
    # P1's committed offset left the log (retention): the consumer resets to the log start;
    # P2 has none: it reads from the start.
    assert starts == {P0: 120, P1: 40, P2: 7}
    assert asyncio.run(committed_starts(FakeApp(consumer), set())) == {}


def test_a_batch_taken_but_never_processed_is_not_acked_by_the_final_release():
    g = gate()
    done = events(P0, range(5))
    take(g, done)
    waiting = events(P0, range(5, 10))  # taken, then the worker stopped while it waited for the lock
    g.pin(waiting)
    g.release({}, final=True)
    assert acked(done) == list(range(5)) and acked(waiting) == []


def test_a_forgotten_partition_is_never_acked():
    g = gate()
    batch = events(P0, range(5)) + events(P1, range(5))
    take(g, batch)
    g.forget({P0})
    g.release({})
    assert acked(batch) == [0, 1, 2, 3]
    assert all(e.message.tp == P1 for e in batch if e.message.acked)


def test_pinned_strays_are_never_acked_by_anyone():
    g = gate()
    strays = events(P0, range(3))
    g.pin(strays)
    g.release({}, final=True)
    assert acked(strays) == [] and all(e.message.refs == 1 for e in strays)


def test_a_batch_keeps_only_partitions_owned_since_it_was_taken():
    async def scenario() -> None:
        owner = Ownership([asyncio.Lock()])
        owner.assigned({P0, P1})
        taken_in = owner.generation
        batch = events(P0, [1]) + events(P1, [1])
        await owner.block()  # rebalance: P1 moves away and comes back within the wait
        owner.assigned({P0})
        owner.assigned({P0, P1})
        owned, strays = owner.split(batch, taken_in)
        assert [e.message.tp for e in owned] == [P0]
        assert [e.message.tp for e in strays] == [P1]

    asyncio.run(scenario())


def test_a_revocation_waits_for_work_in_flight_and_blocks_new_work_until_assigned():
    async def scenario() -> None:
        batch_lock, stage_lock = asyncio.Lock(), asyncio.Lock()
        owner = Ownership([batch_lock, stage_lock])
        order: list[str] = []

        async def work(lock: asyncio.Lock, what: str, seconds: float) -> None:
            async with lock:
                await asyncio.sleep(seconds)
                order.append(what)

        running = [asyncio.create_task(work(batch_lock, "batch done", 0.05)),
                   asyncio.create_task(work(stage_lock, "timer done", 0.1))]
        await asyncio.sleep(0)
        await owner.block()
        order.append("revoked")
        await owner.block()  # revoked again before an assignment: no second wait
        assert batch_lock.locked() and stage_lock.locked()
        late = asyncio.create_task(work(batch_lock, "next batch", 0))
        await asyncio.sleep(0.05)
        assert "next batch" not in order  # nothing starts during the rebalance
        owner.assigned({P0})
        await asyncio.gather(*running, late)
        assert order == ["batch done", "timer done", "revoked", "next batch"]

    asyncio.run(scenario())


def test_a_stopping_worker_lets_go_of_a_rebalance_in_progress():
    async def scenario() -> None:
        lock = asyncio.Lock()
        owner = Ownership([lock])
        await owner.block()
        owner.unblock()
        assert not lock.locked()
        owner.assigned({P0})  # the assignment that follows releases nothing twice
        assert not lock.locked()

    asyncio.run(scenario())



def test_no_partition_is_quiet_while_full_batches_show_a_backlog_queued_in_faust():
    g = AckGate(FakeApp(FakeConsumer({P0: 1000, P1: 1000})), batch_max=3)
    take(g, events(P0, range(5)))
    for i in range(QUIET_BATCHES):
        take(g, events(P1, [3 * i, 3 * i + 1, 3 * i + 2]))  # full batches, none with P0
    assert g.quiet(time.monotonic() + 1) == {}  # P0's next records wait in Faust's queue
    take(g, events(P1, [9]))  # the backlog is gone: a partial batch
    for i in range(QUIET_BATCHES):
        take(g, events(P1, [10 + i]))
        g.processed()
    g.app.consumer.highwaters[P1] = 13  # P1 is read to its end
    now = time.monotonic() + REWIND_PATIENCE_S + 1
    assert g.quiet(now) == {}  # from here P0 has records that do not come
    assert g.quiet(now + REWIND_PATIENCE_S + 1) == {P0: 5}


def test_a_long_batch_does_not_count_as_idleness():
    g = gate(highwater=1000)
    g.app.consumer.highwaters[P1] = 5
    take(g, events(P0, range(5)))
    take(g, events(P1, range(5)))  # P0 unseen in one batch only
    start = time.monotonic()
    g.quiet(start)  # P0 has records still to come
    # The batch took 2 x REWIND_PATIENCE_S to process: the agent was busy, not idle.
    g.processed(start + 2 * REWIND_PATIENCE_S)
    assert g.quiet(start + 2 * REWIND_PATIENCE_S + 1) == {}
    assert g.quiet(start + 3 * REWIND_PATIENCE_S + 2) == {P0: 5}  # then idle for real


def test_silence_while_faust_holds_records_back_does_not_count():
    g = gate(highwater=1000)
    take(g, events(P0, range(5)))
    start = time.monotonic()
    for second in range(1, 25):  # a commit flushing the producer: nothing reaches the stream
        g.held_back(start + second)
        assert g.quiet(start + second) == {}
    resumed = start + 24
    assert g.quiet(resumed + REWIND_PATIENCE_S - 0.5) == {}  # records are on their way again
    assert g.quiet(resumed + REWIND_PATIENCE_S + 1) == {P0: 5}  # still nothing since: ask the consumer
