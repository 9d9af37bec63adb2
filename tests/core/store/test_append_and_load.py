"""`append_and_load` (the service's hot path) and the store's ConversationKey -> id cache."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Connection

from core.conversation import ConversationKey, Role, Turn, TurnStatus
from core.errors import StoreError
from core.store import HistoryStore, Loaded
from core.store import history as history_module
from core.store.models import Conversation

KEY = ConversationKey("slack", "T1", "C1", "1700000000.000100")
OTHER = ConversationKey("slack", "T1", "C1", "1700000000.000200")
NEW = ConversationKey("slack", "T1", "C9", "fresh")


def user(text_: str, *ids: str, tokens: int | None = None) -> Turn:
    return Turn(Role.USER, text_, "U1", "Ann Lee", platform_message_ids=ids, token_count=tokens)


def bot(text_: str, *ids: str) -> Turn:
    return Turn(Role.ASSISTANT, text_, platform_message_ids=ids)


@pytest.fixture
async def other_store(db_url: str, store: HistoryStore) -> AsyncIterator[HistoryStore]:
    """A second store on the same database, as another process would have."""
    opened = await HistoryStore.open(db_url, migrate=False)
    try:
        yield opened
    finally:
        await opened.close()


async def test_a_new_conversation_is_created_and_returned(store: HistoryStore) -> None:
    loaded = await store.append_and_load(KEY, user("hello", "q1", tokens=2), limit=10)
    assert isinstance(loaded, Loaded)
    assert loaded.meta == {}
    [turn] = loaded.turns
    assert turn.id == loaded.turn_id
    assert (turn.content, turn.platform_message_ids, turn.token_count) == ("hello", ("q1",), 2)
    assert turn.created_at is not None and turn.created_at.tzinfo is not None
    assert await store.recent(KEY, limit=10) == loaded.turns
    assert await store.find_turn("slack", "q1") == (KEY, loaded.turn_id)


async def test_the_newest_limit_turns_end_with_the_new_one(store: HistoryStore) -> None:
    await store.append(KEY, user("q0", "p0"))
    await store.append(KEY, bot("a0", "p1", "p2"))
    await store.append(KEY, user("q1"))
    await store.append(OTHER, user("elsewhere"))
    loaded = await store.append_and_load(KEY, bot("a1", "p3"), limit=3)
    assert [t.content for t in loaded.turns] == ["a0", "q1", "a1"]
    assert [t.platform_message_ids for t in loaded.turns] == [("p1", "p2"), (), ("p3",)]
    assert loaded.turns[-1].id == loaded.turn_id
    assert loaded.turns == (await store.recent(KEY, limit=4))[1:]
    everything = await store.append_and_load(KEY, user("q2"), limit=100)
    assert [t.content for t in everything.turns] == ["q0", "a0", "q1", "a1", "q2"]
    assert await store.append_and_load(KEY, user("q3"), limit=0) == Loaded(
        turn_id=(await store.recent(KEY, limit=1))[0].id or 0, turns=[], meta={}
    )
    assert await store.count(KEY) == 6


async def test_meta_comes_from_the_same_transaction(store: HistoryStore) -> None:
    await store.update_meta(KEY, since_turn=3, params={"model": "gpt-4o"})
    loaded = await store.append_and_load(KEY, user("hi"), limit=5)
    assert loaded.meta == {"since_turn": 3, "params": {"model": "gpt-4o"}}
    assert loaded.meta == await store.get_meta(KEY)


async def test_it_stores_what_append_stores(store: HistoryStore) -> None:
    partial = Turn(Role.ASSISTANT, "half", status=TurnStatus.PARTIAL, token_count=4)
    loaded = await store.append_and_load(KEY, partial, limit=1)
    appended = await store.append(OTHER, partial)
    [mine] = loaded.turns
    [theirs] = await store.recent(OTHER, limit=1)
    assert (mine.role, mine.content, mine.status, mine.token_count) == (
        theirs.role,
        theirs.content,
        theirs.status,
        theirs.token_count,
    )
    assert appended > loaded.turn_id


async def test_ids_keep_growing_after_forget(store: HistoryStore) -> None:
    first = await store.append_and_load(KEY, user("a", "q1"), limit=5)
    assert await store.forget(KEY) == 1
    again = await store.append_and_load(KEY, user("b", "q1"), limit=5)
    assert [t.content for t in again.turns] == ["b"]
    assert again.turn_id > first.turn_id
    assert await store.find_turn("slack", "q1") == (KEY, again.turn_id)


async def test_corrupt_meta_stores_nothing(store: HistoryStore) -> None:
    await store.append(KEY, user("before"))
    async with store.engine.begin() as connection:
        await connection.execute(text("UPDATE conversations SET meta = '[1]'"))
    with pytest.raises(StoreError, match="not a JSON object"):
        await store.append_and_load(KEY, user("after"), limit=5)
    assert await store.count(KEY) == 1


async def test_failures_are_store_errors_and_roll_back(store: HistoryStore) -> None:
    async with store.engine.begin() as connection:
        await connection.execute(text("DROP TABLE platform_messages"))
    with pytest.raises(StoreError, match="storing a turn and loading history failed") as caught:
        await store.append_and_load(KEY, user("my private words", "m1"), limit=5)
    assert "my private words" not in str(caught.value)
    assert await store.count(KEY) == 0


async def test_a_closed_store_refuses_it(db_url: str) -> None:
    store = await HistoryStore.open(db_url)
    await store.close()
    with pytest.raises(StoreError, match="closed"):
        await store.append_and_load(KEY, user("x"), limit=5)


async def test_concurrent_calls_from_two_stores_each_see_their_own_turn(
    store: HistoryStore, other_store: HistoryStore
) -> None:
    results = await asyncio.gather(
        *(
            (store if i % 2 else other_store).append_and_load(KEY, user(f"m{i}", f"p{i}"), limit=5)
            for i in range(20)
        ),
        *(other_store.append_and_load(OTHER, user(f"o{i}"), limit=3) for i in range(10)),
    )
    for loaded in results:
        assert loaded.turns[-1].id == loaded.turn_id
        ids = [t.id for t in loaded.turns]
        assert ids == sorted(ids)
    assert await store.count(KEY) == 20
    assert await other_store.count(OTHER) == 10


# -- the ConversationKey -> id cache -------------------------------------------------------------


async def test_another_stores_conversation_is_found_and_followed(
    store: HistoryStore, other_store: HistoryStore
) -> None:
    assert await store.recent(KEY, limit=5) == []  # unknown yet: nothing is remembered
    await other_store.append(KEY, user("from other"))
    assert [t.content for t in await store.recent(KEY, limit=5)] == ["from other"]
    await other_store.update_meta(KEY, a=1)
    await other_store.append(KEY, bot("answer"))
    assert [t.content for t in await store.recent(KEY, limit=5)] == ["from other", "answer"]
    loaded = await store.append_and_load(KEY, user("mine"), limit=5)
    assert [t.content for t in loaded.turns] == ["from other", "answer", "mine"]
    assert loaded.meta == {"a": 1}
    assert await other_store.count(KEY) == 3


async def test_an_id_from_a_rolled_back_call_is_not_remembered(
    store: HistoryStore, other_store: HistoryStore
) -> None:
    async with store.engine.begin() as connection:
        await connection.execute(text("DROP TABLE platform_messages"))
    # Creates NEW's row, then fails on the link: the row is rolled back.
    with pytest.raises(StoreError):
        await store.append_and_load(NEW, user("lost", "m1"), limit=5)
    async with store.engine.begin() as connection:
        await connection.run_sync(_create_platform_messages)
    # Another process creates the conversation, under some other id.
    await other_store.append(OTHER, user("takes an id"))
    await other_store.append(NEW, user("kept"))
    assert [t.content for t in await store.recent(NEW, limit=5)] == ["kept"]
    loaded = await store.append_and_load(NEW, user("mine"), limit=5)
    assert [t.content for t in loaded.turns] == ["kept", "mine"]


def _create_platform_messages(connection: Connection) -> None:
    Conversation.metadata.tables["platform_messages"].create(connection)


async def test_a_conversation_deleted_by_hand_is_created_again(store: HistoryStore) -> None:
    await store.append(KEY, user("old"))
    assert await store.get_meta(KEY) == {}
    async with store.engine.begin() as connection:
        await connection.execute(text("DELETE FROM messages"))
        await connection.execute(text("DELETE FROM conversations"))
    loaded = await store.append_and_load(KEY, user("new"), limit=5)
    assert [t.content for t in loaded.turns] == ["new"]
    assert [t.content for t in await store.recent(KEY, limit=5)] == ["new"]
    await store.update_meta(KEY, b=2)
    assert await store.get_meta(KEY) == {"b": 2}


async def test_the_cache_is_bounded(store: HistoryStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(history_module, "ID_CACHE_SIZE", 3)
    keys = [ConversationKey("slack", "T1", "C1", str(i)) for i in range(8)]
    for i, key in enumerate(keys):
        await store.append(key, user(f"m{i}"))
    assert len(store._ids) == 3
    for i, key in enumerate(keys):  # forgotten ones are looked up by key again
        assert [t.content for t in await store.recent(key, limit=5)] == [f"m{i}"]
        loaded = await store.append_and_load(key, bot(f"a{i}"), limit=5)
        assert [t.content for t in loaded.turns] == [f"m{i}", f"a{i}"]
    assert len(store._ids) == 3


async def test_platform_message_ids_can_be_left_out(store: HistoryStore) -> None:
    await store.append(KEY, user("q0", "p0"))
    await store.append(KEY, bot("a0", "p1", "p2"))
    full = await store.append_and_load(KEY, user("q1", "p3"), limit=3)
    lean = await store.recent(KEY, limit=3, platform_message_ids=False)
    assert [t.platform_message_ids for t in full.turns] == [("p0",), ("p1", "p2"), ("p3",)]
    assert lean == [replace(t, platform_message_ids=()) for t in full.turns]
    loaded = await store.append_and_load(KEY, bot("a1", "p4"), limit=2, platform_message_ids=False)
    assert [(t.content, t.platform_message_ids) for t in loaded.turns] == [("q1", ()), ("a1", ())]
    assert loaded.turns[-1].id == loaded.turn_id
    upto = await store.recent(KEY, limit=5, upto_turn_id=full.turn_id, platform_message_ids=False)
    assert [t.content for t in upto] == ["q0", "a0", "q1"]
    assert await store.find_turn("slack", "p4") == (KEY, loaded.turn_id)  # still linked


async def test_platform_message_ids_are_linked_once_in_order(store: HistoryStore) -> None:
    first = await store.append(KEY, bot("x", "a3", "a1", "a3", "a2"))
    second = await store.append_and_load(KEY, bot("y", "a2", "a4"), limit=5)
    # An id already linked stays with its turn (as with link_platform_messages).
    assert [t.platform_message_ids for t in second.turns] == [("a3", "a1", "a2"), ("a4",)]
    assert await store.find_turn("slack", "a2") == (KEY, first)
    assert await store.find_turn("slack", "a4") == (KEY, second.turn_id)
    # The same ids in another channel are other messages.
    elsewhere = ConversationKey("slack", "T1", "C2", "1")
    third = await store.append_and_load(elsewhere, bot("z", "a2"), limit=5)
    assert third.turns[-1].platform_message_ids == ("a2",)
    assert await store.find_turn("slack", "a2", channel="C2") == (elsewhere, third.turn_id)


# -- claiming the event in the same transaction ---------------------------------------------------


async def _conversations(store: HistoryStore, key: ConversationKey) -> list[tuple[int, object]]:
    """`key`'s conversation rows, as (id, updated_at): read past the store and its cache."""
    async with store.engine.connect() as connection:
        rows = await connection.execute(
            text(
                "SELECT id, updated_at FROM conversations"
                " WHERE platform = :p AND space = :s AND channel = :c AND thread = :t"
            ),
            {"p": key.platform, "s": key.space, "c": key.channel, "t": key.thread},
        )
        return [(row[0], row[1]) for row in rows]


