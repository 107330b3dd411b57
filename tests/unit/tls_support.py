"""A throwaway PKI and TLS endpoints that record what a client presented.

The security tests connect the real client libraries (librdkafka, aiokafka's
SSLContext, the registry's httpx client, asyncpg) to these endpoints: a client
certificate arriving at the server proves the CA, certificate, key and key
password all reached the library.
"""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CLIENT_CN = "fieldstream-client"
KEY_PASSWORD = "key-pass-7f3a"


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path  # unencrypted
    client_key_encrypted: Path  # encrypted with KEY_PASSWORD

    def server_context(self, require_client_cert: bool = True) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.server_cert, self.server_key)
        ctx.load_verify_locations(self.ca)
        ctx.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
        return ctx


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey, password: str | None = None) -> Path:
    encryption = (serialization.BestAvailableEncryption(password.encode()) if password
                  else serialization.NoEncryption())
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption))
    return path


def make_pki(directory: Path) -> Pki:
    """A CA, a server certificate for `localhost` only (not 127.0.0.1) and a client certificate."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("fieldstream test CA")).issuer_name(_name("fieldstream test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))

    def leaf(cn: str, sans: list[x509.GeneralName], usage: x509.ObjectIdentifier):
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca.subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                                  critical=False))
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return builder.sign(ca_key, hashes.SHA256()), key

    server, server_key = leaf("localhost", [x509.DNSName("localhost")], ExtendedKeyUsageOID.SERVER_AUTH)
    client, client_key = leaf(CLIENT_CN, [], ExtendedKeyUsageOID.CLIENT_AUTH)
    pem = serialization.Encoding.PEM
    (directory / "ca.pem").write_bytes(ca.public_bytes(pem))
    (directory / "server.pem").write_bytes(server.public_bytes(pem))
    (directory / "client.pem").write_bytes(client.public_bytes(pem))
    return Pki(
        ca=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=_write_key(directory / "server.key", server_key),
        client_cert=directory / "client.pem",
        client_key=_write_key(directory / "client.key", client_key),
        client_key_encrypted=_write_key(directory / "client.enc.key", client_key, KEY_PASSWORD),
    )


@dataclass
class Handshakes:
    """What a TLS server saw: the client certificate CN of each handshake, or its error."""

    client_cns: list[str | None] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    event: threading.Event = field(default_factory=threading.Event)


def peer_cn(sock: ssl.SSLSocket | ssl.SSLObject) -> str | None:
    cert = sock.getpeercert()
    if not cert:
        return None
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return value
    return None


class TlsServer:
    """Accepts TCP connections on 127.0.0.1, completes a TLS handshake, records it, hangs up."""

    def __init__(self, ctx: ssl.SSLContext) -> None:
        self.ctx = ctx
        self.seen = Handshakes()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            conn.settimeout(5)
            try:
                with self.ctx.wrap_socket(conn, server_side=True) as tls:
                    self.seen.client_cns.append(peer_cn(tls))
            except (ssl.SSLError, OSError) as e:
                self.seen.errors.append(f"{type(e).__name__}: {e}")
                conn.close()
            self.seen.event.set()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()
