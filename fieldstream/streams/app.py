"""The Faust app, built once from the settings."""

from __future__ import annotations

import faust
from faust.types import TransportT

from fieldstream.config import Settings, load_settings
from fieldstream.config.worker import WorkerSettings
from fieldstream.logs import worker_logging_config
from fieldstream.streams.consumer import AckedOnlyConsumer


def faust_broker(bootstrap_servers: str) -> str:
    """Faust wants kafka://host:port;host:port for several brokers."""
    return ";".join(f"kafka://{server.strip()}" for server in bootstrap_servers.split(","))


def broker_credentials(settings: Settings) -> faust.auth.Credentials | None:
    """aiokafka's side of the Kafka settings: the same protocol, SASL and TLS as librdkafka's.

    Chosen by security_protocol alone (as librdkafka does), so SASL settings under
    PLAINTEXT or SSL are ignored by both libraries instead of by one of them.
    """
    k = settings.kafka
    ssl_context = k.ssl_context()  # None unless SSL or SASL_SSL
    if k.uses_sasl:
        # With a context Faust speaks SASL_SSL, without one SASL_PLAINTEXT.
        return faust.SASLCredentials(
            username=k.sasl_username,
            password=k.sasl_password.get_secret_value() if k.sasl_password else None,
            ssl_context=ssl_context,
            mechanism=k.sasl_mechanism,
        )
    if ssl_context is not None:
        return faust.SSLCredentials(ssl_context)
    return None


class FieldstreamApp(faust.App):
    # The worker settings (create_app sets them), read by the consumer thread (streams/consumer.py).
    fetch_max_wait_ms: int = WorkerSettings.model_fields["fetch_max_wait_ms"].default
    fetch_min_bytes: int = WorkerSettings.model_fields["fetch_min_bytes"].default

    def _new_transport(self) -> TransportT:
        transport = super()._new_transport()
        transport.Consumer = AckedOnlyConsumer  # type: ignore[misc]  # see streams/consumer.py
        return transport

    def _create_directories(self) -> None:
        # Faust creates only the last level: FIELDSTREAM_WORKER_DATA_DIR=new/place would crash the worker.
        self.conf.datadir.mkdir(parents=True, exist_ok=True)
        super()._create_directories()


def create_app(settings: Settings) -> faust.App:
    w = settings.worker
    app = FieldstreamApp(
        w.app_id,
        broker=faust_broker(settings.kafka.bootstrap_servers),
        broker_credentials=broker_credentials(settings),
        store=w.store,
        datadir=str(w.data_dir),
        # web_bind is where the server listens (Faust's default: every interface); web_host only
        # names it in URLs.
        web_bind=w.web_host,
        web_host=w.web_host,
        web_port=w.web_port,
        topic_partitions=settings.topics.partitions,
        topic_replication_factor=settings.topics.replication_factor,
        key_serializer="raw",
        value_serializer="raw",
        consumer_auto_offset_reset="earliest",
        # Offsets are held back until the sinks are durable: waiting for
        # "empty" on rebalance would only time out.
        stream_wait_empty=False,
        broker_commit_interval=1.0,
        stream_buffer_maxsize=w.prefetch_max,
        broker_max_poll_records=w.poll_records_max,
        consumer_max_fetch_size=w.fetch_partition_bytes,
        # Standby copies would double table memory and show up when timers iterate tables.
        table_standby_replicas=0,
        autodiscover=False,
        web_in_thread=False,
        logging_config=worker_logging_config(w.json_logs),
    )
    app.fetch_max_wait_ms = w.fetch_max_wait_ms
    app.fetch_min_bytes = w.fetch_min_bytes
    return app


def build_app(settings: Settings | None = None) -> faust.App:
    """The app with every agent, timer, table and web view attached."""
    from fieldstream.streams.changelog import ChangelogWriter
    from fieldstream.streams.detection import attach_detection
    from fieldstream.streams.flow import FlowTracker
    from fieldstream.streams.ingest import attach_ingest, build_pipeline
    from fieldstream.streams.web import attach_lag_gauge, attach_web
    from fieldstream.streams.windows import attach_windows

    settings = settings or load_settings()
    app = create_app(settings)
    pipeline = build_pipeline(settings)
    flow = FlowTracker(settings.topics.readings, settings.worker.batch_max)
    changelog = ChangelogWriter(settings.kafka)
    stages = [attach_windows(app, settings, pipeline, flow, changelog),
              attach_detection(app, settings, pipeline, flow, changelog)]
    attach_ingest(app, settings, pipeline, stages, flow)
    attach_web(app, lambda: {
        "partitions_assigned": flow.has_assignment,
        "sinks_connected": pipeline.started and pipeline.connected,
    })
    attach_lag_gauge(app, settings.topics.readings)
    return app
