"""Checking the Grafana dashboard's queries against what fieldstream really produces.

There is no Prometheus server to run PromQL against in tests, so a PromQL query is
checked by what it depends on: every metric name it references must be among the
samples a real worker's /metrics exposes (with its label matchers satisfied). SQL
queries are run for real, after expanding the Grafana macros they use.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]  # the repository (config/ is not part of the package)
DASHBOARD = ROOT / "config/grafana/dashboards/fieldstream.json"
DATASOURCES = ROOT / "config/grafana/provisioning/datasources/datasources.yml"

METRIC_NAME = re.compile(r"\b(fieldstream_[a-zA-Z0-9_]+)\b(\{[^}]*\})?")
EQUAL_MATCHER = re.compile(r'(\w+)\s*=\s*"([^"]*)"')
SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count"),
            "summary": ("", "_sum", "_count")}


@dataclass(frozen=True)
class Query:
    panel: str
    ref_id: str
    datasource_type: str | None
    datasource_uid: str | None
    kind: Literal["promql", "sql"]
    text: str
    format: str | None = None


@dataclass(frozen=True)
class MetricRef:
    name: str  # a sample name as exposed: fieldstream_x_total, fieldstream_y_bucket, ...
    labels: tuple[tuple[str, str], ...]  # only the `label="value"` matchers


@dataclass(frozen=True)
class Finding:
    query: Query
    ok: bool
    detail: str


def load(path: Path = DASHBOARD) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel that is not a row, including panels inside collapsed rows."""
    for p in dashboard.get("panels", []):
        if p.get("type") == "row":
            yield from p.get("panels", [])
        else:
            yield p


def queries(dashboard: dict[str, Any]) -> list[Query]:
    out = []
    for p in panels(dashboard):
        for t in p.get("targets", []):
            ds = t.get("datasource") or p.get("datasource") or {}
            if "expr" in t:
                out.append(Query(p["title"], t["refId"], ds.get("type"), ds.get("uid"), "promql", t["expr"]))
            elif "rawSql" in t:
                out.append(Query(p["title"], t["refId"], ds.get("type"), ds.get("uid"), "sql", t["rawSql"],
                                 t.get("format")))
    return out


def metric_refs(expr: str) -> list[MetricRef]:
    """The fieldstream metrics a PromQL expression reads, with their equality matchers."""
    refs = []
    for m in METRIC_NAME.finditer(expr):
        labels = tuple(sorted(EQUAL_MATCHER.findall(m.group(2) or "")))
        refs.append(MetricRef(m.group(1), labels))
    return refs


def declared_sample_names(module: Any = None) -> set[str]:
    """Every sample name the metrics declared in fieldstream.metrics can expose."""
    if module is None:
        from fieldstream import metrics as module
    names = set()
    for obj in vars(module).values():
        if isinstance(obj, MetricWrapperBase):
            family = obj.describe()[0]
            names.update(family.name + suffix for suffix in SUFFIXES[family.type])
    return names


def scraped_samples(exposition: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Sample name → [(labels, value)] from Prometheus text exposition."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(exposition):
        for s in family.samples:
            out.setdefault(s.name, []).append((dict(s.labels), s.value))
    return out


def check_metric(ref: MetricRef, samples: dict[str, list[tuple[dict[str, str], float]]]) -> str | None:
    """None when the scrape has data for `ref`, else why not.

    Counters, histogram counts and buckets must have moved (a value above 0): a series
    stuck at zero would draw a flat line and prove nothing. Gauges only need to exist.
    """
    found = [(labels, value) for labels, value in samples.get(ref.name, [])
             if all(labels.get(k) == v for k, v in ref.labels)]
    matcher = "{" + ",".join(f'{k}="{v}"' for k, v in ref.labels) + "}" if ref.labels else ""
    if not found:
        return f"no sample of {ref.name}{matcher}"
    if ref.name.endswith(("_total", "_count", "_bucket")) and not any(v > 0 for _, v in found):
        return f"{ref.name}{matcher} is still 0"
    return None


def check_promql(qs: Iterable[Query], exposition: str) -> list[Finding]:
    samples = scraped_samples(exposition)
    findings = []
    for q in qs:
        if q.kind != "promql":
            continue
        refs = metric_refs(q.text)
        problems = [p for p in (check_metric(r, samples) for r in refs) if p]
        if not refs:
            problems = ["references no fieldstream metric"]
        findings.append(Finding(q, not problems, "; ".join(problems) or ", ".join(sorted({r.name for r in refs}))))
    return findings


def expand_sql(sql: str, start: datetime, end: datetime, interval_ms: int = 60_000) -> str:
    """The SQL Grafana's PostgreSQL datasource would send for this time range.

    Only the macros the dashboard uses are known; any other `$__` macro is an error,
    so an unexpanded macro can never reach the database unnoticed.
    """
    def ts(t: datetime) -> str:
        return "'" + t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") + "'"

    text = re.sub(r"\$__timeFilter\(([^)]+)\)", lambda m: f"{m.group(1).strip()} BETWEEN {ts(start)} AND {ts(end)}",
                  sql)
    text = text.replace("$__timeFrom()", ts(start)).replace("$__timeTo()", ts(end))
    text = text.replace("$__interval_ms", str(interval_ms))
    left = re.findall(r"\$__\w+", text)
    if left:
        raise ValueError(f"unexpanded Grafana macro(s) {sorted(set(left))}")
    return text


async def check_sql(qs: Iterable[Query], conn: Any, start: datetime, end: datetime) -> list[Finding]:
    """Run every SQL query (an asyncpg connection) for the range; it must return rows."""
    findings = []
    for q in qs:
        if q.kind != "sql":
            continue
        try:
            rows = await conn.fetch(expand_sql(q.text, start, end))
        except Exception as e:  # noqa: BLE001 - a failing query is a finding, not a crash
            findings.append(Finding(q, False, f"{type(e).__name__}: {e}"))
            continue
        if not rows:
            findings.append(Finding(q, False, "no rows"))
        elif q.format == "time_series" and list(rows[0].keys())[0] != "time":
            findings.append(Finding(q, False, "a time series query must return a `time` column first"))
        else:
            findings.append(Finding(q, True, f"{len(rows)} rows, columns {', '.join(rows[0].keys())}"))
    return findings
