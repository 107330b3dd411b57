"""Kafka SASL/TLS, registry basic auth/TLS and PostgreSQL sslmode reach every client library.

Config dictionaries are checked, and then the real libraries are pointed at local
TLS endpoints (tls_support.py): a handshake that arrives with the client certificate
proves CA, certificate, key and key password were all passed through.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import ssl
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import asyncpg
import pytest
from aiokafka.client import AIOKafkaClient
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.schema_registry import AsyncSchemaRegistryClient, SchemaRegistryClient
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from fieldstream.config.kafka import KafkaSettings
from fieldstream.config.postgres import PostgresSettings
from fieldstream.config.registry import RegistrySettings
from fieldstream.config.settings import Settings, _load
from fieldstream.errors import ConfigError
from fieldstream.streams.app import broker_credentials

from .tls_support import CLIENT_CN, KEY_PASSWORD, Pki, TlsServer, make_pki, peer_cn

PLANTED = "planted-d41d8cd98f"
MECHANISMS = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]

quiet = logging.getLogger("tests.rdkafka")
quiet.addHandler(logging.NullHandler())
quiet.propagate = False


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def aiokafka_auth(kafka: KafkaSettings) -> dict:
    """What Faust hands to aiokafka for these settings (Faust's own translation)."""
    return dict(credentials_to_aiokafka_auth(broker_credentials(Settings(kafka=kafka)), None))


# -- Kafka ----------------------------------------------------------------------------------


def test_plaintext_leaves_sasl_and_tls_settings_out_of_both_libraries(pki):
    k = KafkaSettings(sasl_mechanism="PLAIN", sasl_username="u", sasl_password=PLANTED,
                      ssl_cafile=str(pki.ca), ssl_key_password=PLANTED)
    conf = k.confluent_config()
    assert conf == {"bootstrap.servers": k.bootstrap_servers, "security.protocol": "PLAINTEXT"}
    assert PLANTED not in json.dumps(conf)
    assert broker_credentials(Settings(kafka=k)) is None
    assert aiokafka_auth(k) == {"security_protocol": "PLAINTEXT"}


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
@pytest.mark.parametrize("mechanism", MECHANISMS)
async def test_sasl_reaches_librdkafka_and_aiokafka_alike(pki, protocol, mechanism):
    k = KafkaSettings(security_protocol=protocol, sasl_mechanism=mechanism, sasl_username="svc-fieldstream",
                      sasl_password=PLANTED, ssl_cafile=str(pki.ca))
    conf = k.confluent_config()
    assert conf["security.protocol"] == protocol
    assert (conf["sasl.mechanism"], conf["sasl.username"], conf["sasl.password"]) == (
        mechanism, "svc-fieldstream", PLANTED)
    assert ("ssl.ca.location" in conf) == (protocol == "SASL_SSL")
    Producer({**conf, "logger": quiet})  # librdkafka validates the properties when the client is built

    auth = aiokafka_auth(k)
    assert auth["security_protocol"] == protocol
    assert auth["sasl_mechanism"] == mechanism
    assert (auth["sasl_plain_username"], auth["sasl_plain_password"]) == ("svc-fieldstream", PLANTED)
    assert (auth["ssl_context"] is not None) == (protocol == "SASL_SSL")
    # aiokafka refuses incomplete or inconsistent auth when the client is built.
    client = AIOKafkaClient(bootstrap_servers="127.0.0.1:9", **auth)
    await client.close()


@pytest.mark.parametrize(("env", "missing"), [
    ({"FIELDSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "FIELDSTREAM_KAFKA_SASL_MECHANISM"),
    ({"FIELDSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "FIELDSTREAM_KAFKA_SASL_MECHANISM": "PLAIN",
      "FIELDSTREAM_KAFKA_SASL_USERNAME": "u"}, "FIELDSTREAM_KAFKA_SASL_PASSWORD"),
    ({"FIELDSTREAM_KAFKA_SSL_KEYFILE": "/k.pem"}, "FIELDSTREAM_KAFKA_SSL_CERTFILE"),
])
def test_incomplete_kafka_security_is_refused_at_start(monkeypatch, env, missing):
    # Otherwise librdkafka falls back to GSSAPI and aiokafka to no authentication.
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=missing):
        _load()


def mtls_kafka(pki: Pki, port: int, host: str = "localhost", **over) -> KafkaSettings:
    fields = {"ssl_cafile": str(pki.ca), "ssl_certfile": str(pki.client_cert),
              "ssl_keyfile": str(pki.client_key_encrypted), "ssl_key_password": KEY_PASSWORD, **over}
    return KafkaSettings(bootstrap_servers=f"{host}:{port}", security_protocol="SSL", **fields)


def librdkafka_handshake(kafka: KafkaSettings, server: TlsServer) -> None:
    admin = AdminClient({**kafka.confluent_config(), "broker.address.family": "v4", "logger": quiet})
    with pytest.raises(KafkaException):  # not a broker: the handshake is all we want from it
        admin.list_topics(timeout=1.5)
    assert server.seen.event.wait(5)


def test_mutual_tls_reaches_librdkafka(pki):
    server = TlsServer(pki.server_context())
    try:
        librdkafka_handshake(mtls_kafka(pki, server.port), server)
        assert CLIENT_CN in server.seen.client_cns, server.seen.errors
    finally:
        server.close()


@pytest.mark.parametrize("check", [True, False])
def test_librdkafka_checks_the_broker_host_name_as_configured(pki, check):
    server = TlsServer(pki.server_context())  # its certificate names localhost, not 127.0.0.1
    try:
        librdkafka_handshake(mtls_kafka(pki, server.port, host="127.0.0.1", ssl_check_hostname=check), server)
        assert (CLIENT_CN in server.seen.client_cns) is (not check), server.seen
    finally:
        server.close()


def test_aiokafka_context_has_the_same_ca_client_certificate_and_host_check(pki):
    server = TlsServer(pki.server_context())
    try:
        k = mtls_kafka(pki, server.port)
        creds = broker_credentials(Settings(kafka=k))
        auth = credentials_to_aiokafka_auth(creds, None)
        assert auth["security_protocol"] == "SSL"
        ctx: ssl.SSLContext = auth["ssl_context"]
        import socket

        with socket.create_connection(("127.0.0.1", server.port)) as raw, \
                ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            assert peer_cn(tls) == "localhost"
        assert server.seen.event.wait(5)
        assert server.seen.client_cns == [CLIENT_CN]
        with socket.create_connection(("127.0.0.1", server.port)) as raw, \
                pytest.raises(ssl.SSLCertVerificationError):
            ctx.wrap_socket(raw, server_hostname="127.0.0.1")
    finally:
        server.close()


def test_a_wrong_key_password_fails_in_both_libraries(pki):
    k = mtls_kafka(pki, 9, ssl_key_password="not-the-password")
    with pytest.raises(KafkaException):
        Producer({**k.confluent_config(), "logger": quiet})
    with pytest.raises(ssl.SSLError):
        k.ssl_context()


# -- schema registry ------------------------------------------------------------------------


def test_registry_basic_auth_needs_user_and_password(monkeypatch):
    only_password = RegistrySettings(basic_auth_password=PLANTED)
    assert "basic.auth.user.info" not in only_password.client_config()
    assert PLANTED not in repr(only_password.client_config())
    both = RegistrySettings(basic_auth_user="reader", basic_auth_password=PLANTED)
    assert both.client_config()["basic.auth.user.info"] == f"reader:{PLANTED}"
    monkeypatch.setenv("FIELDSTREAM_REGISTRY_BASIC_AUTH_USER", "reader")
    with pytest.raises(ConfigError, match="FIELDSTREAM_REGISTRY_BASIC_AUTH_PASSWORD"):
        _load()


def test_registry_url_may_not_carry_credentials(monkeypatch):
    monkeypatch.setenv("FIELDSTREAM_REGISTRY_URL", f"https://reader:{PLANTED}@registry:8081")
    with pytest.raises(ConfigError) as err:
        _load()
    assert "FIELDSTREAM_REGISTRY_URL" in str(err.value) and PLANTED not in str(err.value)


class _Registry(BaseHTTPRequestHandler):
    seen: list[tuple[str | None, str | None]] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        type(self).seen.append((self.headers.get("Authorization"), peer_cn(self.connection)))
        body = json.dumps(["it-value"]).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


async def test_registry_basic_auth_and_mutual_tls_reach_sync_and_async_clients(pki):
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Registry)
    httpd.socket = pki.server_context().wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    _Registry.seen = []
    try:
        r = RegistrySettings(url=f"https://localhost:{httpd.server_address[1]}", basic_auth_user="reader",
                             basic_auth_password=PLANTED, ssl_cafile=str(pki.ca), ssl_certfile=str(pki.client_cert),
                             ssl_keyfile=str(pki.client_key_encrypted), ssl_key_password=KEY_PASSWORD)
        assert SchemaRegistryClient(r.client_config()).get_subjects() == ["it-value"]
        assert await AsyncSchemaRegistryClient(r.client_config()).get_subjects() == ["it-value"]
        expected = "Basic " + base64.b64encode(f"reader:{PLANTED}".encode()).decode()
        assert _Registry.seen == [(expected, CLIENT_CN), (expected, CLIENT_CN)]
    finally:
        httpd.shutdown()
        httpd.server_close()


# -- PostgreSQL -----------------------------------------------------------------------------


def test_pg_sslmode_and_files_go_to_asyncpg_as_libpq_parameters(pki, monkeypatch):
    plain = PostgresSettings(password=PLANTED, sslmode="verify-full").connect_kwargs()
    assert plain["ssl"] == "verify-full" and "dsn" not in plain
    files = PostgresSettings(password=PLANTED, sslmode="verify-ca", sslrootcert=str(pki.ca),
                             sslcert=str(pki.client_cert), sslkey=str(pki.client_key)).connect_kwargs()
    assert files["ssl"] == "verify-ca" and files["password"] == PLANTED
    assert PLANTED not in files["dsn"] and "sslrootcert=" in files["dsn"] and "sslkey=" in files["dsn"]
    assert "dsn" not in PostgresSettings(sslmode="disable", sslrootcert=str(pki.ca)).connect_kwargs()
    monkeypatch.setenv("FIELDSTREAM_PG_SSLKEY", "/k.pem")
    with pytest.raises(ConfigError, match="FIELDSTREAM_PG_SSLCERT"):
        _load()


class FakePostgres:
    """Answers PostgreSQL's SSLRequest ('S' then TLS, or 'N'), records what the client did, hangs up."""

    SSL_REQUEST = 80877103

    def __init__(self, pki: Pki, accept_tls: bool = True) -> None:
        self.ctx = pki.server_context(require_client_cert=False)
        self.accept_tls = accept_tls
        self.events: list[str] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            length, code = struct.unpack("!ii", await reader.readexactly(8))
            if code != self.SSL_REQUEST:
                self.events.append("plain startup")
                return
            if not self.accept_tls:
                writer.write(b"N")
                await writer.drain()
                await reader.readexactly(8)
                self.events.append("plain startup after N")
                return
            writer.write(b"S")
            await writer.drain()
            await writer.start_tls(self.ctx)
            self.events.append(f"tls client={peer_cn(writer.get_extra_info('ssl_object'))}")
        except (ssl.SSLError, OSError, asyncio.IncompleteReadError) as e:
            self.events.append(f"failed {type(e).__name__}")
        finally:
            writer.close()

    async def connect(self, settings: PostgresSettings) -> BaseException | None:
        server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            await asyncpg.connect(**settings.model_copy(update={"port": port}).connect_kwargs(), timeout=5)
        except BaseException as e:  # noqa: BLE001 - the fake server never completes a login
            return e
        finally:
            server.close()
        return None


def pg(pki: Pki, sslmode: str, host: str = "localhost") -> PostgresSettings:
    return PostgresSettings(host=host, sslmode=sslmode, sslrootcert=str(pki.ca), sslcert=str(pki.client_cert),
                            sslkey=str(pki.client_key))


async def test_pg_verify_full_presents_the_client_certificate_and_checks_the_host(pki):
    fake = FakePostgres(pki)
    await fake.connect(pg(pki, "verify-full"))
    assert fake.events[0] == f"tls client={CLIENT_CN}"
    fake.events.clear()
    error = await fake.connect(pg(pki, "verify-full", host="127.0.0.1"))  # certificate names localhost only
    assert isinstance(error, ssl.SSLCertVerificationError)


async def test_pg_verify_ca_checks_the_chain_but_not_the_host(pki):
    fake = FakePostgres(pki)
    await fake.connect(pg(pki, "verify-ca", host="127.0.0.1"))
    assert fake.events[0] == f"tls client={CLIENT_CN}"


async def test_pg_prefer_with_certificates_still_falls_back_to_plain(pki):
    # libpq semantics: `prefer` uses TLS when the server offers it, plain TCP otherwise.
    fake = FakePostgres(pki, accept_tls=False)
    await fake.connect(pg(pki, "prefer"))
    assert "plain startup after N" in fake.events


async def test_pg_disable_never_asks_for_tls(pki):
    fake = FakePostgres(pki)
    await fake.connect(pg(pki, "disable"))
    assert fake.events[0] == "plain startup"


def test_no_secret_in_a_settings_dump(monkeypatch):
    for name in ("FIELDSTREAM_KAFKA_SASL_PASSWORD", "FIELDSTREAM_KAFKA_SSL_KEY_PASSWORD",
                 "FIELDSTREAM_REGISTRY_BASIC_AUTH_PASSWORD", "FIELDSTREAM_REGISTRY_SSL_KEY_PASSWORD",
                 "FIELDSTREAM_PG_PASSWORD"):
        monkeypatch.setenv(name, PLANTED)
    s = _load()
    assert PLANTED not in repr(s) + str(s) + s.model_dump_json() + json.dumps(s.model_dump(mode="json"))
