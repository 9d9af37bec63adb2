"""KeyedLocks: one conversation at a time per key, others in parallel, no leaked locks."""

from __future__ import annotations

import asyncio
import contextlib

from core.locks import KeyedLocks


async def test_same_key_runs_in_arrival_order_and_other_keys_in_parallel() -> None:
    locks = KeyedLocks()
    events: list[str] = []

    async def work(key: str, name: str, delay: float) -> None:
        async with locks.hold(key):
            events.append(f"start {name}")
            await asyncio.sleep(delay)
            events.append(f"end {name}")

    first = asyncio.create_task(work("a", "a1", 0.05))
    await asyncio.sleep(0)
    second = asyncio.create_task(work("a", "a2", 0.0))
    other = asyncio.create_task(work("b", "b1", 0.0))
    await asyncio.gather(first, second, other)
    assert events.index("end a1") < events.index("start a2")
    assert events.index("end b1") < events.index("end a1")
    assert len(locks) == 0


async def test_lock_released_when_the_holder_fails() -> None:
    locks = KeyedLocks()

    async def failing() -> None:
        async with locks.hold("k"):
            raise RuntimeError("boom")

    with contextlib.suppress(RuntimeError):
        await failing()
    async with asyncio.timeout(1):
        async with locks.hold("k"):
            pass
    assert len(locks) == 0
