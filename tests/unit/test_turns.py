"""A long loop of a batch lets other tasks (Faust's commit, timers) run between its turns."""

from __future__ import annotations

import asyncio

from fieldstream.turns import in_turns


def test_every_item_comes_in_order_and_other_tasks_run_between_turns() -> None:
    async def scenario() -> tuple[list[int], list[int]]:
        seen: list[int] = []
        ticks_at: list[int] = []  # how many items the loop had seen when the other task ran

        async def other_task() -> None:
            while True:
                ticks_at.append(len(seen))
                await asyncio.sleep(0)

        task = asyncio.create_task(other_task())
        await asyncio.sleep(0)  # it runs once before the loop
        async for item in in_turns(range(10), per_turn=3):
            seen.append(item)
        task.cancel()
        return seen, ticks_at

    seen, ticks_at = asyncio.run(scenario())
    assert seen == list(range(10))
    assert ticks_at == [0, 3, 6, 9]
