"""HistoryStore turns: append, recent, finish, platform message links, meta and forget."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import Engine

from core.conversation import ConversationKey, Role, Turn, TurnStatus
from core.errors import StoreError
from core.store import HistoryStore

KEY = ConversationKey("slack", "T1", "C1", "1700000000.000100")
OTHER = ConversationKey("slack", "T1", "C1", "1700000000.000200")


def user(text: str, *ids: str) -> Turn:
    return Turn(Role.USER, text, "U1", "Ann Lee", platform_message_ids=ids)


def bot(text: str, *ids: str, status: TurnStatus = TurnStatus.COMPLETE) -> Turn:
    return Turn(Role.ASSISTANT, text, status=status, platform_message_ids=ids)


async def test_append_returns_increasing_ids_and_recent_is_oldest_first(
    store: HistoryStore,
) -> None:
    ids = [await store.append(KEY, user(f"m{i}")) for i in range(5)]
    assert ids == sorted(ids) and len(set(ids)) == 5
    turns = await store.recent(KEY, limit=10)
    assert [t.content for t in turns] == ["m0", "m1", "m2", "m3", "m4"]
    assert [t.id for t in turns] == ids


async def test_recent_returns_every_stored_field(store: HistoryStore) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    turn_id = await store.append(
        KEY,
        Turn(
            Role.USER,
            "hello there",
            author_id="U1",
            author_name="Ann Lee",
            status=TurnStatus.COMPLETE,
            platform_message_ids=("1700000000.000100", "1700000000.000101"),
            token_count=3,
        ),
    )
    [turn] = await store.recent(KEY, limit=1)
    assert turn == Turn(
        Role.USER,
        "hello there",
        author_id="U1",
        author_name="Ann Lee",
        status=TurnStatus.COMPLETE,
        platform_message_ids=("1700000000.000100", "1700000000.000101"),
        token_count=3,
        id=turn_id,
    )
    assert turn.created_at is not None and turn.created_at.tzinfo is not None
    assert before <= turn.created_at <= datetime.now(UTC) + timedelta(seconds=1)


async def test_recent_keeps_a_given_created_at(store: HistoryStore) -> None:
    when = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
    await store.append(KEY, Turn(Role.USER, "old", created_at=when))
    [turn] = await store.recent(KEY, limit=1)
    assert turn.created_at == when


async def test_recent_takes_the_newest_limit_turns(store: HistoryStore) -> None:
    for i in range(10):
        await store.append(KEY, user(f"m{i}"))
    assert [t.content for t in await store.recent(KEY, limit=3)] == ["m7", "m8", "m9"]
    assert await store.recent(KEY, limit=0) == []


async def test_recent_upto_a_turn(store: HistoryStore) -> None:
    ids = [await store.append(KEY, user(f"m{i}")) for i in range(10)]
    turns = await store.recent(KEY, limit=3, upto_turn_id=ids[4])
    assert [t.content for t in turns] == ["m2", "m3", "m4"]
    assert [t.content for t in await store.recent(KEY, limit=50, upto_turn_id=ids[1])] == [
        "m0",
        "m1",
    ]


async def test_conversations_are_kept_apart(store: HistoryStore) -> None:
    await store.append(KEY, user("in key"))
    await store.append(OTHER, user("in other"))
    await store.append(ConversationKey("discord", "T1", "C1", KEY.thread), user("discord"))
    assert [t.content for t in await store.recent(KEY, limit=10)] == ["in key"]
    assert [t.content for t in await store.recent(OTHER, limit=10)] == ["in other"]
    assert await store.count(KEY) == 1
    assert await store.recent(ConversationKey("x", "y", "z", "w"), limit=10) == []
    assert await store.count(ConversationKey("x", "y", "z", "w")) == 0


async def test_find_turn_by_any_platform_message_of_a_turn(store: HistoryStore) -> None:
    question = await store.append(KEY, user("question", "q1"))
    answer = await store.append(KEY, bot("part one", "a1"))
    await store.link_platform_messages(KEY, answer, ["a2", "a3"])
    assert await store.find_turn("slack", "q1") == (KEY, question)
    assert await store.find_turn("slack", "a1") == (KEY, answer)
    assert await store.find_turn("slack", "a3") == (KEY, answer)
    assert await store.find_turn("slack", "nope") is None
    assert await store.find_turn("discord", "q1") is None


async def test_find_turn_scoped_by_space_and_channel(store: HistoryStore) -> None:
    # Telegram message ids are only unique within a chat.
    chat_a = ConversationKey("telegram", "-100", "-100", "7")
    chat_b = ConversationKey("telegram", "-200", "-200", "7")
    in_a = await store.append(chat_a, user("in a", "42"))
    in_b = await store.append(chat_b, user("in b", "42"))
    assert await store.find_turn("telegram", "42", space="-100") == (chat_a, in_a)
    assert await store.find_turn("telegram", "42", space="-200", channel="-200") == (chat_b, in_b)
    assert await store.find_turn("telegram", "42", space="-300") is None


async def test_linking_is_idempotent(store: HistoryStore) -> None:
    turn_id = await store.append(KEY, bot("x", "a1"))
    await store.link_platform_messages(KEY, turn_id, ["a1", "a2", "a2"])
    await store.link_platform_messages(KEY, turn_id, ["a2"])
    await store.link_platform_messages(KEY, turn_id, [])
    [turn] = await store.recent(KEY, limit=1)
    assert turn.platform_message_ids == ("a1", "a2")


async def test_linking_a_turn_of_another_conversation_is_refused(store: HistoryStore) -> None:
    turn_id = await store.append(KEY, bot("x"))
    with pytest.raises(StoreError, match="is not in"):
        await store.link_platform_messages(OTHER, turn_id, ["a1"])


async def test_count(store: HistoryStore) -> None:
    for i in range(4):
        await store.append(KEY, user(str(i)))
    assert await store.count(KEY) == 4


async def test_forget_deletes_turns_and_links_but_keeps_meta(store: HistoryStore) -> None:
    await store.update_meta(KEY, model="gpt-4o")
    await store.append(KEY, user("a", "q1"))
    last = await store.append(KEY, bot("b", "a1"))
    await store.append(OTHER, user("other", "q9"))
    assert await store.forget(KEY) == 2
    assert await store.recent(KEY, limit=10) == []
    assert await store.find_turn("slack", "q1") is None
    assert await store.get_meta(KEY) == {"model": "gpt-4o"}
    assert await store.count(OTHER) == 1
    assert await store.forget(ConversationKey("x", "y", "z", "w")) == 0
    # Ids are never reused: a reply still streaming into a forgotten turn can't hit a new one.
    assert await store.append(KEY, user("again")) > last


async def test_meta_round_trip_merge_and_removal(store: HistoryStore) -> None:
    assert await store.get_meta(KEY) == {}
    await store.update_meta(KEY, model="gpt-4o", temperature=0.2, flags={"names": True})
    await store.update_meta(KEY, temperature=None, since_turn=12)
    assert await store.get_meta(KEY) == {
        "model": "gpt-4o",
        "flags": {"names": True},
        "since_turn": 12,
    }
    assert await store.get_meta(OTHER) == {}
    # update_meta creates the conversation without adding turns.
    assert await store.count(KEY) == 0


async def test_corrupt_meta_is_a_store_error(store: HistoryStore) -> None:
    await store.update_meta(KEY, a=1)
    async with store.engine.begin() as connection:
        await connection.execute(text("UPDATE conversations SET meta = 'not json'"))
    with pytest.raises(StoreError, match="not valid JSON"):
        await store.get_meta(KEY)


async def test_recent_is_one_bounded_index_scan(db_url: str, store: HistoryStore) -> None:
    """One statement: the newest-N query walks the (conversation_id, id) index backwards and
    stops at N; only those N turns are joined with their platform message ids and sorted."""
    await _fill(store, KEY, 2000)
    for i in range(40):  # newer conversations, so scanning all messages newest first is slow
        await _fill(store, ConversationKey("slack", "T1", "C2", str(i)), 50)
    # A store that has not seen KEY yet looks it up by key once, then by the id it remembers.
    fresh = await HistoryStore.open(db_url, migrate=False)
    try:
        await _check_recent_plans(fresh)
    finally:
        await fresh.close()


async def _check_recent_plans(store: HistoryStore) -> None:
    statements: list[tuple[str, object]] = []

    def capture(_conn, _cursor, statement, parameters, _context, _many) -> None:  # type: ignore[no-untyped-def]
        if not statement.startswith("BEGIN"):
            statements.append((statement, parameters))

    for by_key in (True, False):
        statements.clear()
        event.listen(Engine, "before_cursor_execute", capture)
        try:
            turns = await store.recent(KEY, limit=50)
        finally:
            event.remove(Engine, "before_cursor_execute", capture)
        assert len(turns) == 50 and turns[-1].content == "m1999"
        assert turns[0].platform_message_ids == () and turns[-1].id is not None
        [(statement, parameters)] = statements
        assert ("FROM conversations" in statement) is by_key
        await _assert_bounded_scan(store, statement, parameters)


async def _assert_bounded_scan(store: HistoryStore, statement: str, parameters: object) -> None:
    async with store.engine.connect() as connection:
        raw = await connection.get_raw_connection()
        driver = raw.driver_connection
        if store.dialect == "sqlite":
            cursor = await driver.execute(f"EXPLAIN QUERY PLAN {statement}", parameters)
            rows = list(await cursor.fetchall())  # (id, parent, notused, detail)
            plan = "\n".join(str(row[-1]) for row in rows)
            assert "SEARCH messages USING INDEX ix_messages_conversation_id_id" in plan, plan
            assert "SCAN messages" not in plan, plan
            # The only sort is of the final (bounded) rows, not inside the newest-N scan.
            inner = {row[0] for row in rows if str(row[-1]).startswith("CO-ROUTINE")}
            sorts = [row for row in rows if "TEMP B-TREE" in str(row[-1])]
            assert all(row[1] not in inner for row in sorts), plan
            return
        rows = await driver.fetch(f"EXPLAIN {statement}", *parameters)  # type: ignore[misc]
    lines = [row[0] for row in rows]
    plan = "\n".join(lines)
    assert "Index Scan Backward using ix_messages_conversation_id_id" in plan, plan
    limit = next(i for i, line in enumerate(lines) if "Limit" in line)
    assert not any("Sort" in line for line in lines[limit:]), plan
    assert "Seq Scan on messages" not in plan, plan


async def _fill(store: HistoryStore, key: ConversationKey, n: int) -> None:
    first = await store.append(key, user("m0"))
    async with store.engine.begin() as connection:
        cid = (
            await connection.execute(
                text("SELECT conversation_id FROM messages WHERE id = :id"), {"id": first}
            )
        ).scalar()
        await connection.execute(
            text(
                "INSERT INTO messages (conversation_id, role, content, status, created_at) "
                "VALUES (:cid, 'user', :content, 'complete', :now)"
            ),
            [{"cid": cid, "content": f"m{i}", "now": datetime.now(UTC)} for i in range(1, n)],
        )
        if store.dialect == "postgresql":
            await connection.execute(text("ANALYZE messages"))
            await connection.execute(text("ANALYZE platform_messages"))


async def test_concurrent_meta_updates_from_two_stores_lose_nothing(
    db_url: str, store: HistoryStore
) -> None:
    """Read-modify-write of meta is atomic across engines (processes) and never 'locked'."""
    other = await HistoryStore.open(db_url)
    try:
        await asyncio.gather(
            *((store if i % 2 else other).update_meta(KEY, **{f"flag{i}": i}) for i in range(30)),
            *((other if i % 2 else store).append(KEY, user(f"m{i}", f"p{i}")) for i in range(30)),
        )
    finally:
        await other.close()
    assert await store.get_meta(KEY) == {f"flag{i}": i for i in range(30)}
    assert await store.count(KEY) == 30


async def test_sqlite_write_transactions_take_the_write_lock_up_front(tmp_path: Path) -> None:
    store = await HistoryStore.open(f"sqlite:///{tmp_path / 'w.db'}")
    begins: list[str] = []

    def capture(_conn, _cursor, statement, *_rest) -> None:  # type: ignore[no-untyped-def]
        if statement.startswith("BEGIN"):
            begins.append(statement)

    event.listen(Engine, "before_cursor_execute", capture)
    try:
        await store.append(KEY, user("hi"))
        await store.append_and_load(KEY, user("again"), limit=5)
        await store.update_meta(KEY, a=1)
        assert begins == ["BEGIN IMMEDIATE"] * 3
        begins.clear()
        # Single statements are their own transaction: reads and event claims send no BEGIN.
        await store.recent(KEY, limit=5)
        await store.get_meta(KEY)
        await store.count(KEY)
        await store.find_turn("slack", "x")
        await store.claim_event("slack", "ev")
        assert begins == []
    finally:
        event.remove(Engine, "before_cursor_execute", capture)
        await store.close()


async def test_sqlite_reads_do_not_wait_for_the_write_lock(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    store = await HistoryStore.open(f"sqlite:///{path}")
    await store.append(KEY, user("hi", "q1"))
    await store.update_meta(KEY, a=1)
    writer = sqlite3.connect(path, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        started = time.monotonic()
        assert [t.content for t in await store.recent(KEY, limit=5)] == ["hi"]
        assert await store.get_meta(KEY) == {"a": 1}
        assert await store.count(KEY) == 1
        assert await store.find_turn("slack", "q1") is not None
        assert time.monotonic() - started < 2  # far below the 10 s busy timeout
        # A write waits for the lock (busy timeout), off the event loop, then goes through.
        claim = asyncio.create_task(store.claim_event("slack", "ev"))
        await asyncio.sleep(0.2)
        assert not claim.done()
        writer.execute("COMMIT")
        assert await asyncio.wait_for(claim, 5) is True
    finally:
        writer.close()
        await store.close()
