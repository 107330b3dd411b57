"""The project's error hierarchy: one base, one branch per concern.

A poison record is data for the dead-letter topic, not a crash: decode and
validation errors carry a short machine-readable ``reason`` for headers and
metrics, and callers chain the root cause with ``raise ... from e``.
"""

from __future__ import annotations


class FieldstreamError(Exception):
    """Base of every error fieldstream raises on purpose."""

    reason: str = "error"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class ConfigError(FieldstreamError):
    """A setting is missing or invalid; the message names the setting."""

    reason = "config"


class StackError(FieldstreamError):
    """A local-stack service could not be installed, started or reached."""

    reason = "stack"


class DecodeError(FieldstreamError):
    """A record's bytes cannot be turned into a reading (permanent)."""

    reason = "decode"


class RegistryUnavailable(FieldstreamError):
    """The schema registry did not answer: transient, retried, never dead-lettered."""

    reason = "registry_unavailable"


class ValidationError(FieldstreamError):
    """A decoded reading breaks a rule (permanent)."""

    reason = "validation"


class SinkError(FieldstreamError):
    """A sink failed to make a batch durable."""

    reason = "sink"


class SinkUnavailable(SinkError):
    """The sink's backend is down or slow: the stream must pause and retry."""

    reason = "sink_unavailable"


class RecordRejected(SinkError):
    """The sink refused some records permanently: they go to the dead-letter topic.

    `rejected` pairs each refused record with why; the rest of its batch is durable.
    """

    reason = "sink_rejected"

    def __init__(self, message: str, rejected: list[tuple[object, str]] | None = None) -> None:
        super().__init__(message)
        self.rejected = rejected or []
