"""The aggregate of every settings section, loaded once in the entry point."""

from __future__ import annotations

import os
from collections.abc import Mapping
from difflib import get_close_matches
from functools import lru_cache

import pydantic
from dotenv import dotenv_values
from pydantic import BaseModel, Field

from fieldstream.config.base import ENV_PREFIX, BaseSettings, Section
from fieldstream.config.kafka import KafkaSettings
from fieldstream.config.postgres import PostgresSettings
from fieldstream.config.registry import RegistrySettings
from fieldstream.config.stack import StackSettings
from fieldstream.config.topics import TopicSettings
from fieldstream.config.validation import ValidationSettings
from fieldstream.config.detection import DetectionSettings
from fieldstream.config.parquet import ParquetSettings
from fieldstream.config.simulator import SimulatorSettings
from fieldstream.config.windows import WindowSettings
from fieldstream.config.worker import WorkerSettings
from fieldstream.errors import ConfigError

SECTIONS: dict[str, type[BaseSettings]] = {
    "kafka": KafkaSettings,
    "registry": RegistrySettings,
    "pg": PostgresSettings,
    "topics": TopicSettings,
    "worker": WorkerSettings,
    "stack": StackSettings,
    "validation": ValidationSettings,
    "parquet": ParquetSettings,
    "sim": SimulatorSettings,
    "window": WindowSettings,
    "detection": DetectionSettings,
}


class Settings(BaseModel):
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    registry: RegistrySettings = Field(default_factory=RegistrySettings)
    pg: PostgresSettings = Field(default_factory=PostgresSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    stack: StackSettings = Field(default_factory=StackSettings)
    validation: ValidationSettings = Field(default_factory=ValidationSettings)
    parquet: ParquetSettings = Field(default_factory=ParquetSettings)
    sim: SimulatorSettings = Field(default_factory=SimulatorSettings)
    window: WindowSettings = Field(default_factory=WindowSettings)
    detection: DetectionSettings = Field(default_factory=DetectionSettings)


def env_name(section_cls: type[BaseSettings], field: str) -> str:
    """The environment variable that sets `field` of `section_cls`."""
    return f"{section_cls.model_config.get('env_prefix', '')}{field}".upper()


def all_env_names() -> set[str]:
    """Every FIELDSTREAM_* variable the settings read."""
    return {env_name(cls, name) for cls in SECTIONS.values() for name in cls.model_fields}


def unknown_env_names(environ: Mapping[str, str]) -> list[str]:
    """FIELDSTREAM_* variables in `environ` that no setting reads (a misspelt one, or one removed)."""
    known = all_env_names()
    return sorted(name for name in environ if name.upper().startswith(ENV_PREFIX) and name.upper() not in known)


def _refuse_unknown(environ: Mapping[str, str]) -> None:
    # A misspelt variable would otherwise be ignored without a word, and its default used.
    unknown = unknown_env_names(environ)
    if not unknown:
        return
    known = sorted(all_env_names())
    problems = []
    for name in unknown:
        close = get_close_matches(name.upper(), known, n=1, cutoff=0.8)
        problems.append(f"{name}" + (f" (did you mean {close[0]}?)" if close else ""))
    raise ConfigError(f"unknown setting {'; '.join(problems)}: no fieldstream setting has that name "
                      "(`fieldstream config show` lists them all)")


def _load() -> Settings:
    dotenv = Section.model_config.get("env_file")
    # The `.env` file's names too (pydantic-settings reads it with python-dotenv).
    _refuse_unknown({**(dotenv_values(dotenv) if dotenv and os.path.exists(dotenv) else {}), **os.environ})
    values = {}
    for key, cls in SECTIONS.items():
        try:
            values[key] = cls()
        except pydantic.ValidationError as e:
            problems = "; ".join(
                f"{env_name(cls, str(err['loc'][0])) if err['loc'] else cls.__name__}: {err['msg']}"
                for err in e.errors()
            )
            raise ConfigError(f"invalid setting {problems}") from e
    return Settings(**values)


@lru_cache(maxsize=1)
def load_settings() -> Settings:
    """Read every section once; an invalid value raises ConfigError naming its variable."""
    return _load()
