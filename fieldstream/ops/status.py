"""What `fieldstream status` reports, as plain data: one collector per service.

Every section is collected on its own (in parallel, each with a short timeout), and
a service that cannot be reached turns into a `Problem` naming it, not an exception,
so one broken service never hides what the others say.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypeVar

from fieldstream.config import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

CountMethod = Literal["exact", "reltuples", "approximate_row_count", "missing"]


@dataclass(frozen=True)
class PartitionLag:
    partition: int
    committed: int | None  # None: the group has committed nothing for this partition yet
    low: int
    high: int
    lag: int  # high - committed; without a commit, high - low (the worker starts at the earliest offset)
    owner: str | None  # "client_id@host" of the member holding it; None while unassigned


@dataclass(frozen=True)
class GroupMember:
    member_id: str
    client_id: str
    host: str
    partitions: list[int]  # of the readings topic
    other_partitions: int  # of other topics (Faust's own, e.g. the assignor's leader topic)

    @property
    def name(self) -> str:
        return f"{self.client_id}@{self.host}"


@dataclass(frozen=True)
class GroupState:
    group: str
    topic: str
    state: str
    members: list[GroupMember]
    partitions: list[PartitionLag]

    @property
    def total_lag(self) -> int:
        return sum(p.lag for p in self.partitions)


@dataclass(frozen=True)
class Subject:
    name: str
    versions: list[int]


@dataclass(frozen=True)
class TableRows:
    table: str
    rows: int | None  # None: missing, or never analysed when only an estimate was possible
    method: CountMethod


@dataclass(frozen=True)
class LakeState:
    path: str
    files: int
    bytes: int
    newest: str | None
    newest_modified: datetime | None


@dataclass(frozen=True)
class Problem:
    service: str  # "Kafka", "schema registry", "PostgreSQL", "Parquet lake"
    address: str
    message: str

    def __str__(self) -> str:
        return f"{self.service} at {self.address}: {self.message}"


@dataclass
class Status:
    configured_topics: list[str]
    group: GroupState | None = None
    topics: dict[str, int] | None = None
    subjects: list[Subject] | None = None  # fieldstream's own, or every subject with all_subjects
    other_subjects: int = 0  # subjects left out (their versions were not fetched)
    tables: list[TableRows] | None = None
    lake: LakeState | None = None
    problems: dict[str, Problem] = field(default_factory=dict)  # section → what went wrong

    @property
    def unreachable(self) -> list[str]:
        return sorted({p.service for p in self.problems.values()})

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["problems"] = {section: {**dataclasses.asdict(p), "text": str(p)} for section, p in self.problems.items()}
        out["unreachable"] = self.unreachable
        if self.group is not None:
            out["group"]["total_lag"] = self.group.total_lag
        return out


def ours(subject: str, topics: list[str]) -> bool:
    """A subject of one of our topics: `<topic>-value` or a record subject `<topic>-<record name>`."""
    return any(subject.startswith(f"{t}-") for t in topics)


def collect(settings: Settings, timeout_s: float = 5.0, count_timeout_s: float = 2.0,
            all_subjects: bool = False) -> Status:
    """Ask every service at once; each answer or failure lands in its own section."""
    from fieldstream.ops import kafka_state, store_state  # here: they import this module's dataclasses
    from fieldstream.ops.redact import mask_url

    t = settings.topics
    status = Status(configured_topics=[t.readings, t.windows, t.alerts, t.dlq, t.late])
    kafka_at = settings.kafka.bootstrap_servers
    pg_at = f"{settings.pg.host}:{settings.pg.port}/{settings.pg.database}"
    jobs: dict[str, tuple[str, str, Callable[[], Any]]] = {
        "group": ("Kafka", kafka_at, lambda: kafka_state.group_state(settings, timeout_s)),
        "topics": ("Kafka", kafka_at, lambda: kafka_state.topics(settings, timeout_s)),
        "subjects": ("schema registry", mask_url(settings.registry.url),
                     lambda: store_state.subjects(settings, timeout_s,
                                                  None if all_subjects else status.configured_topics)),
        "tables": ("PostgreSQL", pg_at, lambda: store_state.table_rows(settings, timeout_s, count_timeout_s)),
        "lake": ("Parquet lake", mask_url(settings.parquet.path), lambda: store_state.lake_state(settings)),
    }
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = {name: pool.submit(_guarded, *job) for name, job in jobs.items()}
        for name, future in futures.items():
            value, problem = future.result()
            if problem is not None:
                status.problems[name] = problem
            elif name == "subjects":
                status.subjects, status.other_subjects = value
            else:
                setattr(status, name, value)
    return status


def _guarded(service: str, address: str, fn: Callable[[], T]) -> tuple[T | None, Problem | None]:
    try:
        return fn(), None
    except Exception as e:  # noqa: BLE001 - any failure of one service is reported, not raised
        log.debug("status: %s at %s failed", service, address, exc_info=True)
        return None, Problem(service, address, describe_error(e))


def describe_error(e: BaseException) -> str:
    """One line for people: the library's own message, without a traceback."""
    from confluent_kafka import KafkaError, KafkaException

    if isinstance(e, KafkaException) and e.args and isinstance(e.args[0], KafkaError):
        return f"unreachable or refused: {e.args[0].str()}"
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
