"""How fieldstream reaches Kafka, including SASL and TLS.

Two client libraries talk to Kafka: librdkafka (confluent-kafka: device producers,
dead-letter producer, admin, CLI consumers) and aiokafka (under Faust: the worker).
Both configurations are derived here from the same fields, so a setting cannot
reach one library and miss the other.
"""

from __future__ import annotations

import ssl
from typing import Literal

from pydantic import Field, SecretStr, model_validator

from fieldstream.config.base import Section, section
from fieldstream.config.stack import KAFKA_PORT

SASL_PROTOCOLS = ("SASL_PLAINTEXT", "SASL_SSL")
TLS_PROTOCOLS = ("SSL", "SASL_SSL")


class KafkaSettings(Section):
    model_config = section("KAFKA")

    bootstrap_servers: str = Field(f"127.0.0.1:{KAFKA_PORT}", min_length=1,
                                   description="Brokers to connect to first, host:port, comma-separated")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="How to talk to the brokers: TLS, SASL, both or neither")
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="SASL mechanism, with a SASL security protocol")
    sasl_username: str | None = Field(None, description="SASL user name")
    sasl_password: SecretStr | None = Field(None, description="SASL password")
    ssl_cafile: str | None = Field(None, description="CA bundle that signed the brokers' certificates")
    ssl_certfile: str | None = Field(None, description="Client certificate (PEM) for mutual TLS")
    ssl_keyfile: str | None = Field(None, description="Private key (PEM) of the client certificate")
    ssl_key_password: SecretStr | None = Field(None, description="Passphrase of an encrypted private key")
    ssl_check_hostname: bool = Field(True, description="Verify that the broker certificate names the broker host")

    @model_validator(mode="after")
    def _complete(self) -> KafkaSettings:
        # librdkafka would silently fall back to GSSAPI and aiokafka to no auth at all:
        # refuse a SASL protocol without its mechanism and credentials instead.
        if self.uses_sasl:
            missing = [f"FIELDSTREAM_KAFKA_{name}" for name, value in (
                ("SASL_MECHANISM", self.sasl_mechanism), ("SASL_USERNAME", self.sasl_username),
                ("SASL_PASSWORD", self.sasl_password),
            ) if not value]
            if missing:
                raise ValueError(f"security protocol {self.security_protocol} needs {', '.join(missing)}")
        if self.ssl_keyfile and not self.ssl_certfile:
            raise ValueError("FIELDSTREAM_KAFKA_SSL_KEYFILE needs FIELDSTREAM_KAFKA_SSL_CERTFILE")
        return self

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol in SASL_PROTOCOLS

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in TLS_PROTOCOLS

    def confluent_config(self) -> dict[str, str]:
        """librdkafka properties for confluent-kafka clients.

        SASL and TLS properties are set only under a protocol that uses them, exactly
        as aiokafka does, so both libraries connect the same way.
        """
        conf: dict[str, str] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
        }
        if self.uses_sasl:
            assert self.sasl_mechanism and self.sasl_username and self.sasl_password  # the validator saw to it
            conf["sasl.mechanism"] = self.sasl_mechanism
            conf["sasl.username"] = self.sasl_username
            conf["sasl.password"] = self.sasl_password.get_secret_value()
        if self.uses_tls:
            for key, value in (
                ("ssl.ca.location", self.ssl_cafile),
                ("ssl.certificate.location", self.ssl_certfile),
                ("ssl.key.location", self.ssl_keyfile),
            ):
                if value:
                    conf[key] = value
            if self.ssl_key_password:
                conf["ssl.key.password"] = self.ssl_key_password.get_secret_value()
            conf["ssl.endpoint.identification.algorithm"] = "https" if self.ssl_check_hostname else "none"
        return conf

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context for aiokafka (Faust), or None when the protocol has no TLS."""
        if not self.uses_tls:
            return None
        # With a CA file only that CA is trusted, as with librdkafka's ssl.ca.location;
        # without one, the system's trust store.
        ctx = ssl.create_default_context(cafile=self.ssl_cafile)
        ctx.check_hostname = self.ssl_check_hostname
        if self.ssl_certfile:
            password = self.ssl_key_password.get_secret_value() if self.ssl_key_password else None
            ctx.load_cert_chain(self.ssl_certfile, self.ssl_keyfile, password=password)
        return ctx
