"""Every Prometheus metric fieldstream exports, declared once, with fixed label sets."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

READINGS_IN = Counter("fieldstream_readings_in_total", "Records taken from the readings topic")
READINGS_OUT = Counter("fieldstream_readings_out_total", "Valid readings made durable in every sink")
DECODE_FAILURES = Counter("fieldstream_decode_failures_total", "Records that could not be decoded", ["reason"])
VALIDATION_FAILURES = Counter("fieldstream_validation_failures_total", "Readings that broke a rule", ["reason"])
DEAD_LETTERS = Counter("fieldstream_dead_letters_total", "Records sent to the dead-letter topic", ["stage"])
DUPLICATES = Counter("fieldstream_duplicates_total", "Readings dropped as duplicate (device_id, seq)")
LATE_READINGS = Counter("fieldstream_late_readings_total", "Readings too late for their window", ["metric"])
WINDOW_CLOSES = Counter("fieldstream_window_closes_total", "Final window aggregates published", ["window"])
WINDOWS_WAITING = Gauge("fieldstream_windows_waiting_devices",
                        "Devices with closed windows the timer has not emitted yet")
ALERTS = Counter("fieldstream_alerts_total", "Alert events published", ["detector", "severity", "state"])
SINK_BATCH_SIZE = Histogram(
    "fieldstream_sink_batch_size", "Readings per sink write", ["sink"],
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10000, 50000),
)
SINK_FLUSH_SECONDS = Histogram(
    "fieldstream_sink_flush_seconds", "Time to make one batch durable", ["sink"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
SINK_ERRORS = Counter("fieldstream_sink_errors_total", "Sink failures", ["sink", "kind"])
SINK_RETRIES = Counter("fieldstream_sink_retries_total", "Sink writes retried after a transient failure", ["sink"])
SINK_CONNECTED = Gauge("fieldstream_sink_connected", "1 when the sink's backend is reachable", ["sink"])
CONSUMER_LAG = Gauge("fieldstream_consumer_lag", "Records behind the partition's end", ["topic", "partition"])
END_TO_END_SECONDS = Histogram(
    "fieldstream_end_to_end_latency_seconds", "Reading event time to durable in the sinks",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 3600),
)
STATE_WRITES = Counter("fieldstream_state_writes_total", "Per-device states sent to their changelog", ["table"])
REBALANCES = Counter("fieldstream_rebalances_total", "Consumer group rebalances seen by this worker")
PARQUET_BUFFERED_BYTES = Gauge("fieldstream_parquet_buffered_bytes",
                               "Estimated in-memory bytes of readings waiting for their Parquet file")
ASSIGNED_PARTITIONS = Gauge("fieldstream_assigned_partitions", "Partitions of the readings topic held")
DETECTOR_SECONDS = Counter("fieldstream_detector_seconds_total", "CPU time spent in detectors", ["detector"])
DETECTOR_READINGS = Counter("fieldstream_detector_readings_total", "Readings scored by detectors", ["detector"])
REGISTRY_RETRIES = Counter("fieldstream_registry_retries_total", "Schema look-ups retried while the registry was down")
