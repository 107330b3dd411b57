"""How fieldstream reaches PostgreSQL / TimescaleDB."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from fieldstream.config.base import Section, section
from fieldstream.config.stack import POSTGRES_PORT


class PostgresSettings(Section):
    model_config = section("PG")

    host: str = "127.0.0.1"
    port: int = Field(POSTGRES_PORT, ge=1, le=65535)
    user: str = "fieldstream"
    password: SecretStr = SecretStr("fieldstream")
    database: str = "fieldstream"
    sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] = "prefer"
    sslrootcert: str | None = None
    sslcert: str | None = None
    sslkey: str | None = None
    pool_min: int = Field(1, ge=1)
    pool_max: int = Field(4, ge=1)

    def connect_kwargs(self, database: str | None = None) -> dict[str, object]:
        """Keyword arguments for asyncpg.connect / create_pool (the password stays secret)."""
        kwargs: dict[str, object] = {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password.get_secret_value(),
            "database": database or self.database,
        }
        if self.sslmode != "disable" and (self.sslrootcert or self.sslcert):
            import ssl

            ctx = ssl.create_default_context(cafile=self.sslrootcert)
            if self.sslmode in ("require", "prefer", "allow"):
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE if not self.sslrootcert else ssl.CERT_REQUIRED
            if self.sslcert and self.sslkey:
                ctx.load_cert_chain(self.sslcert, self.sslkey)
            kwargs["ssl"] = ctx
        else:
            kwargs["ssl"] = self.sslmode
        return kwargs
