"""Every CLI command builds the app; a changelog writer that never wrote must cost nothing."""

from __future__ import annotations

import asyncio

from fieldstream.config.kafka import KafkaSettings
from fieldstream.streams.changelog import ChangelogWriter


def test_a_writer_that_never_wrote_has_no_producer_and_nothing_to_wait_for() -> None:
    writer = ChangelogWriter(KafkaSettings(bootstrap_servers="127.0.0.1:9"))  # nothing listens there
    assert writer.mark() == {}
    assert writer.reached(writer.mark())
    assert asyncio.run(writer.flush(timeout_s=0.1)) == 0
    assert writer._producer_ is None, "a producer (and its threads, and its connection errors) for nothing"
