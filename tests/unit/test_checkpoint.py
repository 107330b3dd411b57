"""Gradual checkpoints of per-device state: what is stored, and which offsets are held meanwhile."""

from __future__ import annotations

import asyncio
import pickle
from types import SimpleNamespace

import pytest

from fieldstream.checkpoint import CheckpointedStates
from fieldstream.streams.tables import HELD_LIVE, ChangelogTable

TOPIC = "readings"


def states(steps: int = 2) -> tuple[CheckpointedStates[dict], dict[str, bytes]]:
    store: dict[str, bytes] = {}
    return CheckpointedStates(store, partitions=12, every_s=0.0, steps=steps), store


def bump(s: CheckpointedStates[dict], device_id: str, offset: int, partition: int = 0) -> None:
    state = s.get(device_id, lambda: {"n": 0})
    state["n"] += 1
    s.changed(device_id, TOPIC, partition, offset)


def stored(store: dict[str, bytes], device_id: str) -> dict:
    return pickle.loads(store[device_id])  # noqa: S301 - written by the test


def test_a_checkpoint_is_written_over_its_steps_and_holds_its_offsets_until_the_last() -> None:
    s, store = states(steps=2)
    for i, device in enumerate(["a", "b", "c", "d"]):
        bump(s, device, offset=10 + i)
    assert s.pending_low_offsets() == {(TOPIC, 0): 10}

    assert s.step() == 2  # half of the snapshot
    assert len(store) == 2
    assert s.pending_low_offsets() == {(TOPIC, 0): 10}, "released before the whole snapshot was written"

    bump(s, "e", offset=20)  # after the snapshot began: held by the next checkpoint
    assert s.step() == 2
    assert set(store) == {"a", "b", "c", "d"}
    assert s.pending_low_offsets() == {(TOPIC, 0): 20}

    assert s.step() == 1  # the next checkpoint: only what changed since
    assert set(store) == {"a", "b", "c", "d", "e"}
    assert s.pending_low_offsets() == {}


def test_a_state_about_to_change_is_stored_as_the_snapshot_saw_it() -> None:
    s, store = states(steps=4)
    for device in ["a", "b", "c", "d"]:
        bump(s, device, offset=1)
    s.step()  # snapshot taken, one state written
    unwritten = next(d for d in "abcd" if d not in store)

    bump(s, unwritten, offset=5)  # changes it before its slice: the snapshot's version goes first
    assert stored(store, unwritten) == {"n": 1}
    assert s.step() + s.step() == 2  # the rest of the snapshot, a slice of one each
    assert set(store) == {"a", "b", "c", "d"}
    assert stored(store, unwritten) == {"n": 1}, "the snapshot must not hold changes made after it began"
    assert s.pending_low_offsets() == {(TOPIC, 0): 5}
    assert s.step() == 1  # the next checkpoint
    assert stored(store, unwritten) == {"n": 2}


def test_looking_at_a_state_does_not_write_it() -> None:
    s, store = states(steps=4)
    for device in ["a", "b", "c", "d"]:
        bump(s, device, offset=1)
    s.step()
    before = dict(store)
    for device in "abcd":
        s.get(device, dict, will_change=False)
    assert store == before


def test_paused_no_checkpoint_and_forgotten_partitions_hold_nothing() -> None:
    s, store = states(steps=1)
    bump(s, "a", offset=3, partition=s.partition_of("a"))
    s.pause()
    assert s.step() == 0 and store == {}
    s.resume()
    s.forget_partitions({(TOPIC, s.partition_of("a"))})
    assert s.pending_low_offsets() == {}
    assert s.step() == 0 and store == {}


def test_a_full_checkpoint_writes_the_snapshot_under_way_and_the_changes_since() -> None:
    s, store = states(steps=4)
    for i, device in enumerate(["a", "b", "c", "d"]):
        bump(s, device, offset=i)
    s.step()
    bump(s, "e", offset=9)
    assert s.checkpoint() == 4  # three left of the snapshot, and e
    assert set(store) == {"a", "b", "c", "d", "e"}
    assert s.pending_low_offsets() == {}


class SlowStore(dict):
    """A store whose writes become durable only when the test says so (as changelog messages are
    once the broker acknowledges them), and which can lose some."""

    def __init__(self) -> None:
        super().__init__()
        self.sent = 0
        self.acked = 0
        self.lost: set[str] = set()

    def __setitem__(self, key: str, value: bytes) -> None:
        super().__setitem__(key, value)
        self.sent += 1

    def mark(self) -> int:
        return self.sent

    def reached(self, mark: int) -> bool:
        return self.acked >= mark

    def take_failed(self) -> set[str]:
        lost, self.lost = self.lost, set()
        return lost

    async def flush(self) -> None:
        self.acked = self.sent


def durable_states() -> tuple[CheckpointedStates[dict], SlowStore]:
    store = SlowStore()
    return CheckpointedStates(store, partitions=12, every_s=0.0, steps=1), store


