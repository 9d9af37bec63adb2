"""`HistoryStore`: conversations, turns, platform message ids and event claims in SQL."""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, overload

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    String,
    Table,
    and_,
    bindparam,
    delete,
    func,
    select,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.types import NullType

from core.conversation import ConversationKey, Role, Turn, TurnStatus
from core.errors import StoreError
from core.store.engine import create_engine
from core.store.failures import translate_errors
from core.store.migrate import upgrade_engine
from core.store.models import Conversation, Message, PlatformMessage, ProcessedEvent
from core.store.runner import Mode, runner_for

T = TypeVar("T")

_CONVERSATIONS: Table = Conversation.__table__  # type: ignore[attr-defined]
_MESSAGES: Table = Message.__table__  # type: ignore[attr-defined]
_PLATFORM_MESSAGES: Table = PlatformMessage.__table__  # type: ignore[attr-defined]
_PROCESSED_EVENTS: Table = ProcessedEvent.__table__  # type: ignore[attr-defined]

ID_CACHE_SIZE = 10_000
"""How many ConversationKey -> conversation id mappings a store remembers (least recent go)."""

_ROLES = {role.value: role for role in Role}
_STATUSES = {status.value: status for status in TurnStatus}


@dataclass(frozen=True, slots=True)
class Loaded:
    """What `append_and_load` returns: the new turn's id, the newest turns and the meta."""

    turn_id: int
    turns: list[Turn]
    meta: dict[str, Any]


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; every timestamp is stored in UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


# -- statements, built once ---------------------------------------------------------------------
#
# Every statement below takes its values as named bind parameters, so it is built and compiled
# once per process and each call only supplies a parameter dict.


def _key_params(key: ConversationKey) -> dict[str, str]:
    return {
        "platform": key.platform,
        "space": key.space,
        "channel": key.channel,
        "thread": key.thread,
    }


_KEY_FILTER = and_(
    _CONVERSATIONS.c.platform == bindparam("platform", type_=String()),
    _CONVERSATIONS.c.space == bindparam("space", type_=String()),
    _CONVERSATIONS.c.channel == bindparam("channel", type_=String()),
    _CONVERSATIONS.c.thread == bindparam("thread", type_=String()),
)
_ID_OF_KEY = select(_CONVERSATIONS.c.id).where(_KEY_FILTER).scalar_subquery()
_ID_AND_META_OF_KEY = select(_CONVERSATIONS.c.id, _CONVERSATIONS.c.meta).where(_KEY_FILTER)

_TURN_COLUMNS = (
    _MESSAGES.c.id,
    _MESSAGES.c.conversation_id,
    _MESSAGES.c.role,
    _MESSAGES.c.content,
    _MESSAGES.c.author_id,
    _MESSAGES.c.author_name,
    _MESSAGES.c.status,
    _MESSAGES.c.token_count,
    _MESSAGES.c.created_at,
)


def _conversation_is(by_key: bool) -> ColumnElement[bool]:
    """`messages.conversation_id` equals the `cid` parameter, or the id of the key parameters."""
    if by_key:
        return _MESSAGES.c.conversation_id == _ID_OF_KEY
    return _MESSAGES.c.conversation_id == bindparam("cid")


