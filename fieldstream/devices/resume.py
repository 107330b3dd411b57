"""What makes a backfill resumable: the durable resume point, the delivery watermark, the rejects file.

The resume point only ever covers rows that are finished: delivered (per the
producer's delivery reports) or written to the rejects file and fsynced. Rows
finish out of order (partitions deliver independently), so the watermark is
the length of the prefix of rows that are all finished.
"""

from __future__ import annotations

import json
import os
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from fieldstream.errors import ConfigError

STATE_VERSION = 1


@dataclass
class FileProgress:
    path: str
    done: int = 0  # rows finished from the start of the file
    complete: bool = False


@dataclass
class ResumeState:
    mapping_sha256: str
    topic: str
    files: list[FileProgress]
    shift_s: float | None = None  # the timestamp shift the first run chose; a resume must reuse it
    version: int = STATE_VERSION

    @classmethod
    def load(cls, path: Path) -> ResumeState | None:
        if not path.exists():
            return None
        try:
            raw = json.loads(path.read_text())
            files = [FileProgress(**f) for f in raw.pop("files")]
            state = cls(files=files, **raw)
        except (ValueError, TypeError, KeyError) as e:
            raise ConfigError(f"{path}: not a backfill resume file ({e}); delete it to start over") from e
        if state.version != STATE_VERSION:
            raise ConfigError(f"{path}: resume file version {state.version}, expected {STATE_VERSION}")
        return state

    def check_matches(self, path: Path, mapping_sha256: str, topic: str, files: list[str]) -> None:
        """A resume point belongs to one set of inputs, one mapping and one topic."""
        if self.mapping_sha256 != mapping_sha256:
            raise ConfigError(f"{path} was written with a different mapping; delete it to start over")
        if self.topic != topic:
            raise ConfigError(f"{path} was written for topic {self.topic!r}, not {topic!r}")
        if [f.path for f in self.files] != files:
            raise ConfigError(f"{path} was written for other input files (in order: "
                              f"{', '.join(f.path for f in self.files)})")

    def save(self, path: Path) -> None:
        """Atomically: a crash leaves the old point or the new one, never half of one."""
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("w") as f:
            json.dump(asdict(self), f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


class Watermark:
    """Rows numbered from `start` finish in any order; `done` is where the all-finished prefix ends."""

    def __init__(self, start: int = 0) -> None:
        self.done = start
        self._ahead: set[int] = set()

    def finish(self, row: int) -> None:
        if row < self.done:
            return
        self._ahead.add(row)
        while self.done in self._ahead:
            self._ahead.remove(self.done)
            self.done += 1


@dataclass
class InFlight:
    """Rows sent and not yet reported, per device, in send order.

    Delivery reports come back in send order per partition, and one device's
    readings all go to one partition (the key), so the first row waiting for a
    device is the one its report is about.
    """

    waiting: dict[str, deque[int]] = field(default_factory=dict)
    count: int = 0

    def sent(self, device_id: str, row: int) -> None:
        self.waiting.setdefault(device_id, deque()).append(row)
        self.count += 1

    def unsent(self, device_id: str) -> None:
        """Take back the last row `sent` for a device (its send failed before reaching the producer)."""
        queue = self.waiting[device_id]
        queue.pop()
        self.count -= 1
        if not queue:
            del self.waiting[device_id]

    def reported(self, device_id: str) -> int:
        queue = self.waiting.get(device_id)
        if not queue:
            raise RuntimeError(f"a delivery report for {device_id!r}, which has nothing in flight")
        self.count -= 1
        row = queue.popleft()
        if not queue:
            del self.waiting[device_id]
        return row


class RejectsFile:
    """Rejected rows, one JSON object per line: file, line, row, reason, message, values.

    When resuming it appends, skipping rows an earlier run already wrote, so
    each rejected row appears once even if that run stopped before saving its
    resume point.
    """

    def __init__(self, path: Path, *, append: bool) -> None:
        self.path = path
        self.written: set[tuple[str, int]] = set()
        if append and path.exists():
            with path.open() as f:
                for line in f:
                    try:
                        entry = json.loads(line)
                        self.written.add((entry["file"], int(entry["row"])))
                    except (ValueError, KeyError, TypeError):
                        continue  # a line torn by a crash: the row will be written again
        path.parent.mkdir(parents=True, exist_ok=True)
        torn = append and path.exists() and path.stat().st_size > 0 and not _ends_with_newline(path)
        self._f: TextIO = path.open("a" if append else "w")
        if torn:
            self._f.write("\n")
        self.count = 0

    def write(self, file: str, row: int, line: int | None, reason: str, message: str,
              values: dict[str, Any] | None) -> None:
        if (file, row) in self.written:
            return
        entry = {"file": file, "line": line, "row": row, "reason": reason, "message": message, "values": values}
        self._f.write(json.dumps(entry, default=str) + "\n")
        self.written.add((file, row))
        self.count += 1

    def sync(self) -> None:
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        if not self._f.closed:
            self.sync()
            self._f.close()
