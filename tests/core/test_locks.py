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


async def test_reserve_fixes_the_place_before_waiting() -> None:
    locks = KeyedLocks()
    order: list[str] = []

    async def run(name: str, ticket_holder: list[object]) -> None:
        ticket = ticket_holder[0]
        async with ticket:  # type: ignore[attr-defined]
            order.append(name)
            await asyncio.sleep(0.01)

    first = [locks.reserve("k")]
    second = [locks.reserve("k")]
    third = [locks.reserve("k")]
    # Start them in the opposite order: places were fixed at reserve time.
    await asyncio.gather(run("third", third), run("second", second), run("first", first))
    assert order == ["first", "second", "third"]
    assert len(locks) == 0


async def test_a_cancelled_waiter_gives_its_turn_to_the_next() -> None:
    locks = KeyedLocks()
    release = asyncio.Event()
    order: list[str] = []

    async def holder() -> None:
        async with locks.hold("k"):
            order.append("holder")
            await release.wait()

    async def waiter(name: str) -> None:
        async with locks.hold("k"):
            order.append(name)

    first = asyncio.create_task(holder())
    await asyncio.sleep(0)
    doomed = asyncio.create_task(waiter("doomed"))
    last = asyncio.create_task(waiter("last"))
    await asyncio.sleep(0)
    doomed.cancel()
    release.set()
    await asyncio.gather(first, last)
    assert doomed.cancelled()
    assert order == ["holder", "last"]
    assert len(locks) == 0
