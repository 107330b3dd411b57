"""The shared base of every settings class: one prefix, `.env` support."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "FIELDSTREAM_"


def section(prefix: str) -> SettingsConfigDict:
    """Config for a settings class whose variables are FIELDSTREAM_<prefix>_<NAME>."""
    return SettingsConfigDict(
        env_prefix=f"{ENV_PREFIX}{prefix}_" if prefix else ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
    )


class Section(BaseSettings):
    """A group of settings read from the environment and `.env`."""

    model_config = section("")