async def test_the_first_claim_stores_the_turn(store: HistoryStore) -> None:
    loaded = await store.append_and_load(
        NEW,
        user("hi", "q1", tokens=1),
        limit=200,
        platform_message_ids=False,
        claim=("slack", "E1"),
    )
    assert isinstance(loaded, Loaded)
    assert [(t.content, t.token_count) for t in loaded.turns] == [("hi", 1)]
    assert loaded.turns[-1].id == loaded.turn_id and loaded.meta == {}
    assert await store.count(NEW) == 1
    assert await store.find_turn("slack", "q1") == (NEW, loaded.turn_id)
    assert await store.claim_event("slack", "E1") is False  # the claim was stored with it
    assert await store.claim_event("discord", "E1") is True  # claims are per platform


async def test_a_repeated_claim_stores_nothing(store: HistoryStore) -> None:
    first = await store.append_and_load(KEY, user("q0"), limit=5, claim=("slack", "E1"))
    assert first is not None
    before = await _conversations(store, KEY)
    # The conversation id is cached now: the by-id variant must not touch the row either.
    assert (
        await store.append_and_load(KEY, user("again", "p9"), limit=5, claim=("slack", "E1"))
        is None
    )
    assert await _conversations(store, KEY) == before  # not even updated_at
    assert await store.count(KEY) == 1
    assert await store.find_turn("slack", "p9") is None
    # A key with no conversation yet: none is created.
    assert await store.append_and_load(NEW, user("x", "p8"), limit=5, claim=("slack", "E1")) is None
    assert await _conversations(store, NEW) == []
    assert await store.count(NEW) == 0
    assert await store.find_turn("slack", "p8") is None
    # Another event of the same conversation goes through.
    second = await store.append_and_load(KEY, bot("a0"), limit=5, claim=("slack", "E2"))
    assert second is not None
    assert [t.content for t in second.turns] == ["q0", "a0"]


