"""How fieldstream reaches the Confluent-compatible schema registry."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from fieldstream.config.base import Section, section
from fieldstream.config.stack import REGISTRY_PORT


class RegistrySettings(Section):
    model_config = section("REGISTRY")

    url: str = Field(f"http://127.0.0.1:{REGISTRY_PORT}", pattern=r"^https?://")
    basic_auth_user: str | None = None
    basic_auth_password: SecretStr | None = None
    ssl_cafile: str | None = None
    compatibility: Literal[
        "BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE", "NONE"
    ] = "BACKWARD"
    cache_capacity: int = Field(1000, ge=1, description="Schemas kept in the client's cache")
    retry_initial_s: float = Field(0.5, gt=0, description="First backoff when the registry is down")
    retry_max_s: float = Field(10.0, gt=0, description="Longest backoff between registry retries")

    def client_config(self) -> dict[str, object]:
        """Configuration for confluent-kafka's SchemaRegistryClient."""
        conf: dict[str, object] = {"url": self.url, "cache.capacity": self.cache_capacity}
        if self.basic_auth_user and self.basic_auth_password:
            conf["basic.auth.user.info"] = (
                f"{self.basic_auth_user}:{self.basic_auth_password.get_secret_value()}"
            )
        if self.ssl_cafile:
            conf["ssl.ca.location"] = self.ssl_cafile
        return conf
