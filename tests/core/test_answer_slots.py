"""Concurrent answers: a global cap, a per-user cap, round robin between waiting users."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.answer_slots import AnswerSlots, SlotsFull
from tests.core.test_service import Rig, make_rig
from tests.fakes.openai_server import FakeOpenAI, Reply


async def test_waiting_users_are_served_in_turn_and_each_queue_is_bounded() -> None:
    slots = AnswerSlots(total=2, per_user=2, queue=3)
    order: list[str] = []
    release = asyncio.Event()

    async def answer(user: str, n: int) -> None:
        async with slots.slot(user):
            order.append(f"{user}{n}")
            await release.wait()

    flood = [asyncio.create_task(answer("a", n)) for n in range(5)]
    await asyncio.sleep(0.01)
    assert order == ["a0", "a1"] and slots.waiting == 3
    with pytest.raises(SlotsFull):  # a's queue holds 3
        await slots._acquire("a")
    other = asyncio.create_task(answer("b", 0))
    await asyncio.sleep(0.01)
    release.set()
    await asyncio.gather(*flood, other)
    assert order.index("b0") == 2  # b goes before the rest of a's flood


async def test_cancelled_waiters_give_their_turn_away() -> None:
    slots = AnswerSlots(total=1, per_user=1, queue=5)
    held = asyncio.Event()
    done = asyncio.Event()

    async def hold() -> None:
        async with slots.slot("a"):
            held.set()
            await done.wait()

    first = asyncio.create_task(hold())
    await held.wait()
    waiter = asyncio.create_task(slots._acquire("b"))
    await asyncio.sleep(0.01)
    waiter.cancel()
    done.set()
    await first
    assert slots.running == 0 and slots.waiting == 0
    async with slots.slot("c"):
        assert slots.running == 1


@pytest.fixture
async def rig(tmp_path: Path, fake_llm: FakeOpenAI) -> AsyncIterator[Rig]:
    async with make_rig(tmp_path, fake_llm, user_answers=1, user_queue=1) as value:
        yield value


async def test_a_user_over_the_queue_is_told_and_others_are_not_delayed(rig: Rig) -> None:
    rig.llm.script(*[Reply(text=f"slow {n}", delay_first=0.5) for n in range(3)], Reply())
    busy = [
        asyncio.create_task(rig.service.handle(rig.inbound(f"q{n}", thread=f"t{n}"), rig.sink()))
        for n in range(3)
    ]
    await asyncio.sleep(0.2)
    bob = await asyncio.wait_for(
        rig.service.handle(rig.inbound("hi", thread="tb", author="U2", name="Bob"), rig.sink()),
        5,
    )
    outcomes = await asyncio.gather(*busy)
    refused = [o for o in outcomes if o.skipped == "too many waiting"]
    assert len(refused) == 1 and refused[0].text.startswith("⏳ You already have 1 questions")
    assert len([o for o in outcomes if not o.skipped]) == 2
    asked = [r.json["messages"][-1]["content"] for r in rig.llm.chat_requests]
    assert asked[1] == "hi" and bob.text.startswith("slow")  # Bob did not wait behind the flood
