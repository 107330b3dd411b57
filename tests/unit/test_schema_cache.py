"""The writer-schema cache: known ids fetched once; unknown ids dead-lettered for a while, then asked again."""

from __future__ import annotations

import pytest

from fieldstream.config.registry import RegistrySettings
from fieldstream.errors import DecodeError, RegistryUnavailable
from fieldstream.schemas.registry import WriterSchema, WriterSchemaCache


class ScriptedCache(WriterSchemaCache):
    """The cache with the registry replaced by a script of answers (one per fetch)."""

    def __init__(self, answers: list[WriterSchema | Exception], ttl_s: float = 60.0) -> None:
        self.now = 0.0
        super().__init__(RegistrySettings(unknown_id_ttl_s=ttl_s, retry_initial_s=0.001, retry_max_s=0.001),
                         "readings-value", clock=lambda: self.now)
        self.answers = answers
        self.fetches = 0

    async def _fetch(self, schema_id: int) -> WriterSchema:
        answer = self.answers[self.fetches]
        self.fetches += 1
        if isinstance(answer, Exception):
            raise answer
        return answer


SCHEMA = WriterSchema(7, {"type": "record"}, "fieldstream.Reading", 2)


def unknown() -> DecodeError:
    return DecodeError("schema id 7 is not in the registry", reason="unknown_schema")


async def test_a_known_id_is_fetched_once():
    cache = ScriptedCache([SCHEMA])
    assert await cache.get(7) is SCHEMA
    assert await cache.get(7) is SCHEMA
    assert cache.fetches == 1


async def test_an_unknown_id_is_not_asked_again_until_its_time_is_up():
    cache = ScriptedCache([unknown(), SCHEMA], ttl_s=60)
    for _ in range(3):
        with pytest.raises(DecodeError, match="not in the registry"):
            await cache.get(7)
    assert cache.fetches == 1  # a burst of records with a bad id costs one registry call
    cache.now = 61.0
    assert await cache.get(7) is SCHEMA  # registered since: found
    assert cache.fetches == 2


async def test_an_outage_is_retried_not_dead_lettered():
    cache = ScriptedCache([RegistryUnavailable("connection refused"), RegistryUnavailable("503"), SCHEMA])
    assert await cache.get(7) is SCHEMA
    assert cache.fetches == 3
