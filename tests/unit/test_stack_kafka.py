"""The local stack's Kafka: what it hands to Kafka's own tools."""

from __future__ import annotations

import base64
import uuid

from fieldstream.stack import kafka


def test_a_cluster_id_never_starts_with_a_dash(monkeypatch) -> None:
    # uuid4 whose base64url starts with '-' (0xf8..0xfb first byte), then an ordinary one.
    dashed = uuid.UUID(bytes=bytes([0xF8]) + bytes(15))
    plain = uuid.UUID(bytes=bytes([0x10]) + bytes(15))
    assert base64.urlsafe_b64encode(dashed.bytes).decode().startswith("-")
    drawn = iter([dashed, dashed, plain])
    monkeypatch.setattr(kafka.uuid, "uuid4", lambda: next(drawn))
    cluster_id = kafka.new_cluster_id()
    assert cluster_id == base64.urlsafe_b64encode(plain.bytes).decode().rstrip("=")
    assert len(cluster_id) == 22