def _newest_turns(dialect: str, *, by_key: bool, upto: bool, links: bool) -> Select[Any]:
    """The newest `limit` turns, with their platform message ids if `links`: one statement.

    Its core is one range scan of the `(conversation_id, id)` index, newest first, stopped
    at `limit`: the cost depends on `limit`, not on the conversation's length. Only those
    turns have their platform message ids looked up (index on `message_id`), one probe each.

    * Without `links`, or on PostgreSQL, rows are newest first, one per turn. PostgreSQL
      brings the ids as an array per turn (a correlated subquery, evaluated for the returned
      rows only, so the planner cannot pick a join over the whole table).
    * SQLite with `links` (nested loops, always through the index): the turns are left-joined
      with their ids, one row per id (or one with NULL), oldest first, link order second.
    """
    platform_messages = _PLATFORM_MESSAGES
    inner = select(*_TURN_COLUMNS)
    if links and dialect == "postgresql":
        ids = (
            select(
                func.array_agg(
                    postgresql.aggregate_order_by(
                        platform_messages.c.platform_message_id, platform_messages.c.id
                    ),
                    type_=NullType(),  # asyncpg already returns a list: no per-row processing
                )
            )
            .where(platform_messages.c.message_id == _MESSAGES.c.id)
            .scalar_subquery()
        )
        inner = inner.add_columns(ids)
    inner = inner.where(_conversation_is(by_key))
    if upto:
        inner = inner.where(_MESSAGES.c.id <= bindparam("upto"))
    inner = inner.order_by(_MESSAGES.c.id.desc()).limit(bindparam("limit", type_=Integer()))
    if not links or dialect == "postgresql":
        return inner
    newest = inner.subquery("newest")
    return (
        select(*newest.c, platform_messages.c.platform_message_id)
        .select_from(
            newest.outerjoin(platform_messages, platform_messages.c.message_id == newest.c.id)
        )
        .order_by(newest.c.id, platform_messages.c.id)
    )


_COUNT = {
    by_key: select(func.count()).select_from(_MESSAGES).where(_conversation_is(by_key))
    for by_key in (False, True)
}
_FORGET = {
    by_key: (
        delete(_PLATFORM_MESSAGES).where(
            _PLATFORM_MESSAGES.c.conversation_id == (_ID_OF_KEY if by_key else bindparam("cid"))
        ),
        delete(_MESSAGES).where(_conversation_is(by_key)),
    )
    for by_key in (False, True)
}
_KEY_OF_ID = select(
    _CONVERSATIONS.c.platform,
    _CONVERSATIONS.c.space,
    _CONVERSATIONS.c.channel,
    _CONVERSATIONS.c.thread,
).where(_CONVERSATIONS.c.id == bindparam("cid"))
_CONVERSATION_OF_TURN = select(_MESSAGES.c.conversation_id).where(
    _MESSAGES.c.id == bindparam("turn_id"), _conversation_is(by_key=True)
)
_INSERT_TURN = (
    _MESSAGES.insert()
    .values(
        conversation_id=bindparam("cid"),
        role=bindparam("role"),
        content=bindparam("content"),
        author_id=bindparam("author_id"),
        author_name=bindparam("author_name"),
        status=bindparam("status"),
        token_count=bindparam("token_count"),
        created_at=bindparam("created_at"),
        finished_at=bindparam("finished_at"),
    )
    .returning(_MESSAGES.c.id)
)
_TOUCH_CONVERSATION = (
    update(_CONVERSATIONS)
    .where(_CONVERSATIONS.c.id == bindparam("cid"))
    .values(updated_at=bindparam("now"))
    .returning(_CONVERSATIONS.c.meta)
)
_SET_META = (
    update(_CONVERSATIONS)
    .where(_CONVERSATIONS.c.id == bindparam("cid"))
    .values(meta=bindparam("meta"), updated_at=bindparam("now"))
)


