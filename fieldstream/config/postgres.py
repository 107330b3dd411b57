"""How fieldstream reaches PostgreSQL / TimescaleDB."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal
from urllib.parse import urlencode

from pydantic import Field, SecretStr, field_validator, model_validator

from fieldstream.config.base import Section, section
from fieldstream.config.stack import POSTGRES_PORT


class PostgresSettings(Section):
    model_config = section("PG")

    host: str = Field("127.0.0.1", description="PostgreSQL (TimescaleDB when installed) host")
    port: int = Field(POSTGRES_PORT, ge=1, le=65535, description="PostgreSQL port")
    user: str = Field("fieldstream", description="Database user")
    password: SecretStr = Field(SecretStr("fieldstream"), description="Database password")
    database: str = Field("fieldstream", description="Database name")
    sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] = Field(
        "prefer", description="TLS to the database, as libpq's sslmode")
    sslrootcert: str | None = Field(None, description="CA that signed the server certificate (verify-ca/-full)")
    sslcert: str | None = Field(None, description="Client certificate (PEM) for certificate authentication")
    sslkey: str | None = Field(None, description="Private key (PEM, unencrypted) of the client certificate")
    pool_min: int = Field(1, ge=1, description="Connections each pool keeps open")
    pool_max: int = Field(4, ge=1, description="Connections each pool opens at most")
    # TimescaleDB only (ignored on plain PostgreSQL); durations as "7 days", "12:00:00" or ISO 8601 "PT12H".
    chunk_interval: timedelta = Field(timedelta(days=1), gt=timedelta(0),
                                      description="Time span of one readings chunk (TimescaleDB)")
    compress_after: timedelta = Field(timedelta(days=7), gt=timedelta(0),
                                      description="Compress readings chunks older than this (TimescaleDB)")
    retain_for: timedelta | None = Field(timedelta(days=90), gt=timedelta(0),
                                         description="Drop readings chunks older than this; empty or "
                                                     "'forever' keeps them (TimescaleDB)")

    @field_validator("retain_for", mode="before")
    @classmethod
    def _forever(cls, value: object) -> object:
        return None if isinstance(value, str) and value.strip().lower() in ("", "none", "forever") else value

    @model_validator(mode="after")
    def _complete(self) -> PostgresSettings:
        if self.sslkey and not self.sslcert:
            raise ValueError("FIELDSTREAM_PG_SSLKEY needs FIELDSTREAM_PG_SSLCERT")
        return self

    def connect_kwargs(self, database: str | None = None) -> dict[str, object]:
        """Keyword arguments for asyncpg.connect / create_pool.

        sslmode goes to asyncpg as the libpq mode name and the certificate paths as
        libpq DSN parameters, so asyncpg applies libpq's semantics itself: `prefer`
        and `allow` fall back to plain TCP, `verify-ca` checks the chain but not the
        host name, `verify-full` checks both. (An SSLContext would turn every mode
        into `require` and lose that.) The DSN carries file paths only, never the password.
        """
        kwargs: dict[str, object] = {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password.get_secret_value(),
            "database": database or self.database,
            "ssl": self.sslmode,
        }
        files = {name: value for name, value in (
            ("sslrootcert", self.sslrootcert), ("sslcert", self.sslcert), ("sslkey", self.sslkey),
        ) if value}
        if files and self.sslmode != "disable":
            kwargs["dsn"] = f"postgresql://?{urlencode(files)}"
        return kwargs