async def test_an_event_claimed_by_claim_event_is_not_stored_again(store: HistoryStore) -> None:
    await store.append(KEY, user("q0"))  # cached id
    assert await store.claim_event("slack", "E1") is True
    assert await store.append_and_load(KEY, user("dup"), limit=5, claim=("slack", "E1")) is None
    assert await store.append_and_load(NEW, user("dup"), limit=5, claim=("slack", "E1")) is None
    assert await store.count(KEY) == 1
    assert await _conversations(store, NEW) == []


async def test_without_a_claim_the_same_event_is_not_checked(store: HistoryStore) -> None:
    assert await store.claim_event("slack", "E1") is True
    loaded = await store.append_and_load(KEY, user("q0"), limit=5)
    assert [t.content for t in loaded.turns] == ["q0"]
    assert await store.claim_event("slack", "E2") is True  # nothing was claimed by it


async def test_two_stores_racing_on_one_event_store_one_turn(
    store: HistoryStore, other_store: HistoryStore
) -> None:
    """Two engines, as two processes would have: each event is answered exactly once."""
    await store.append(KEY, user("cached by store"))
    await other_store.append(KEY, user("cached by other"))
    for key in (KEY, NEW):  # an existing conversation (ids cached), then a new one
        before = await store.count(key)
        events = [f"{key.channel}-race-{i}" for i in range(10)]
        results = await asyncio.gather(
            *(
                s.append_and_load(key, user(e, f"p-{e}-{n}"), limit=200, claim=("slack", e))
                for e in events
                for n, s in enumerate((store, other_store, store, other_store))
            )
        )
        per_event = [results[i : i + 4] for i in range(0, len(results), 4)]
        for claims in per_event:
            [winner] = [loaded for loaded in claims if loaded is not None]
            assert winner.turns[-1].id == winner.turn_id
        assert await store.count(key) == before + len(events)
        contents = [t.content for t in await store.recent(key, limit=200)]
        assert sorted(contents[before:]) == sorted(events)
    assert len(await _conversations(store, NEW)) == 1


