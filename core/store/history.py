"""`HistoryStore`: conversations, turns, platform message ids and event claims in SQL."""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, overload

from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from core.conversation import ConversationKey, Role, Turn, TurnStatus
from core.errors import StoreError
from core.metrics import DB_SECONDS
from core.store import limit_statements
from core.store import statements as sql
from core.store.engine import create_engine
from core.store.failures import translate_errors
from core.store.migrate import upgrade_engine
from core.store.runner import Mode, runner_for

T = TypeVar("T")


ID_CACHE_SIZE = 10_000
"""How many ConversationKey -> conversation id mappings a store remembers (least recent go)."""

_ROLES = {role.value: role for role in Role}
_STATUSES = {status.value: status for status in TurnStatus}
_UNFINISHED = (TurnStatus.PARTIAL, TurnStatus.STREAMING)


@dataclass(frozen=True, slots=True)
class Branch:
    """A conversation started as a copy of another up to one turn, with its settings."""

    key: ConversationKey
    source: ConversationKey
    upto_turn_id: int
    since_turn: int = 0
    limit: int = 200
    params: Mapping[str, Any] | None = None
    running: ConversationKey | None = None


@dataclass(frozen=True, slots=True)
class Orphan:
    """An answer a dead process left streaming, now taken over to be finished."""

    turn_id: int
    key: ConversationKey
    target: dict[str, Any]
    open_message: str | None
    open_text: str
    content: str


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
        self._upsert, self._claim, self._link_statement = sql.dialect_statements(dialect)
        # (by cached id, with an event claim) -> the one-statement append (PostgreSQL)
        self._pg_append = (
            {
                (cached, claim): sql.pg_append(cached=cached, claim=claim)
                for cached in (False, True)
                for claim in (False, True)
            }
            if dialect == "postgresql"
            else None
        )
        # (by key, up to a turn, with platform message ids) -> (statement, row parser)
        self._newest = {
            (by_key, upto, links): (
                sql.newest_turns(dialect, by_key=by_key, upto=upto, links=links),
                _turns_from_join if links and dialect != "postgresql" else _turns_newest_first,
            )
            for by_key in (False, True)
            for upto in (False, True)
            for links in (False, True)
        }
        self._lower_limit = limit_statements.lower_limit(dialect)

    @classmethod
    async def open(
        cls, url: str, *, migrate: bool = True, pool_size: int = 5, max_overflow: int = 10
    ) -> HistoryStore:
        """Connect to `url` (see `normalize_database_url`) and, by default, migrate to head.

        Replicas starting together migrate once (a PostgreSQL advisory lock); the pool sizes
        apply to PostgreSQL."""
        engine = create_engine(url, pool_size=pool_size, max_overflow=max_overflow)
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

        def work(connection: Connection) -> int:
            return int(connection.execute(sql.PRUNE_EVENTS, {"cutoff": cutoff}).rowcount)

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
        params: dict[str, Any] = sql.key_params(key)
        params["turn_id"] = turn_id

        def work(connection: Connection) -> None:
            found = connection.execute(sql.CONVERSATION_OF_TURN, params)
            conversation_id = found.scalar_one_or_none()
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
        statement = sql.find_turn(platform, platform_message_id, space=space, channel=channel)

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
        params: dict[str, Any] = sql.key_params(key) if by_key else {"cid": conversation_id}
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
        statement, params = self._by_conversation(sql.COUNT, key)

        def work(connection: Connection) -> int:
            return int(connection.execute(statement, params).scalar_one())

        return await self._run("counting turns", "single", work)

    async def forget(self, key: ConversationKey) -> int:
        """Delete every turn of `key` (its meta stays); returns how many were deleted."""
        statements, params = self._by_conversation(sql.FORGET, key)

        def work(connection: Connection) -> int:
            links, turns = statements
            connection.execute(links, params)
            return int(connection.execute(turns, params).rowcount)

        return await self._run("forgetting a conversation", "write", work)

    # -- per-conversation meta -------------------------------------------------------------

    async def get_meta(self, key: ConversationKey) -> dict[str, Any]:
        """The conversation's flags and settings; `{}` for an unknown conversation."""
        params = sql.key_params(key)

        def work(connection: Connection) -> tuple[int | None, dict[str, Any]]:
            row = connection.execute(sql.ID_AND_META_OF_KEY, params).first()
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
            return self._merge_meta(connection, key, cached, values, now)

        conversation_id = await self._run("updating conversation settings", "write", work)
        self._remember(key, conversation_id)

    # -- branches -------------------------------------------------------------------------

    async def start_branch(self, branch: Branch, *, claim: tuple[str, str]) -> bool:
        """Start `branch` in one transaction: claim the event, copy the turns, set the meta.

        The branch gets `source`'s turns after `since_turn` up to `upto_turn_id` (the newest
        `limit`, without platform message ids), `params` and a note of where it came from; with
        `running`, that running conversation follows the branch from now on. Returns False, and
        writes nothing, when the event was claimed before; a failure writes nothing either, so
        the event stays unclaimed and its redelivery starts the branch afresh.
        """
        now = _now()
        claim_params = {"platform": claim[0], "event_id": claim[1], "now": now}
        statement, parse = self._newest[True, True, False]
        params: dict[str, Any] = sql.key_params(branch.source)
        params.update(limit=branch.limit, upto=branch.upto_turn_id)
        meta: dict[str, Any] = {
            "branch_of": branch.source.thread,
            "branch_upto": branch.upto_turn_id,
        }
        if branch.params:
            meta["params"] = dict(branch.params)

        def work(connection: Connection) -> int | None:
            if connection.execute(self._claim, claim_params).scalar_one_or_none() is None:
                return None
            turns, _ = parse(connection.execute(statement, params))
            conversation_id, _ = self._touch_conversation(connection, branch.key, None, now)
            for turn in turns:
                if turn.id is not None and turn.id > branch.since_turn:
                    copy = replace(turn, id=None, platform_message_ids=())
                    self._append(connection, branch.key, conversation_id, copy, now)
            self._merge_meta(connection, branch.key, conversation_id, meta, now)
            if branch.running is not None:
                values = {"current_thread": branch.key.thread}
                self._merge_meta(connection, branch.running, None, values, now)
            return conversation_id

        conversation_id = await self._run("starting a branch", "write", work)
        if conversation_id is None:
            return False
        self._remember(branch.key, conversation_id)
        return True

    # -- streaming answers ------------------------------------------------------------------

    async def begin_answer(
        self,
        key: ConversationKey,
        turn: Turn,
        *,
        owner: str,
        target: Mapping[str, Any],
        open_message: str | None,
        open_text: str,
    ) -> int:
        """Store an answer that has started to show: its turn (status streaming, its first
        platform messages linked) and its streaming state, in one transaction; returns its id.
        """
        now = _now()
        cached = self._cached_id(key)
        streaming = replace(turn, status=TurnStatus.STREAMING)
        state = {
            "platform": key.platform,
            "owner": owner,
            "now": now,
            "target": json.dumps(dict(target), sort_keys=True),
            "open_message": open_message,
            "open_text": open_text,
        }

        def work(connection: Connection) -> tuple[int, int]:
            appended = self._append(connection, key, cached, streaming, now)
            assert appended is not None
            conversation_id, _, turn_id = appended
            connection.execute(sql.INSERT_STREAMING, {**state, "tid": turn_id})
            return conversation_id, turn_id

        conversation_id, turn_id = await self._run("storing a streaming answer", "write", work)
        self._remember(key, conversation_id)
        return turn_id

    async def save_answer(
        self,
        key: ConversationKey,
        turn_id: int,
        *,
        owner: str,
        content: str,
        message_ids: Sequence[str],
        open_message: str | None,
        open_text: str,
    ) -> bool:
        """Save a streaming answer's text so far and its new platform messages, and renew its
        heartbeat; False (nothing written) when another process has taken it over.
        """
        now = _now()
        state = {
            "b_tid": turn_id,
            "b_owner": owner,
            "b_now": now,
            "b_open_message": open_message,
            "b_open_text": open_text,
        }
        lookup: dict[str, Any] = {**sql.key_params(key), "turn_id": turn_id}

        def work(connection: Connection) -> bool:
            if connection.execute(sql.SAVE_STREAMING, state).rowcount == 0:
                return False
            connection.execute(sql.SAVE_CONTENT, {"b_tid": turn_id, "b_content": content})
            if message_ids:
                found = connection.execute(sql.CONVERSATION_OF_TURN, lookup).scalar_one()
                self._link(connection, key, found, turn_id, message_ids)
            return True

        return await self._run("saving a streaming answer", "write", work)

    async def finish_answer(self, key: ConversationKey, turn_id: int, turn: Turn) -> None:
        """Store a streamed answer's final text, status and platform messages; it is no
        longer streaming.
        """
        values = {
            "b_tid": turn_id,
            "b_content": turn.content,
            "b_status": turn.status.value,
            "b_token_count": turn.token_count,
            "b_now": _now(),
        }
        lookup: dict[str, Any] = {**sql.key_params(key), "turn_id": turn_id}
        message_ids = list(turn.platform_message_ids)

        def work(connection: Connection) -> None:
            connection.execute(sql.FINISH_TURN, values)
            if message_ids:
                found = connection.execute(sql.CONVERSATION_OF_TURN, lookup).scalar_one()
                self._link(connection, key, found, turn_id, message_ids)
            connection.execute(sql.DELETE_STREAMING, {"tid": turn_id})

        await self._run("finishing a streamed answer", "write", work)

    async def orphans(
        self,
        *,
        owner: str,
        stale_after: timedelta,
        platforms: Sequence[str],
        limit: int = 50,
    ) -> list[Orphan]:
        """Take over answers on `platforms` whose writer stopped renewing their heartbeat for
        `stale_after` (it died); each is taken by exactly one process sharing the database.
        """
        if not platforms:
            return []
        now = _now()
        stale = now - stale_after
        query = {"stale": stale, "platforms": list(platforms), "limit": limit}

        def work(connection: Connection) -> list[Orphan]:
            taken: list[Orphan] = []
            for row in connection.execute(sql.STALE_STREAMING, query).all():
                take = {"b_tid": row[0], "b_stale": stale, "b_owner": owner, "b_now": now}
                if connection.execute(sql.TAKE_OVER_STREAMING, take).rowcount != 1:
                    continue
                target = json.loads(row[1]) if row[1] else {}
                taken.append(
                    Orphan(
                        turn_id=int(row[0]),
                        key=ConversationKey(row[5], row[6], row[7], row[8]),
                        target=target if isinstance(target, dict) else {},
                        open_message=row[2],
                        open_text=row[3] or "",
                        content=row[4],
                    )
                )
            return taken

        return await self._run("taking over stale answers", "write", work)

    # -- per-model limits -------------------------------------------------------------------

    async def model_limit(self, model: str) -> int | None:
        """The context size (tokens) learned for `model`, or None when none was learned."""

        def work(connection: Connection) -> int | None:
            found = connection.execute(limit_statements.LIMIT_OF_MODEL, {"model": model})
            value = found.scalar_one_or_none()
            return None if value is None else int(value)

        return await self._run("reading a model's context size", "single", work)

    async def lower_model_limit(self, model: str, tokens: int) -> int:
        """Store `tokens` as `model`'s context size unless a smaller one is stored; returns
        the stored size. Atomic across processes: the smallest size anyone learned wins."""
        params = {"model": model, "tokens": tokens, "now": _now()}

        def work(connection: Connection) -> int:
            return int(connection.execute(self._lower_limit, params).scalar_one())

        return await self._run("storing a model's context size", "single", work)

    async def run(self, action: str, work: Callable[[Connection], T], *, write: bool = True) -> T:
        """Run `work` in one transaction of this store: for companion stores (installations)
        whose tables live in the same database. Errors become StoreError naming `action`."""
        return await self._run(action, "write" if write else "single", work)

    # -- helpers --------------------------------------------------------------------------

    async def _run(self, action: str, mode: Mode, work: Callable[[Connection], T]) -> T:
        """Run `work` in one transaction (see `core.store.runner`); errors -> StoreError."""
        if self._closed:
            raise StoreError(f"{action} failed: the store is closed")
        started = time.perf_counter()
        try:
            with translate_errors(action, self._engine):
                return await self._runner.run(mode, work)
        finally:
            DB_SECONDS.labels(action).observe(time.perf_counter() - started)

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
            return statements[True], sql.key_params(key)
        return statements[False], {"cid": conversation_id}

    def _touch_conversation(
        self, connection: Connection, key: ConversationKey, cached: int | None, now: datetime
    ) -> tuple[int, str]:
        """`key`'s conversation id and meta text; created if missing, `updated_at` touched.

        Either statement locks the row until the transaction ends (PostgreSQL).
        """
        if cached is not None:
            meta = connection.execute(
                sql.TOUCH_CONVERSATION, {"cid": cached, "now": now}
            ).scalar_one_or_none()
            if meta is not None:
                return cached, meta
            # The row is gone (deleted by hand): look the key up afresh; the caller then
            # remembers the new id.
        params: dict[str, Any] = sql.key_params(key)
        params["now"] = now
        row = connection.execute(self._upsert, params).one()
        return int(row[0]), row[1]

    def _merge_meta(
        self,
        connection: Connection,
        key: ConversationKey,
        cached: int | None,
        values: Mapping[str, Any],
        now: datetime,
    ) -> int:
        """Merge `values` into `key`'s meta (None removes a key); returns the conversation id."""
        # Touching the row locks it until commit (and SQLite holds the write lock).
        conversation_id, current = self._touch_conversation(connection, key, cached, now)
        meta = _load_meta(current)
        for name, value in values.items():
            if value is None:
                meta.pop(name, None)
            else:
                meta[name] = value
        text = json.dumps(meta, sort_keys=True)
        connection.execute(sql.SET_META, {"cid": conversation_id, "meta": text, "now": now})
        return conversation_id

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
        all in one statement (`sql.pg_append`); SQLite, running in-process, in three.

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
            "finished_at": None if turn.status in _UNFINISHED else now,
        }
        message_ids = list(dict.fromkeys(turn.platform_message_ids))
        if self._pg_append is not None:
            values.update(sql.key_params(key), now=now, ids=message_ids, cid=cached)
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
        turn_id = int(connection.execute(sql.INSERT_TURN, values).scalar_one())
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
    """A `Turn` from the first nine columns of a `newest_turns` row (see `TURN_COLUMNS`)."""
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
    if records and len(records[0]) > len(sql.TURN_COLUMNS):
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
