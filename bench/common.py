"""Shared by the benchmark scripts: machine and version facts, tables, appending to BENCHMARKS.md,
reading a topic's message count, and a child process's CPU and peak memory.

The scripts import it as a sibling module (`sys.path.insert(0, <bench dir>)`; bench/ is not a package).
"""

from __future__ import annotations

import asyncio
import os
import platform
import resource
import shlex
import signal
import socket
import sys
import threading
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "docs" / "BENCHMARKS.md"
PACKAGES = ("faust-streaming", "aiokafka", "confluent-kafka", "fastavro", "quixstreams", "pyarrow", "asyncpg",
            "river")


# -- machine and versions ----------------------------------------------------------
def _proc_value(path: str, key: str) -> str | None:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def machine_facts() -> dict[str, str]:
    """Cores, CPU model, memory (from /proc) and the load average when asked (the machine may be shared)."""
    mem_kb = int((_proc_value("/proc/meminfo", "MemTotal") or "0 kB").split()[0])
    cpu = _proc_value("/proc/cpuinfo", "model name") or platform.processor() or "unknown CPU"
    load = " / ".join(f"{v:.2f}" for v in os.getloadavg())
    return {
        "cores": str(os.cpu_count()),
        "cpu": cpu,
        "memory": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "load": load,
        "kernel": platform.release(),
    }


#: Quix Streams pins confluent-kafka < 2.13, older than fieldstream's, so it lives in a virtualenv of its own.
# Quix Streams pins other confluent-kafka/pydantic versions: it gets a virtualenv of its own (make bench).
QUIX_PYTHON = str(ROOT / ".venv-quix" / "bin" / "python")


def quix_versions(python: str = QUIX_PYTHON) -> dict[str, str]:
    """quixstreams' version as installed for `python` (with the confluent-kafka and fastavro it runs on)."""
    import subprocess

    code = ("import importlib.metadata as m; "
            "print(m.version('quixstreams'), m.version('confluent-kafka'), m.version('fastavro'))")
    try:
        out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60, check=True)
        quix, ck, fa = out.stdout.split()
    except (OSError, subprocess.SubprocessError, ValueError):
        return {"quixstreams": "not installed"}
    if python == sys.executable:
        return {"quixstreams": quix}
    return {"quixstreams": f"{quix} (own venv: confluent-kafka {ck}, fastavro {fa})"}


