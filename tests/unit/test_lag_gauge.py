"""The consumer-lag gauge: a partition revoked while it is measured is skipped, not a crash."""

from __future__ import annotations

import asyncio

from aiokafka.errors import IllegalStateError
from faust.types import TP

from fieldstream import metrics
from fieldstream.streams.web import update_lag

TOPIC = "lag-test.readings"


class RebalancingConsumer:
    """Partitions 0 and 2 are revoked after assignment() listed them (a rebalance under way)."""

    def assignment(self) -> set[TP]:
        return {TP(TOPIC, 0), TP(TOPIC, 1), TP(TOPIC, 2), TP("other", 0)}

    async def position(self, tp: TP) -> int:
        if tp.partition == 0:
            raise IllegalStateError(f"Partition {tp} is not assigned")
        return 40

    def highwater(self, tp: TP) -> int:
        assert tp.partition != 2, "Partition is not assigned"  # what aiokafka does
        return 100


def test_a_partition_revoked_while_measured_is_skipped_and_the_others_are_measured() -> None:
    asyncio.run(update_lag(RebalancingConsumer(), TOPIC))
    assert metrics.CONSUMER_LAG.labels(TOPIC, "1")._value.get() == 60
