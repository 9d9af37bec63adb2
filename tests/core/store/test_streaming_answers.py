"""Streaming answers in the store: saved as they grow, taken over once when their writer dies."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from core.conversation import ConversationKey, Role, Turn, TurnStatus
from core.store import HistoryStore

KEY = ConversationKey("discord", "g1", "c1", "root")


def answer(content: str, *ids: str) -> Turn:
    return Turn(role=Role.ASSISTANT, content=content, platform_message_ids=ids)


async def test_an_answer_is_findable_from_its_first_message_and_saved_as_it_grows(
    store: HistoryStore,
) -> None:
    turn_id = await store.begin_answer(
        KEY,
        answer("Hel", "m1"),
        owner="a",
        target={"channel": "c1"},
        open_message="m1",
        open_text="Hel",
    )
    assert await store.find_turn("discord", "m1", space="g1", channel="c1") == (KEY, turn_id)
    saved = await store.save_answer(
        KEY,
        turn_id,
        owner="a",
        content="Hello, world",
        message_ids=["m2"],
        open_message="m2",
        open_text="world",
    )
    assert saved
    assert await store.find_turn("discord", "m2", space="g1", channel="c1") == (KEY, turn_id)
    [turn] = await store.recent(KEY, limit=5)
    assert (turn.content, turn.status, turn.platform_message_ids) == (
        "Hello, world",
        TurnStatus.STREAMING,
        ("m1", "m2"),
    )
    await store.finish_answer(KEY, turn_id, answer("Hello, world!", "m1", "m2"))
    [turn] = await store.recent(KEY, limit=5)
    assert (turn.content, turn.status) == ("Hello, world!", TurnStatus.COMPLETE)
    assert await store.orphans(owner="b", stale_after=timedelta(0), platforms=["discord"]) == []


async def test_a_stale_answer_is_taken_over_by_exactly_one_process(store: HistoryStore) -> None:
    turn_id = await store.begin_answer(
        KEY,
        answer("half", "m1"),
        owner="dead",
        target={"channel": "c1"},
        open_message="m1",
        open_text="half",
    )
    fresh = await store.orphans(owner="b", stale_after=timedelta(minutes=1), platforms=["discord"])
    assert fresh == []  # its writer saved it a moment ago
    assert await store.orphans(owner="b", stale_after=timedelta(0), platforms=["slack"]) == []
    await asyncio.sleep(0.05)
    taken = await asyncio.gather(
        *(
            store.orphans(
                owner=owner, stale_after=timedelta(milliseconds=20), platforms=["discord"]
            )
            for owner in ("b", "c", "d")
        )
    )
    orphans = [orphan for batch in taken for orphan in batch]
    assert len(orphans) == 1
    [orphan] = orphans
    assert (orphan.turn_id, orphan.key, orphan.target) == (turn_id, KEY, {"channel": "c1"})
    assert (orphan.open_message, orphan.open_text, orphan.content) == ("m1", "half", "half")
    # the dead writer, should it come back, no longer writes over the new owner's work
    assert not await store.save_answer(
        KEY,
        turn_id,
        owner="dead",
        content="late",
        message_ids=[],
        open_message="m1",
        open_text="late",
    )