def _dialect_statements(dialect: str) -> tuple[Any, Any, Any]:
    """ON CONFLICT statements: (upsert a conversation, claim an event, link a message id)."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    conversation = insert(_CONVERSATIONS).values(
        platform=bindparam("platform"),
        space=bindparam("space"),
        channel=bindparam("channel"),
        thread=bindparam("thread"),
        created_at=bindparam("now"),
        updated_at=bindparam("now"),
        meta="{}",
    )
    upsert = conversation.on_conflict_do_update(
        index_elements=["platform", "space", "channel", "thread"],
        set_={"updated_at": conversation.excluded.updated_at},
    ).returning(_CONVERSATIONS.c.id, _CONVERSATIONS.c.meta)
    claim = (
        insert(_PROCESSED_EVENTS)
        .values(
            platform=bindparam("platform"),
            event_id=bindparam("event_id"),
            created_at=bindparam("now"),
        )
        .on_conflict_do_nothing(index_elements=["platform", "event_id"])
        .returning(_PROCESSED_EVENTS.c.event_id)
    )
    link = (
        insert(_PLATFORM_MESSAGES)
        .values(
            platform=bindparam("platform"),
            platform_message_id=bindparam("platform_message_id"),
            space=bindparam("space"),
            channel=bindparam("channel"),
            message_id=bindparam("message_id"),
            conversation_id=bindparam("conversation_id"),
        )
        .on_conflict_do_nothing(
            index_elements=["platform", "platform_message_id", "space", "channel"]
        )
    )
    return upsert, claim, link


_PG_LINK_COLUMNS = (
    "platform",
    "platform_message_id",
    "space",
    "channel",
    "message_id",
    "conversation_id",
)
_PG_APPEND_FIELDS = (
    "role",
    "content",
    "author_id",
    "author_name",
    "status",
    "token_count",
    "created_at",
    "finished_at",
)


def _pg_append(*, cached: bool, claim: bool) -> Any:
    """PostgreSQL: touch the conversation, insert a turn and link its ids, in one statement.

    Data-modifying CTEs: `conv` updates the conversation by id (`cached`; no row if it is
    gone) or upserts it by key, `turn` inserts the message into it, `links` inserts one
    platform message row per element of the `a_ids` array, in order. Returns (conversation
    id, meta, turn id), or no row when the cached conversation is gone (nothing is written).

    With `claim`, a first CTE claims the event (`a_claim_platform`, `a_event_id`) as
    `claim_event` does (ON CONFLICT DO NOTHING), and `conv` writes only if that inserted a
    row, so nothing else is written for an event claimed before. Returns (conversation id,
    meta, turn id, claimed event id): no row when the event was claimed before (nothing
    is written), a row with NULL ids when the cached conversation is gone (the claim is
    written; nothing else is).

    Parameters are named `a_*`: a parameter named like a column of a table the statement
    writes would be taken as a value for that column.
    """

    def param(name: str, type_: Any) -> Any:
        return bindparam(f"a_{name}", type_=type_)

    now = param("now", _CONVERSATIONS.c.updated_at.type)
    claimed = None
    if claim:
        claimed = (
            postgresql.insert(_PROCESSED_EVENTS)
            .values(
                platform=param("claim_platform", String()),
                event_id=param("event_id", String()),
                created_at=now,
            )
            .on_conflict_do_nothing(index_elements=["platform", "event_id"])
            .returning(_PROCESSED_EVENTS.c.event_id)
            .cte("claim")
        )
    if cached:
        touch = update(_CONVERSATIONS).where(
            _CONVERSATIONS.c.id == param("cid", _CONVERSATIONS.c.id.type)
        )
        if claimed is not None:
            touch = touch.where(select(claimed.c.event_id).exists())
        conv = (
            touch.values(updated_at=now)
            .returning(_CONVERSATIONS.c.id, _CONVERSATIONS.c.meta)
            .cte("conv")
        )
    else:
        key_values = {
            "platform": param("platform", String()),
            "space": param("space", String()),
            "channel": param("channel", String()),
            "thread": param("thread", String()),
            "created_at": now,
            "updated_at": now,
        }
        if claimed is None:
            insert = postgresql.insert(_CONVERSATIONS).values(meta="{}", **key_values)
        else:
            # INSERT ... SELECT from the claim: no row to insert (or upsert) when it lost.
            insert = postgresql.insert(_CONVERSATIONS).from_select(
                list(key_values), select(*key_values.values()).select_from(claimed)
            )  # `meta` takes its server default, '{}'
        conv = (
            insert.on_conflict_do_update(
                index_elements=["platform", "space", "channel", "thread"],
                set_={"updated_at": insert.excluded.updated_at},
            )
            .returning(_CONVERSATIONS.c.id, _CONVERSATIONS.c.meta)
            .cte("conv")
        )
    columns = _MESSAGES.c
    turn = (
        _MESSAGES.insert()
        .from_select(
            ["conversation_id", *_PG_APPEND_FIELDS],
            select(
                conv.c.id,
                *(param(name, columns[name].type) for name in _PG_APPEND_FIELDS),
            ),
        )
        .returning(columns.id, columns.conversation_id)
        .cte("turn")
    )
    ids = (
        func.unnest(param("ids", postgresql.ARRAY(String())))
        .table_valued("platform_message_id", with_ordinality="position")
        .render_derived()
    )
    links = (
        postgresql.insert(_PLATFORM_MESSAGES)
        .from_select(
            list(_PG_LINK_COLUMNS),
            select(
                param("platform", String()),
                ids.c.platform_message_id,
                param("space", String()),
                param("channel", String()),
                turn.c.id,
                turn.c.conversation_id,
            )
            .select_from(turn.join(ids, true()))
            .order_by(ids.c.position),
        )
        .on_conflict_do_nothing(
            index_elements=["platform", "platform_message_id", "space", "channel"]
        )
        .cte("links")
    )
    if claimed is None:
        return (
            select(conv.c.id, conv.c.meta, turn.c.id)
            .select_from(conv.join(turn, true()))
            .add_cte(links)
        )
    return (
        select(conv.c.id, conv.c.meta, turn.c.id, claimed.c.event_id)
        .select_from(claimed.outerjoin(conv, true()).outerjoin(turn, true()))
        .add_cte(links)
    )


class HistoryStore:
    """Stored conversations over SQLite or PostgreSQL; one short transaction per call.

    Safe to share between tasks and between processes using one database: event claims,
    conversation creation and meta updates are atomic across processes.

    Each call's statements run together (`core.store.runner`): on SQLite with the `sqlite3`
    driver in a worker thread, on PostgreSQL on the event loop. Conversation ids are remembered
    per `ConversationKey` (a bounded LRU, filled only from committed rows): an id never changes
    once committed, and the store never deletes conversation rows (`forget` deletes turns
    only), so the mapping stays valid for every process sharing the database.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._runner = runner_for(engine)
        self._closed = False
        self._ids: OrderedDict[ConversationKey, int] = OrderedDict()
        dialect = engine.dialect.name
        self._upsert, self._claim, self._link_statement = _dialect_statements(dialect)
        # (by cached id, with an event claim) -> the one-statement append (PostgreSQL)
        self._pg_append = (
            {
                (cached, claim): _pg_append(cached=cached, claim=claim)
                for cached in (False, True)
                for claim in (False, True)
            }
            if dialect == "postgresql"
            else None
        )
        # (by key, up to a turn, with platform message ids) -> (statement, row parser)
        self._newest = {
            (by_key, upto, links): (
                _newest_turns(dialect, by_key=by_key, upto=upto, links=links),
                _turns_from_join if links and dialect != "postgresql" else _turns_newest_first,
            )
            for by_key in (False, True)
            for upto in (False, True)
            for links in (False, True)
        }

    @classmethod
    async def open(cls, url: str, *, migrate: bool = True) -> HistoryStore:
        """Connect to `url` (see `normalize_database_url`) and, by default, migrate to head."""
        engine = create_engine(url)
        try:
            store = cls(engine)
        except BaseException:
            await engine.dispose()
            raise
        try:
            if migrate:
                await upgrade_engine(engine)
            else:
                with translate_errors("connecting to the database", engine):
                    async with engine.connect():
                        pass
        except BaseException:
            await store.close()
            raise
        return store

    async def close(self) -> None:
        """Close every pooled connection; the store cannot be used afterwards."""
        self._closed = True
        try:
            await self._runner.close()
        finally:
            await self._engine.dispose()

    @property
    def dialect(self) -> str:
        """`sqlite` or `postgresql`."""
        return self._engine.dialect.name

    @property
    def engine(self) -> AsyncEngine:
        """The underlying async engine (migrations, health checks, diagnostics, tests)."""
        return self._engine

    # -- event de-duplication ------------------------------------------------------------

    async def claim_event(self, platform: str, event_id: str) -> bool:
        """True for the first claim of this event by anyone sharing the database, else False."""
        params = {"platform": platform, "event_id": event_id, "now": _now()}

        def work(connection: Connection) -> bool:
            return connection.execute(self._claim, params).scalar_one_or_none() is not None

        return await self._run("claiming an event", "single", work)

    async def prune_events(self, older_than: timedelta) -> int:
        """Forget event claims older than `older_than`; returns how many were removed."""
        cutoff = _now() - older_than
        statement = delete(_PROCESSED_EVENTS).where(_PROCESSED_EVENTS.c.created_at < cutoff)

        def work(connection: Connection) -> int:
            return int(connection.execute(statement).rowcount)

        return await self._run("pruning events", "single", work)

    # -- turns ----------------------------------------------------------------------------

    async def append(self, key: ConversationKey, turn: Turn) -> int:
        """Store `turn` (and its platform message ids) at the end of `key`; returns its id.

        The conversation is created on first use. `turn.id` is ignored (a new id is assigned,
        always larger than any before, even after `forget`); `created_at` defaults to now.
        """
        now = _now()
        cached = self._cached_id(key)

        def work(connection: Connection) -> tuple[int, int]:
            appended = self._append(connection, key, cached, turn, now)
            assert appended is not None  # without a claim, a turn is always appended
            conversation_id, _, turn_id = appended
            return conversation_id, turn_id

        conversation_id, turn_id = await self._run("storing a turn", "write", work)
        self._remember(key, conversation_id)
        return turn_id

    @overload
    async def append_and_load(
        self,
        key: ConversationKey,
        turn: Turn,
        *,
        limit: int,
        platform_message_ids: bool = True,
        claim: None = None,
    ) -> Loaded: ...

    @overload
    async def append_and_load(
        self,
        key: ConversationKey,
        turn: Turn,
        *,
        limit: int,
        platform_message_ids: bool = True,
        claim: tuple[str, str],
    ) -> Loaded | None: ...

    async def append_and_load(
        self,
        key: ConversationKey,
        turn: Turn,
        *,
        limit: int,
        platform_message_ids: bool = True,
        claim: tuple[str, str] | None = None,
    ) -> Loaded | None:
        """`append` `turn`, then read the meta and the newest `limit` turns: one transaction.

        The conversation is created on first use. `turns` are oldest first and end with the
        new turn (for `limit` > 0; `[]` otherwise); `meta` is what `get_meta` would return.
        Corrupt meta raises `StoreError` and stores nothing (the claim included). On SQLite
        the write lock is held from the start, so nothing else is written in between.

        `platform_message_ids=False` leaves every loaded turn's `platform_message_ids` empty
        instead of looking them up (the context window does not use them; with 200 turns that
        saves about a quarter of the call).

        `claim=(platform, event_id)` first claims that event as `claim_event` does, in the
        same transaction (one commit instead of two): if anyone sharing the database claimed
        it before, nothing at all is written (no conversation is created either) and the
        result is None. Without `claim` the result is never None.
        """
        now = _now()
        cached = self._cached_id(key)
        statement, parse = self._newest[False, False, platform_message_ids]
        claim_params = (
            None if claim is None else {"platform": claim[0], "event_id": claim[1], "now": now}
        )

        def work(connection: Connection) -> tuple[int, Loaded] | None:
            appended = self._append(connection, key, cached, turn, now, claim_params)
            if appended is None:  # the event was claimed before: nothing was written
                return None
            conversation_id, meta_text, turn_id = appended
            meta = _load_meta(meta_text)  # corrupt: raises, and the turn is rolled back
            turns: list[Turn] = []
            if limit > 0:
                rows = connection.execute(statement, {"cid": conversation_id, "limit": limit})
                turns, _ = parse(rows)
            return conversation_id, Loaded(turn_id=turn_id, turns=turns, meta=meta)

        result = await self._run("storing a turn and loading history", "write", work)
        if result is None:
            return None
        conversation_id, loaded = result
        self._remember(key, conversation_id)
        return loaded

    async def link_platform_messages(
        self, key: ConversationKey, turn_id: int, message_ids: Sequence[str]
    ) -> None:
        """Record that platform messages `message_ids` (in `key`'s channel) belong to a turn."""
        if not message_ids:
            return
        params: dict[str, Any] = _key_params(key)
        params["turn_id"] = turn_id

        def work(connection: Connection) -> None:
            conversation_id = connection.execute(_CONVERSATION_OF_TURN, params).scalar_one_or_none()
            if conversation_id is None:
                raise StoreError(
                    f"linking platform messages failed: turn {turn_id} is not in {key}"
                )
            self._link(connection, key, conversation_id, turn_id, message_ids)

        await self._run("linking platform messages", "write", work)

    async def find_turn(
        self,
        platform: str,
        platform_message_id: str,
        *,
        space: str | None = None,
        channel: str | None = None,
    ) -> tuple[ConversationKey, int] | None:
        """The conversation and turn a platform message belongs to, or None.

        Ids are looked up per platform; pass `space`/`channel` (of the conversation key) on
        platforms whose message ids are only unique within a chat or channel.
        """
        links = _PLATFORM_MESSAGES
        statement = (
            select(
                _CONVERSATIONS.c.id,
                _CONVERSATIONS.c.platform,
                _CONVERSATIONS.c.space,
                _CONVERSATIONS.c.channel,
                _CONVERSATIONS.c.thread,
                links.c.message_id,
            )
            .select_from(links)
            .join(_CONVERSATIONS, _CONVERSATIONS.c.id == links.c.conversation_id)
            .where(
                links.c.platform == platform,
                links.c.platform_message_id == platform_message_id,
            )
            .order_by(links.c.message_id.desc())
            .limit(1)
        )
        if space is not None:
            statement = statement.where(links.c.space == space)
        if channel is not None:
            statement = statement.where(links.c.channel == channel)

        def work(connection: Connection) -> Any:
            return connection.execute(statement).one_or_none()

        row = await self._run("finding a turn", "single", work)
        if row is None:
            return None
        conversation_id, platform_, space_, channel_, thread, message_id = row
        key = ConversationKey(platform_, space_, channel_, thread)
        self._remember(key, conversation_id)
        return key, message_id

    async def recent(
        self,
        key: ConversationKey,
        *,
        limit: int,
        upto_turn_id: int | None = None,
        platform_message_ids: bool = True,
    ) -> list[Turn]:
        """The newest `limit` turns of `key` (ids <= `upto_turn_id` if given), oldest first.

        One statement: a range scan of the `(conversation_id, id)` index, newest first,
        stopped at `limit` (the cost depends on `limit`, not on the conversation's length),
        with the platform message ids of just those turns (left empty when
        `platform_message_ids` is False, which saves looking them up).
        """
        if limit <= 0:
            return []
        conversation_id = self._cached_id(key)
        by_key = conversation_id is None
        params: dict[str, Any] = _key_params(key) if by_key else {"cid": conversation_id}
        params["limit"] = limit
        upto = upto_turn_id is not None
        if upto:
            params["upto"] = upto_turn_id
        statement, parse = self._newest[by_key, upto, platform_message_ids]

        def work(connection: Connection) -> tuple[list[Turn], int | None]:
            return parse(connection.execute(statement, params))

        turns, found = await self._run("loading history", "single", work)
        if by_key and found is not None:
            self._remember(key, found)
        return turns

    async def count(self, key: ConversationKey) -> int:
        """How many turns `key` has stored."""
        statement, params = self._by_conversation(_COUNT, key)

        def work(connection: Connection) -> int:
            return int(connection.execute(statement, params).scalar_one())

        return await self._run("counting turns", "single", work)

    async def forget(self, key: ConversationKey) -> int:
        """Delete every turn of `key` (its meta stays); returns how many were deleted."""
        statements, params = self._by_conversation(_FORGET, key)

        def work(connection: Connection) -> int:
            links, turns = statements
            connection.execute(links, params)
            return int(connection.execute(turns, params).rowcount)

        return await self._run("forgetting a conversation", "write", work)

    # -- per-conversation meta -------------------------------------------------------------

    async def get_meta(self, key: ConversationKey) -> dict[str, Any]:
        """The conversation's flags and settings; `{}` for an unknown conversation."""
        params = _key_params(key)

        def work(connection: Connection) -> tuple[int | None, dict[str, Any]]:
            row = connection.execute(_ID_AND_META_OF_KEY, params).first()
            if row is None:
                return None, {}
            return row[0], _load_meta(row[1])

        conversation_id, meta = await self._run("reading conversation settings", "single", work)
        if conversation_id is not None:
            self._remember(key, conversation_id)
        return meta

    async def update_meta(self, key: ConversationKey, **values: Any) -> None:
        """Merge `values` (JSON-serialisable) into the conversation's meta; None removes a key."""
        now = _now()
        cached = self._cached_id(key)

        def work(connection: Connection) -> int:
            # Touching the row locks it until commit (and SQLite holds the write lock).
            conversation_id, current = self._touch_conversation(connection, key, cached, now)
            meta = _load_meta(current)
            for name, value in values.items():
                if value is None:
                    meta.pop(name, None)
                else:
                    meta[name] = value
            text = json.dumps(meta, sort_keys=True)
            connection.execute(_SET_META, {"cid": conversation_id, "meta": text, "now": now})
            return conversation_id

        conversation_id = await self._run("updating conversation settings", "write", work)
        self._remember(key, conversation_id)

    # -- helpers --------------------------------------------------------------------------

    async def _run(self, action: str, mode: Mode, work: Callable[[Connection], T]) -> T:
        """Run `work` in one transaction (see `core.store.runner`); errors -> StoreError."""
        if self._closed:
            raise StoreError(f"{action} failed: the store is closed")
        with translate_errors(action, self._engine):
            return await self._runner.run(mode, work)

    def _cached_id(self, key: ConversationKey) -> int | None:
        conversation_id = self._ids.get(key)
        if conversation_id is not None:
            self._ids.move_to_end(key)
        return conversation_id

    def _remember(self, key: ConversationKey, conversation_id: int) -> None:
        """Cache an id read from a committed row (never one written by an unfinished call)."""
        ids = self._ids
        ids[key] = conversation_id
        ids.move_to_end(key)
        if len(ids) > ID_CACHE_SIZE:
            ids.popitem(last=False)

    def _by_conversation(self, statements: dict[bool, T], key: ConversationKey) -> tuple[T, Any]:
        """The by-id variant and parameters when the id is cached, else the by-key variant."""
        conversation_id = self._cached_id(key)
        if conversation_id is None:
            return statements[True], _key_params(key)
        return statements[False], {"cid": conversation_id}

    def _touch_conversation(
        self, connection: Connection, key: ConversationKey, cached: int | None, now: datetime
    ) -> tuple[int, str]:
        """`key`'s conversation id and meta text; created if missing, `updated_at` touched.

        Either statement locks the row until the transaction ends (PostgreSQL).
        """
        if cached is not None:
            meta = connection.execute(
                _TOUCH_CONVERSATION, {"cid": cached, "now": now}
            ).scalar_one_or_none()
            if meta is not None:
                return cached, meta
            # The row is gone (deleted by hand): look the key up afresh; the caller then
            # remembers the new id.
        params: dict[str, Any] = _key_params(key)
        params["now"] = now
        row = connection.execute(self._upsert, params).one()
        return int(row[0]), row[1]

    def _append(
        self,
        connection: Connection,
        key: ConversationKey,
        cached: int | None,
        turn: Turn,
        now: datetime,
        claim: dict[str, Any] | None = None,
    ) -> tuple[int, str, int] | None:
        """Touch (or create) the conversation and insert `turn` with its platform message ids.

        Returns the conversation id, its meta text and the new turn's id. PostgreSQL does it
        all in one statement (`_pg_append`); SQLite, running in-process, in three.

        With `claim` (the parameters of the `claim_event` statement), the event is claimed
        first, in the same statement on PostgreSQL; if it was claimed before, nothing is
        written and the result is None (never None without `claim`).
        """
        values: dict[str, Any] = {
            "role": turn.role.value,
            "content": turn.content,
            "author_id": turn.author_id,
            "author_name": turn.author_name,
            "status": turn.status.value,
            "token_count": turn.token_count,
            "created_at": turn.created_at or now,
            "finished_at": None if turn.status is TurnStatus.PARTIAL else now,
        }
        message_ids = list(dict.fromkeys(turn.platform_message_ids))
        if self._pg_append is not None:
            values.update(_key_params(key), now=now, ids=message_ids, cid=cached)
            if claim is not None:
                values.update(claim_platform=claim["platform"], event_id=claim["event_id"])
            params = {f"a_{name}": value for name, value in values.items()}
            if claim is not None:
                statement = self._pg_append[cached is not None, True]
                row = connection.execute(statement, params).first()
                if row is None:  # claimed before: nothing was written
                    return None
                if row[0] is not None:
                    return int(row[0]), row[1], int(row[2])
                # Claimed now, but the cached conversation is gone: append by key below.
            elif cached is not None:
                row = connection.execute(self._pg_append[True, False], params).first()
                if row is not None:
                    return int(row[0]), row[1], int(row[2])
            row = connection.execute(self._pg_append[False, False], params).one()
            return int(row[0]), row[1], int(row[2])
        if (
            claim is not None
            and connection.execute(self._claim, claim).scalar_one_or_none() is None
        ):
            return None  # claimed before: nothing was written
        conversation_id, meta = self._touch_conversation(connection, key, cached, now)
        values["cid"] = conversation_id
        turn_id = int(connection.execute(_INSERT_TURN, values).scalar_one())
        self._link(connection, key, conversation_id, turn_id, message_ids)
        return conversation_id, meta, turn_id

    def _link(
        self,
        connection: Connection,
        key: ConversationKey,
        conversation_id: int,
        turn_id: int,
        message_ids: Sequence[str],
    ) -> None:
        unique = list(dict.fromkeys(message_ids))
        if not unique:
            return
        connection.execute(
            self._link_statement,
            [
                {
                    "platform": key.platform,
                    "platform_message_id": message_id,
                    "space": key.space,
                    "channel": key.channel,
                    "message_id": turn_id,
                    "conversation_id": conversation_id,
                }
                for message_id in unique
            ],
        )


