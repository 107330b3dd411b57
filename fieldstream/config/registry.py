"""How fieldstream reaches the Confluent-compatible schema registry."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from fieldstream.config.base import Section, section
from fieldstream.config.stack import REGISTRY_PORT


class RegistrySettings(Section):
    model_config = section("REGISTRY")

    url: str = Field(f"http://127.0.0.1:{REGISTRY_PORT}", pattern=r"^https?://",
                     description="Confluent-compatible schema registry")
    basic_auth_user: str | None = Field(None, description="HTTP basic auth user")
    basic_auth_password: SecretStr | None = Field(None, description="HTTP basic auth password")
    ssl_cafile: str | None = Field(None, description="CA bundle that signed the registry's certificate")
    ssl_certfile: str | None = Field(None, description="Client certificate (PEM) for mutual TLS")
    ssl_keyfile: str | None = Field(None, description="Private key (PEM) of the client certificate")
    ssl_key_password: SecretStr | None = Field(None, description="Passphrase of an encrypted private key")
    compatibility: Literal[
        "BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE", "NONE"
    ] = Field("BACKWARD", description="Compatibility rule set on the subjects fieldstream registers")
    cache_capacity: int = Field(1000, ge=1, description="Schemas kept in the client's cache")
    retry_initial_s: float = Field(0.5, gt=0, description="First backoff when the registry is down")
    retry_max_s: float = Field(10.0, gt=0, description="Longest backoff between registry retries")
    unknown_id_ttl_s: float = Field(60.0, ge=0, description="How long a schema id the registry did not know "
                                                        "is dead-lettered without asking again")

    @field_validator("url")
    @classmethod
    def _no_credentials_in_url(cls, value: str) -> str:
        # A password in the URL would be printed wherever the URL is (logs, errors, config dumps).
        for url in value.split(","):
            if "@" in urlsplit(url.strip()).netloc:
                raise ValueError("put credentials in FIELDSTREAM_REGISTRY_BASIC_AUTH_USER / _PASSWORD, "
                                 "not in the URL")
        return value

    @model_validator(mode="after")
    def _complete(self) -> RegistrySettings:
        # A password without a user is ignored (nothing to authenticate as); a user
        # without a password is a mistake that would otherwise surface as HTTP 401 later.
        if self.basic_auth_user and not self.basic_auth_password:
            raise ValueError("FIELDSTREAM_REGISTRY_BASIC_AUTH_USER needs FIELDSTREAM_REGISTRY_BASIC_AUTH_PASSWORD")
        if self.ssl_keyfile and not self.ssl_certfile:
            raise ValueError("FIELDSTREAM_REGISTRY_SSL_KEYFILE needs FIELDSTREAM_REGISTRY_SSL_CERTFILE")
        return self

    def client_config(self) -> dict[str, object]:
        """Configuration for confluent-kafka's SchemaRegistryClient and AsyncSchemaRegistryClient."""
        conf: dict[str, object] = {"url": self.url, "cache.capacity": self.cache_capacity}
        if self.basic_auth_user and self.basic_auth_password:
            conf["basic.auth.user.info"] = (
                f"{self.basic_auth_user}:{self.basic_auth_password.get_secret_value()}"
            )
        if self.ssl_cafile:
            conf["ssl.ca.location"] = self.ssl_cafile
        if self.ssl_certfile:
            conf["ssl.certificate.location"] = self.ssl_certfile
            if self.ssl_keyfile:
                conf["ssl.key.location"] = self.ssl_keyfile
            # The client refuses a key password without a certificate: only pass it with one.
            if self.ssl_key_password:
                conf["ssl.key.password"] = self.ssl_key_password.get_secret_value()
        return conf
