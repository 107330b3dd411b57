"""`fieldstream status` as text tables (the JSON form is Status.to_dict)."""

from __future__ import annotations

from collections.abc import Iterable

from fieldstream.ops.status import Status, ours
from fieldstream.schemas.files import subject_for

METHOD_NOTE = {
    "exact": "exact",
    "reltuples": "estimate (pg_class.reltuples: the exact count took too long)",
    "approximate_row_count": "estimate (timescaledb approximate_row_count: the exact count took too long)",
    "missing": "missing: run `fieldstream db migrate` (the worker also creates it at start)",
}


def ranges(numbers: Iterable[int]) -> str:
    """[0, 1, 2, 5, 7, 8] → "0-2,5,7-8"."""
    out: list[str] = []
    run: list[int] = []
    for n in sorted(numbers):
        if run and n == run[-1] + 1:
            run.append(n)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [n]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(out) or "-"


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def render(status: Status, show_all: bool = False) -> str:
    lines: list[str] = []
    _group(status, lines)
    _topics(status, lines, show_all)
    _subjects(status, lines, show_all)
    _tables(status, lines)
    _lake(status, lines)
    lines.append("")
    if status.problems:
        lines.append(f"unreachable: {', '.join(status.unreachable)} (details above)")
    else:
        lines.append("every service answered")
    return "\n".join(lines)


def _problem(status: Status, section: str, lines: list[str]) -> bool:
    if section in status.problems:
        lines.append(f"  not available: {status.problems[section]}")
        return True
    return False


def _group(status: Status, lines: list[str]) -> None:
    g = status.group
    lines.append("consumer group" + (f" {g.group} on {g.topic}" if g else ""))
    if _problem(status, "group", lines) or g is None:
        return
    lines.append(f"  state {g.state}, {len(g.members)} member(s), total lag {g.total_lag}")
    if not g.partitions:
        lines.append(f"  topic {g.topic} does not exist (run `fieldstream topics create`)")
    else:
        lines.append(f"  {'partition':>9} {'committed':>12} {'start':>12} {'end':>12} {'lag':>10}  member")
        for p in g.partitions:
            committed = "-" if p.committed is None else str(p.committed)
            lines.append(f"  {p.partition:>9} {committed:>12} {p.low:>12} {p.high:>12} {p.lag:>10}  "
                         f"{p.owner or '(unassigned)'}")
    if g.members:
        lines.append(f"  {'member':<44} {'host':<18} partitions of {g.topic}")
        for m in g.members:
            others = f" (+{m.other_partitions} of other topics)" if m.other_partitions else ""
            lines.append(f"  {m.member_id[:44]:<44} {m.host:<18} {ranges(m.partitions)}{others}")
    else:
        lines.append("  no worker is in the group right now")


def _topics(status: Status, lines: list[str], show_all: bool) -> None:
    lines.append("")
    lines.append("topics (partitions)")
    if _problem(status, "topics", lines) or status.topics is None:
        return
    for name in status.configured_topics:
        have = status.topics.get(name)
        lines.append(f"  {name:<48} {have if have is not None else 'missing (run `fieldstream topics create`)'}")
    others = sorted(set(status.topics) - set(status.configured_topics))
    if show_all:
        lines.extend(f"  {name:<48} {status.topics[name]}" for name in others)
    elif others:
        lines.append(f"  ... and {len(others)} other topic(s) (--all lists them)")


def _subjects(status: Status, lines: list[str], show_all: bool) -> None:
    lines.append("")
    lines.append("schema registry subjects (versions)")
    if _problem(status, "subjects", lines) or status.subjects is None:
        return
    value_subjects = {subject_for(t) for t in status.configured_topics}
    shown = [s for s in status.subjects if show_all or ours(s.name, status.configured_topics)]
    for s in shown:
        lines.append(f"  {s.name:<48} {', '.join(map(str, s.versions))}")
    if not any(s.name in value_subjects for s in status.subjects):
        lines.append("  none for fieldstream's topics (run `fieldstream schemas register`)")
    hidden = len(status.subjects) - len(shown) + status.other_subjects
    if hidden:
        lines.append(f"  ... and {hidden} other subject(s) (--all lists them)")


def _tables(status: Status, lines: list[str]) -> None:
    lines.append("")
    lines.append("PostgreSQL tables (rows)")
    if _problem(status, "tables", lines) or status.tables is None:
        return
    for t in status.tables:
        rows = "-" if t.rows is None else (f"~{t.rows}" if t.method != "exact" else str(t.rows))
        lines.append(f"  {t.table:<32} {rows:>14}  {METHOD_NOTE[t.method]}")


def _lake(status: Status, lines: list[str]) -> None:
    lines.append("")
    lake = status.lake
    lines.append("Parquet lake" + (f" {lake.path}" if lake else ""))
    if _problem(status, "lake", lines) or lake is None:
        return
    if not lake.files:
        lines.append("  no files yet")
        return
    when = lake.newest_modified.isoformat(timespec="seconds") if lake.newest_modified else "?"
    lines.append(f"  {lake.files} file(s), {human_bytes(lake.bytes)}; newest {lake.newest} (modified {when})")
