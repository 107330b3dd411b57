"""Writer schemas by id, from the registry, cached, without blocking the event loop.

confluent-kafka's AsyncSchemaRegistryClient does the HTTP; this module adds
what the stream needs on top: parsed fastavro schemas, the subject version for
lineage, and the difference between "this id does not exist" (permanent: the
record is a dead letter) and "the registry did not answer" (transient: retry
with backoff, never dead-letter).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import fastavro
from confluent_kafka.schema_registry import AsyncSchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from fieldstream import metrics
from fieldstream.config.registry import RegistrySettings
from fieldstream.errors import DecodeError, RegistryUnavailable

log = logging.getLogger(__name__)

# Confluent error codes meaning the schema (or its subject/version) does not exist.
NOT_FOUND_CODES = {40401, 40402, 40403}


@dataclass(frozen=True)
class WriterSchema:
    schema_id: int
    parsed: Any
    record_name: str
    version: int


def _record_name(schema: dict[str, Any]) -> str:
    name = schema.get("name", "")
    ns = schema.get("namespace")
    return f"{ns}.{name}" if ns and "." not in name else name


class WriterSchemaCache:
    """Schema id → parsed writer schema; one registry call per known id, ever.

    An id the registry does not know is remembered as unknown for a while only: a
    producer may have registered it a moment ago on a registry replica that has not
    caught up, and its records deserve a second look before the next are dead-lettered.
    """

    def __init__(self, settings: RegistrySettings, subject: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.subject = subject
        self.clock = clock
        self._client = AsyncSchemaRegistryClient(settings.client_config())
        self._cache: dict[int, WriterSchema] = {}
        self._missing_until: dict[int, float] = {}
        self._locks: dict[int, asyncio.Lock] = {}

    def get_cached(self, schema_id: int) -> WriterSchema | None:
        return self._cache.get(schema_id)

    async def get(self, schema_id: int) -> WriterSchema:
        """The writer schema; DecodeError if the id is unknown, retries while the registry is down."""
        hit = self._cache.get(schema_id)
        if hit is not None:
            return hit
        if self._missing_until.get(schema_id, float("-inf")) > self.clock():
            raise DecodeError(f"schema id {schema_id} is not in the registry", reason="unknown_schema")
        lock = self._locks.setdefault(schema_id, asyncio.Lock())
        async with lock:
            if schema_id in self._cache:
                return self._cache[schema_id]
            delay = self.settings.retry_initial_s
            while True:
                try:
                    found = await self._fetch(schema_id)
                    self._cache[schema_id] = found
                    self._missing_until.pop(schema_id, None)
                    return found
                except DecodeError as e:
                    if e.reason == "unknown_schema":
                        self._missing_until[schema_id] = self.clock() + self.settings.unknown_id_ttl_s
                    raise
                except RegistryUnavailable as e:
                    metrics.REGISTRY_RETRIES.inc()
                    log.warning("schema registry unavailable (%s); retrying in %.1fs", e, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.settings.retry_max_s)

    async def _fetch(self, schema_id: int) -> WriterSchema:
        try:
            schema = await self._client.get_schema(schema_id)
        except SchemaRegistryError as e:
            if e.error_code in NOT_FOUND_CODES or e.http_status_code == 404:
                raise DecodeError(f"schema id {schema_id} is not in the registry",
                                  reason="unknown_schema") from e
            raise RegistryUnavailable(f"registry error {e.http_status_code}: {e.error_message}") from e
        except Exception as e:  # noqa: BLE001 - network errors of httpx and friends
            raise RegistryUnavailable(f"{type(e).__name__}: {e}") from e
        try:
            versions = await self._client.get_schema_versions(schema_id)
        except SchemaRegistryError as e:
            if e.http_status_code != 404:
                raise RegistryUnavailable(f"registry error {e.http_status_code}: {e.error_message}") from e
            versions = []  # registered under no subject we know: lineage version 0
        except Exception as e:  # noqa: BLE001
            raise RegistryUnavailable(f"{type(e).__name__}: {e}") from e
        if schema.schema_type not in (None, "AVRO"):
            raise DecodeError(f"schema id {schema_id} is {schema.schema_type}, not Avro", reason="schema_mismatch")
        raw = json.loads(schema.schema_str)
        version = next((v.version for v in versions if v.subject == self.subject), 0)
        return WriterSchema(schema_id, fastavro.parse_schema(raw), _record_name(raw) if isinstance(raw, dict) else "",
                            version)

    async def close(self) -> None:
        await self._client.aclose()