def test_a_written_checkpoint_holds_its_offsets_until_the_store_has_made_it_durable() -> None:
    s, store = durable_states()
    bump(s, "a", offset=10)
    bump(s, "b", offset=11)
    assert s.step() == 2
    bump(s, "c", offset=12)  # the next checkpoint's
    assert s.pending_low_offsets() == {(TOPIC, 0): 10}, "released before the broker took the writes"
    store.acked = 1
    assert s.pending_low_offsets() == {(TOPIC, 0): 10}, "released with one of its two writes in flight"
    store.acked = 2
    assert s.pending_low_offsets() == {(TOPIC, 0): 12}
    assert s.step() == 1
    assert s.pending_low_offsets() == {(TOPIC, 0): 12}
    store.acked = 3
    assert s.pending_low_offsets() == {}


def test_a_lost_write_is_written_again_and_every_held_offset_waits_for_it() -> None:
    s, store = durable_states()
    bump(s, "a", offset=10)
    assert s.step() == 1
    bump(s, "b", offset=20)
    assert s.step() == 1
    store.acked = 2
    store.lost = {"a"}  # the broker never took a's state
    assert s.pending_low_offsets() == {(TOPIC, 0): 10}, "a lost write must not release what it covered"
    assert s.step() == 1  # the next checkpoint writes a again
    assert s.pending_low_offsets() == {(TOPIC, 0): 10}
    store.acked = 3
    assert s.pending_low_offsets() == {}
    assert stored(store, "a") == {"n": 1}


def test_a_clean_stop_releases_its_offsets_once_the_final_writes_are_durable() -> None:
    s, store = durable_states()
    bump(s, "a", offset=7, partition=3)
    assert s.checkpoint() == 1
    assert s.pending_low_offsets() == {(TOPIC, 3): 7}
    asyncio.run(s.flush())
    assert s.pending_low_offsets() == {}


class RecordingWriter:
    """The worker's changelog writer as the table sees it: what was sent, settled at once."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, int, bytes, bytes | None]] = []

    def send(self, topic: str, partition: int, key: bytes, value: bytes | None) -> None:
        self.sent.append((topic, partition, key, value))

    def mark(self) -> int:
        return len(self.sent)

    def reached(self, mark: int) -> bool:
        return True

    def take_failed(self, topic: str) -> set[bytes]:
        return set()


class LocalTable:
    """A Faust table's parts ChangelogTable uses: its name, changelog topic and local store."""

    name = "window-state"

    def __init__(self) -> None:
        self.data: dict[bytes, object] = {}
        self.changelog_topic = SimpleNamespace(get_topic_name=lambda: "window-state-changelog")


def changelog_states() -> tuple[CheckpointedStates[dict], LocalTable, RecordingWriter]:
    table, writer = LocalTable(), RecordingWriter()
    store = ChangelogTable(table, writer, partitions=12)  # type: ignore[arg-type]
    return CheckpointedStates(store, partitions=12, every_s=0.0), table, writer


def test_a_changelog_table_keeps_no_copy_of_the_states_held_live() -> None:
    s, table, writer = changelog_states()
    table.data[b"a"] = pickle.dumps({"n": 5})  # restored by Faust's recovery
    bump(s, "a", offset=1)  # loaded: the stage holds it now
    bump(s, "b", offset=2)  # new
    assert table.data[b"a"] is HELD_LIVE
    s.checkpoint()
    assert {key: pickle.loads(value) for _, _, key, value in writer.sent} == {b"a": {"n": 6}, b"b": {"n": 1}}
    assert table.data == {b"a": HELD_LIVE, b"b": HELD_LIVE}
    assert sorted(s.devices(set(range(12)))) == ["a", "b"]


def test_states_of_revoked_partitions_leave_memory_and_come_back_from_the_changelog() -> None:
    s, table, writer = changelog_states()
    bump(s, "a", offset=1)
    s.checkpoint()
    bump(s, "a", offset=2)  # changed after its last checkpoint: offset 2 stays uncommitted
    sent = len(writer.sent)
    s.forget_partitions({(TOPIC, s.partition_of("a"))})
    assert len(writer.sent) == sent  # nothing written: the partition is no longer ours to write
    assert b"a" not in table.data
    assert s.devices(set(range(12))) == []
    _, _, key, checkpointed = writer.sent[-1]
    table.data[key] = checkpointed  # the partition comes back: Faust's recovery reads the changelog
    again = CheckpointedStates(s.store, partitions=12, every_s=0.0)
    assert again.get("a", dict) == {"n": 1}  # as checkpointed; the reading at offset 2 is read again
    assert table.data[b"a"] is HELD_LIVE


def test_a_deleted_state_held_live_is_tombstoned() -> None:
    s, table, writer = changelog_states()
    bump(s, "a", offset=1)
    s.checkpoint()
    s.delete("a")
    assert writer.sent[-1][2:] == (b"a", None)
    assert b"a" not in table.data


def test_a_state_neither_held_live_nor_in_the_table_is_an_error_not_a_fresh_start() -> None:
    s, table, _ = changelog_states()
    bump(s, "a", offset=1)
    s.checkpoint()
    lost = CheckpointedStates(s.store, partitions=12, every_s=0.0)  # does not hold "a"
    with pytest.raises(LookupError, match="'a'"):
        lost.get("a", dict)