async def test_a_failed_call_does_not_keep_the_claim(store: HistoryStore) -> None:
    await store.append(KEY, user("before"))
    async with store.engine.begin() as connection:
        await connection.execute(text("UPDATE conversations SET meta = '[1]'"))
    with pytest.raises(StoreError, match="not a JSON object"):
        await store.append_and_load(KEY, user("after"), limit=5, claim=("slack", "E1"))
    async with store.engine.begin() as connection:
        await connection.execute(text("UPDATE conversations SET meta = '{}'"))
        await connection.execute(text("DROP TABLE platform_messages"))
    with pytest.raises(StoreError, match="storing a turn and loading history failed"):
        await store.append_and_load(NEW, user("lost", "m1"), limit=5, claim=("slack", "E1"))
    assert await store.count(KEY) == 1
    assert await store.count(NEW) == 0
    assert await store.claim_event("slack", "E1") is True  # both were rolled back


async def test_a_claim_into_a_conversation_deleted_by_hand(store: HistoryStore) -> None:
    await store.append(KEY, user("old"))  # cached id
    async with store.engine.begin() as connection:
        await connection.execute(text("DELETE FROM messages"))
        await connection.execute(text("DELETE FROM conversations"))
    loaded = await store.append_and_load(KEY, user("new"), limit=5, claim=("slack", "E1"))
    assert loaded is not None
    assert [t.content for t in loaded.turns] == ["new"]
    assert await store.claim_event("slack", "E1") is False
    assert await store.append_and_load(KEY, user("dup"), limit=5, claim=("slack", "E1")) is None
    assert [t.content for t in await store.recent(KEY, limit=5)] == ["new"]


async def test_a_closed_store_refuses_a_claim(db_url: str) -> None:
    store = await HistoryStore.open(db_url)
    await store.close()
    with pytest.raises(StoreError, match="closed"):
        await store.append_and_load(KEY, user("x"), limit=5, claim=("slack", "E1"))
