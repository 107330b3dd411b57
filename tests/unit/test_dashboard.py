"""The provisioned Grafana dashboard: valid JSON, provisioned datasources, declared metrics only."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import yaml

from fieldstream.ops import dashboard

DASH = dashboard.load()
QUERIES = dashboard.queries(DASH)


def provisioned() -> dict[str, str]:
    doc = yaml.safe_load(dashboard.DATASOURCES.read_text())
    return {ds["uid"]: ds["type"] for ds in doc["datasources"]}


def test_dashboard_is_provisioned_from_where_compose_mounts_it():
    providers = yaml.safe_load((dashboard.ROOT / "config/grafana/provisioning/dashboards/dashboards.yml").read_text())
    assert providers["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    compose = yaml.safe_load((dashboard.ROOT / "docker-compose.yml").read_text())
    assert "./config/grafana/dashboards:/var/lib/grafana/dashboards:ro" in compose["services"]["grafana"]["volumes"]
    assert DASH["uid"] == "fieldstream" and DASH["title"]


def test_every_panel_and_query_uses_a_provisioned_datasource():
    sources = provisioned()
    assert set(sources) >= {"prometheus", "timescaledb"}
    for panel in dashboard.panels(DASH):
        ds = panel["datasource"]
        assert ds["uid"] in sources, panel["title"]
        assert ds["type"] == sources[ds["uid"]], panel["title"]
        assert panel["targets"], panel["title"]
    for q in QUERIES:
        assert q.datasource_uid in sources, (q.panel, q.ref_id)
        assert q.kind == ("promql" if sources[q.datasource_uid] == "prometheus" else "sql"), (q.panel, q.ref_id)


def test_panels_are_unique_and_laid_out():
    titles = [p["title"] for p in dashboard.panels(DASH)]
    assert len(titles) == len(set(titles))
    ids = [p["id"] for p in DASH["panels"]]
    assert len(ids) == len(set(ids))
    for p in DASH["panels"]:
        pos = p["gridPos"]
        assert 0 <= pos["x"] and pos["x"] + pos["w"] <= 24 and pos["h"] > 0, p["title"]


@pytest.mark.parametrize("query", [q for q in QUERIES if q.kind == "promql"], ids=lambda q: f"{q.panel}/{q.ref_id}")
def test_every_referenced_metric_is_declared_in_metrics_py(query):
    declared = dashboard.declared_sample_names()
    refs = dashboard.metric_refs(query.text)
    assert refs, "a PromQL panel must read a fieldstream metric"
    for ref in refs:
        assert ref.name in declared, f"{ref.name} is not declared in fieldstream/metrics.py"


def test_the_panels_the_operators_asked_for_are_there():
    read = {ref.name for q in QUERIES if q.kind == "promql" for ref in dashboard.metric_refs(q.text)}
    assert read >= {
        "fieldstream_readings_in_total", "fieldstream_readings_out_total", "fieldstream_consumer_lag",
        "fieldstream_end_to_end_latency_seconds_bucket", "fieldstream_dead_letters_total",
        "fieldstream_alerts_total", "fieldstream_sink_flush_seconds_bucket", "fieldstream_sink_errors_total",
        "fieldstream_sink_retries_total", "fieldstream_assigned_partitions",
    }
    latency = " ".join(q.text for q in QUERIES if "end_to_end" in q.text)
    assert all(f"histogram_quantile({p}" in latency for p in ("0.50", "0.95", "0.99"))
    sql = " ".join(q.text for q in QUERIES if q.kind == "sql")
    assert "FROM readings" in sql and "devices" in sql


def test_metric_names_with_matchers_are_extracted():
    refs = dashboard.metric_refs('sum by (detector) (increase(fieldstream_alerts_total{state="open"}[5m])) '
                                 '/ on() fieldstream_readings_in_total')
    assert [(r.name, r.labels) for r in refs] == [
        ("fieldstream_alerts_total", (("state", "open"),)), ("fieldstream_readings_in_total", ())]


def test_scraped_samples_are_checked_for_data():
    text = (
        "# TYPE fieldstream_readings_in_total counter\nfieldstream_readings_in_total 5.0\n"
        "# TYPE fieldstream_alerts_total counter\n"
        "# TYPE fieldstream_consumer_lag gauge\nfieldstream_consumer_lag{topic=\"t\",partition=\"0\"} 0.0\n"
        "# TYPE fieldstream_dead_letters_total counter\nfieldstream_dead_letters_total{stage=\"decode\"} 0.0\n"
    )
    samples = dashboard.scraped_samples(text)
    check = dashboard.check_metric
    assert check(dashboard.MetricRef("fieldstream_readings_in_total", ()), samples) is None
    assert check(dashboard.MetricRef("fieldstream_consumer_lag", ()), samples) is None  # a gauge at 0 is data
    assert "no sample" in check(dashboard.MetricRef("fieldstream_alerts_total", ()), samples)
    assert "still 0" in check(dashboard.MetricRef("fieldstream_dead_letters_total", (("stage", "decode"),)), samples)
    assert "no sample" in check(dashboard.MetricRef("fieldstream_dead_letters_total", (("stage", "sink"),)), samples)


def test_sql_macros_expand_to_what_grafana_sends_and_nothing_is_left():
    start, end = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), datetime(2026, 1, 2, 4, 4, 5, tzinfo=UTC)
    text = dashboard.expand_sql("SELECT $__interval_ms WHERE $__timeFilter(r.event_time)", start, end, 30_000)
    assert text == "SELECT 30000 WHERE r.event_time BETWEEN '2026-01-02T03:04:05Z' AND '2026-01-02T04:04:05Z'"
    for q in QUERIES:
        if q.kind == "sql":
            assert "$__" not in dashboard.expand_sql(q.text, start, end)
    with pytest.raises(ValueError, match="__timeGroup"):
        dashboard.expand_sql("SELECT $__timeGroup(t, '1m')", start, end)
