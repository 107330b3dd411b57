"""The Faust app, built once from the settings."""

from __future__ import annotations

import faust

from fieldstream.config import Settings, load_settings


def faust_broker(bootstrap_servers: str) -> str:
    """Faust wants kafka://host:port;host:port for several brokers."""
    return ";".join(f"kafka://{server.strip()}" for server in bootstrap_servers.split(","))


def broker_credentials(settings: Settings) -> faust.auth.Credentials | None:
    k = settings.kafka
    ssl_context = None
    if k.security_protocol in ("SSL", "SASL_SSL"):
        import ssl

        ssl_context = ssl.create_default_context(cafile=k.ssl_cafile)
        if k.ssl_certfile and k.ssl_keyfile:
            ssl_context.load_cert_chain(k.ssl_certfile, k.ssl_keyfile)
    if k.sasl_mechanism:
        password = k.sasl_password.get_secret_value() if k.sasl_password else ""
        if k.sasl_mechanism == "PLAIN":
            return faust.SASLCredentials(username=k.sasl_username, password=password, ssl_context=ssl_context)
        return faust.SASLCredentials(username=k.sasl_username, password=password, ssl_context=ssl_context,
                                     mechanism=k.sasl_mechanism)
    if ssl_context is not None:
        return faust.SSLCredentials(ssl_context)
    return None


def create_app(settings: Settings) -> faust.App:
    w = settings.worker
    app = faust.App(
        w.app_id,
        broker=faust_broker(settings.kafka.bootstrap_servers),
        broker_credentials=broker_credentials(settings),
        store=w.store,
        datadir=str(w.data_dir),
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
        autodiscover=False,
        web_in_thread=False,
    )
    return app


def build_app(settings: Settings | None = None) -> faust.App:
    """The app with every agent, timer and web view attached."""
    from fieldstream.streams.ingest import attach_ingest
    from fieldstream.streams.web import attach_lag_gauge, attach_web

    settings = settings or load_settings()
    app = create_app(settings)
    pipeline = attach_ingest(app, settings)
    status = {"assigned": False}

    @app.on_partitions_assigned.connect
    async def _note_assignment(app: faust.App, assigned: set, **_: object) -> None:
        status["assigned"] = True

    attach_web(app, lambda: {
        "partitions_assigned": status["assigned"],
        "sinks_connected": pipeline.started and pipeline.connected,
    })
    attach_lag_gauge(app, settings.topics.readings)
    return app