def package_versions(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Python and the benchmarked libraries as installed in this interpreter (quixstreams from its own
    virtualenv when it is not installed here); `extra` adds or overrides."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    if out.get("quixstreams") == "not installed" and "quixstreams" not in (extra or {}) \
            and os.path.exists(QUIX_PYTHON):
        out.update(quix_versions(QUIX_PYTHON))
    out.update(extra or {})
    return out


def kafka_version() -> str:
    """The local stack's Kafka release (what `fieldstream stack` downloads and runs)."""
    try:
        from fieldstream.config import load_settings

        return load_settings().stack.kafka_version
    except Exception:  # noqa: BLE001 - facts for a report, never a reason to fail
        return "3.9.1"


async def pg_server_version_async(database: str | None = None) -> str:
    import asyncpg

    from fieldstream.config import load_settings

    conn = await asyncpg.connect(**load_settings().pg.connect_kwargs(database=database), timeout=5)
    try:
        version = await conn.fetchval("SHOW server_version")
        timescale = await conn.fetchval("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
    finally:
        await conn.close()
    return f"{version}" + (f" + TimescaleDB {timescale}" if timescale else " (no TimescaleDB)")


def pg_server_version() -> str:
    """SHOW server_version of the configured PostgreSQL; works with or without a running event loop."""
    result: list[str] = []

    def run() -> None:
        try:
            result.append(asyncio.run(pg_server_version_async()))
        except Exception as e:  # noqa: BLE001
            result.append(f"unknown ({type(e).__name__})")

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(15)
    return result[0] if result else "unknown (timeout)"


def machine_summary(pg_version: str | None = None, extra_versions: dict[str, str] | None = None) -> str:
    """One paragraph for a BENCHMARKS.md section: machine, load, every version that matters."""
    m = machine_facts()
    v = package_versions(extra_versions)
    libs = ", ".join(f"{k} {val}" for k, val in v.items() if k != "python")
    return (f"{m['cores']} cores ({m['cpu']}), {m['memory']} RAM, Linux {m['kernel']}, load average "
            f"{m['load']} at the end of the run; Python {v['python']}, Kafka {kafka_version()} (KRaft, local), "
            f"PostgreSQL {pg_version or pg_server_version()}; {libs}")


def command_line() -> str:
    """The exact command this process was started with."""
    return shlex.join([sys.executable, *sys.argv])


# -- output ----------------------------------------------------------------------------
def markdown_table(headers: list[str], rows: list[list[str]], align: str | None = None) -> str:
    """A GitHub table; `align` is one letter per column (l, r, c), default left."""
    marks = {"l": "---", "r": "---:", "c": ":---:"}
    sep = [marks[a] for a in (align or "l" * len(headers))]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(sep) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt_int(x: float) -> str:
    return f"{x:,.0f}"


def fmt(x: float | None, digits: int = 2) -> str:
    return "–" if x is None else f"{x:,.{digits}f}"


def append_section(title: str, command: str, machine: str, body: str) -> None:
    """Append `## title (date)` with the machine paragraph, the exact command and `body` to docs/BENCHMARKS.md."""
    BENCHMARKS.parent.mkdir(exist_ok=True)
    if not BENCHMARKS.exists():
        BENCHMARKS.write_text("# Benchmarks\n\nSections below are in the order they were run, each with its date, "
                              "machine, versions and command.\n")
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    with BENCHMARKS.open("a") as out:
        out.write(f"\n## {title} ({stamp})\n\nMachine: {machine}\n\nCommand: `{command}`\n\n{body}\n")


def record(title: str, body: str, *, pg_version: str | None = None,
           extra_versions: dict[str, str] | None = None) -> None:
    """append_section with this process's command line and the full machine summary."""
    append_section(title, command_line(), machine_summary(pg_version, extra_versions), body)
    print(f"appended '{title}' to {BENCHMARKS}")


# -- Kafka -------------------------------------------------------------------------------
def topic_offsets(topic: str, timeout_s: float = 10) -> dict[int, tuple[int, int]]:
    """partition → (low, high) watermark of `topic`."""
    from confluent_kafka import Consumer, TopicPartition

    from fieldstream.config import load_settings

    conf = load_settings().kafka.confluent_config() | {"group.id": "fieldstream-bench-watermarks",
                                                       "enable.auto.commit": False}
    consumer = Consumer(conf)
    try:
        md = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
        if md is None or md.error is not None or not md.partitions:
            raise SystemExit(f"topic {topic!r} does not exist (preload it with bench/preload.py)")
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
                for p in sorted(md.partitions)}
    finally:
        consumer.close()


def topic_message_count(topic: str, timeout_s: float = 10) -> int:
    """Messages currently in `topic` (sum of high - low watermarks over its partitions)."""
    return sum(high - low for low, high in topic_offsets(topic, timeout_s).values())


def delete_topics(names: list[str], timeout_s: float = 30) -> None:
    from confluent_kafka.admin import AdminClient

    from fieldstream.config import load_settings

    admin = AdminClient(load_settings().kafka.confluent_config())
    for name, future in admin.delete_topics(names, operation_timeout=timeout_s).items():
        try:
            future.result()
        except Exception as e:  # noqa: BLE001
            print(f"could not delete topic {name}: {e}", file=sys.stderr)


def delete_topics_starting(*prefixes: str) -> list[str]:
    """Delete every topic whose name starts with one of `prefixes` (a run's outputs and changelogs)."""
    from confluent_kafka.admin import AdminClient

    from fieldstream.config import load_settings

    admin = AdminClient(load_settings().kafka.confluent_config())
    names = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefixes)]
    if names:
        delete_topics(names)
    return names


def delete_consumer_groups(groups: list[str], timeout_s: float = 30, quiet: bool = False) -> list[str]:
    """Delete consumer groups; returns those that could not be deleted (a group whose member exited
    without leaving stays non-empty until its session times out). Unknown groups count as deleted."""
    from confluent_kafka.admin import AdminClient

    from fieldstream.config import load_settings

    if not groups:
        return []
    admin = AdminClient(load_settings().kafka.confluent_config())
    failed = []
    for group, future in admin.delete_consumer_groups(groups, request_timeout=timeout_s).items():
        try:
            future.result()
        except Exception as e:  # noqa: BLE001
            if "GROUP_ID_NOT_FOUND" not in str(e):
                failed.append(group)
                if not quiet:
                    print(f"could not delete consumer group {group}: {e}", file=sys.stderr)
    return failed


# -- process resources -------------------------------------------------------------------
def exit_on_sigterm() -> None:
    """SIGTERM (a `timeout`, a CI stop) unwinds like Ctrl-C: the `finally` blocks stop the workers
    a run started (in their own sessions, they would outlive it and go on using the CPU)."""
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))


def free_port() -> int:
    """A port free now: bench workers' web ports, so two runs side by side do not collide."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def self_cpu_s() -> float:
    """User + system CPU seconds of this process, all threads."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def self_peak_rss_mb() -> float:
    """Peak resident set size of this process (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