def _turn(row: Any, platform_message_ids: tuple[str, ...]) -> Turn:
    """A `Turn` from the first nine columns of a `_newest_turns` row (see `_TURN_COLUMNS`)."""
    turn_id, _, role, content, author_id, author_name, status, token_count, created_at = row[:9]
    return Turn(
        role=_ROLES.get(role) or Role(role),
        content=content,
        author_id=author_id,
        author_name=author_name,
        status=_STATUSES.get(status) or TurnStatus(status),
        platform_message_ids=platform_message_ids,
        token_count=token_count,
        id=turn_id,
        created_at=_aware(created_at),
    )


def _turns_newest_first(rows: Iterable[Any]) -> tuple[list[Turn], int | None]:
    """Rows one per turn, newest first; a tenth column, if any, is the ids array (or NULL).

    Returns the turns oldest first and their conversation's id (None without turns).
    """
    records = list(rows)
    records.reverse()
    if records and len(records[0]) > len(_TURN_COLUMNS):
        turns = [_turn(row, tuple(row[9]) if row[9] else ()) for row in records]
    else:
        turns = [_turn(row, ()) for row in records]
    return turns, (records[0][1] if records else None)


def _turns_from_join(rows: Iterable[Any]) -> tuple[list[Turn], int | None]:
    """SQLite rows: one per platform message id (one with NULL for none), oldest first.

    Returns the turns oldest first and their conversation's id (None without turns).
    """
    firsts: list[Any] = []
    links: dict[int, list[str]] = {}
    previous = None
    for row in rows:
        turn_id, link = row[0], row[9]
        if turn_id != previous:
            previous = turn_id
            firsts.append(row)
            if link is not None:
                links[turn_id] = [link]
        elif link is not None:
            links[turn_id].append(link)
    turns = [_turn(row, tuple(links.get(row[0], ()))) for row in firsts]
    return turns, (firsts[0][1] if firsts else None)


def _load_meta(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise StoreError(f"conversation settings are not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise StoreError("conversation settings are not a JSON object")
    return value
