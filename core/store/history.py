"""`HistoryStore`: conversations, turns, platform message ids and event claims in SQL."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, func, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from core.conversation import ConversationKey, Role, Turn, TurnStatus
from core.errors import StoreError
from core.store.engine import WRITE_OPTION, create_engine
from core.store.failures import translate_errors
from core.store.migrate import upgrade_engine
from core.store.models import Conversation, Message, PlatformMessage, ProcessedEvent

_CONVERSATIONS = Conversation.__table__  # type: ignore[attr-defined]
_PLATFORM_MESSAGES = PlatformMessage.__table__  # type: ignore[attr-defined]
_PROCESSED_EVENTS = ProcessedEvent.__table__  # type: ignore[attr-defined]


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; every timestamp is stored in UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def _key_filter(key: ConversationKey) -> ColumnElement[bool]:
    return and_(
        col(Conversation.platform) == key.platform,
        col(Conversation.space) == key.space,
        col(Conversation.channel) == key.channel,
        col(Conversation.thread) == key.thread,
    )


class HistoryStore:
    """Stored conversations over SQLite or PostgreSQL; one short transaction per call.

    Safe to share between tasks and between processes using one database: event claims,
    conversation creation and meta updates are atomic across processes.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._closed = False

    @classmethod
    async def open(cls, url: str, *, migrate: bool = True) -> HistoryStore:
        """Connect to `url` (see `normalize_database_url`) and, by default, migrate to head."""
        engine = create_engine(url)
        store = cls(engine)
        try:
            if migrate:
                await upgrade_engine(engine)
            else:
                with translate_errors("connecting to the database", engine):
                    async with engine.connect():
                        pass
        except BaseException:
            await engine.dispose()
            raise
        return store

    async def close(self) -> None:
        """Close every pooled connection; the store cannot be used afterwards."""
        self._closed = True
        await self._engine.dispose()

    @property
    def dialect(self) -> str:
        """`sqlite` or `postgresql`."""
        return self._engine.dialect.name

    @property
    def engine(self) -> AsyncEngine:
        """The underlying engine (health checks, diagnostics, tests)."""
        return self._engine

    # -- event de-duplication ------------------------------------------------------------

    async def claim_event(self, platform: str, event_id: str) -> bool:
        """True for the first claim of this event by anyone sharing the database, else False."""
        statement = (
            self._insert(_PROCESSED_EVENTS)
            .values(platform=platform, event_id=event_id, created_at=_now())
            .on_conflict_do_nothing(index_elements=["platform", "event_id"])
            .returning(_PROCESSED_EVENTS.c.event_id)
        )
        async with self._session("claiming an event", write=True) as session:
            claimed = (await session.exec(statement)).scalar_one_or_none()
        return claimed is not None

    async def prune_events(self, older_than: timedelta) -> int:
        """Forget event claims older than `older_than`; returns how many were removed."""
        cutoff = _now() - older_than
        statement = delete(ProcessedEvent).where(col(ProcessedEvent.created_at) < cutoff)
        async with self._session("pruning events", write=True) as session:
            result = await session.exec(statement)
        return int(result.rowcount)

    # -- turns ----------------------------------------------------------------------------

    async def append(self, key: ConversationKey, turn: Turn) -> int:
        """Store `turn` (and its platform message ids) at the end of `key`; returns its id.

        The conversation is created on first use. `turn.id` is ignored (a new id is assigned,
        always larger than any before, even after `forget`); `created_at` defaults to now.
        """
        now = _now()
        async with self._session("storing a turn", write=True) as session:
            conversation_id = await self._ensure_conversation(session, key, now)
            message = Message(
                conversation_id=conversation_id,
                role=turn.role.value,
                content=turn.content,
                author_id=turn.author_id,
                author_name=turn.author_name,
                status=turn.status.value,
                token_count=turn.token_count,
                created_at=turn.created_at or now,
                finished_at=None if turn.status is TurnStatus.PARTIAL else now,
            )
            session.add(message)
            await session.flush()
            turn_id = message.id
            if turn_id is None:  # pragma: no cover - flush always assigns the key
                raise StoreError("storing a turn failed: no id was assigned")
            await self._link(session, key, conversation_id, turn_id, turn.platform_message_ids)
        return turn_id

    async def finish_turn(
        self,
        turn_id: int,
        *,
        content: str,
        status: TurnStatus,
        platform_message_ids: Sequence[str] = (),
        token_count: int | None = None,
    ) -> None:
        """Record how turn `turn_id` ended; links any further platform message ids to it."""
        values: dict[str, Any] = {"content": content, "status": status.value}
        values["finished_at"] = _now()
        if token_count is not None:
            values["token_count"] = token_count
        async with self._session("finishing a turn", write=True) as session:
            conversation = (
                await session.exec(
                    select(Conversation)
                    .join(Message, col(Message.conversation_id) == col(Conversation.id))
                    .where(col(Message.id) == turn_id)
                )
            ).one_or_none()
            if conversation is None:
                raise StoreError(f"finishing a turn failed: no turn with id {turn_id}")
            await session.exec(update(Message).where(col(Message.id) == turn_id).values(values))
            if platform_message_ids:
                key = _key_of(conversation)
                await self._link(session, key, _id(conversation.id), turn_id, platform_message_ids)

    async def link_platform_messages(
        self, key: ConversationKey, turn_id: int, message_ids: Sequence[str]
    ) -> None:
        """Record that platform messages `message_ids` (in `key`'s channel) belong to a turn."""
        if not message_ids:
            return
        async with self._session("linking platform messages", write=True) as session:
            conversation_id = (
                await session.exec(
                    select(Message.conversation_id)
                    .join(Conversation, col(Conversation.id) == col(Message.conversation_id))
                    .where(col(Message.id) == turn_id, _key_filter(key))
                )
            ).one_or_none()
            if conversation_id is None:
                raise StoreError(
                    f"linking platform messages failed: turn {turn_id} is not in {key}"
                )
            await self._link(session, key, conversation_id, turn_id, message_ids)

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
        statement = (
            select(Conversation, PlatformMessage.message_id)
            .select_from(PlatformMessage)
            .join(Conversation, col(Conversation.id) == col(PlatformMessage.conversation_id))
            .where(
                col(PlatformMessage.platform) == platform,
                col(PlatformMessage.platform_message_id) == platform_message_id,
            )
            .order_by(col(PlatformMessage.message_id).desc())
            .limit(1)
        )
        if space is not None:
            statement = statement.where(col(PlatformMessage.space) == space)
        if channel is not None:
            statement = statement.where(col(PlatformMessage.channel) == channel)
        async with self._session("finding a turn") as session:
            row = (await session.exec(statement)).one_or_none()
        if row is None:
            return None
        conversation, message_id = row
        return _key_of(conversation), message_id

    async def recent(
        self, key: ConversationKey, *, limit: int, upto_turn_id: int | None = None
    ) -> list[Turn]:
        """The newest `limit` turns of `key` (ids <= `upto_turn_id` if given), oldest first.

        One range scan of the `(conversation_id, id)` index, newest first, stopped at
        `limit`: the cost depends on `limit`, not on the conversation's length.
        """
        if limit <= 0:
            return []
        conversation_id = select(Conversation.id).where(_key_filter(key)).scalar_subquery()
        statement = select(Message).where(col(Message.conversation_id) == conversation_id)
        if upto_turn_id is not None:
            statement = statement.where(col(Message.id) <= upto_turn_id)
        statement = statement.order_by(col(Message.id).desc()).limit(limit)
        async with self._session("loading history") as session:
            messages = list((await session.exec(statement)).all())
            ids = [_id(message.id) for message in messages]
            links: dict[int, list[str]] = {}
            if ids:
                rows = await session.exec(
                    select(PlatformMessage.message_id, PlatformMessage.platform_message_id)
                    .where(col(PlatformMessage.message_id).in_(ids))
                    .order_by(col(PlatformMessage.id))
                )
                for message_id, platform_message_id in rows:
                    links.setdefault(message_id, []).append(platform_message_id)
        messages.reverse()
        return [_turn_of(message, links.get(_id(message.id), ())) for message in messages]

    async def count(self, key: ConversationKey) -> int:
        """How many turns `key` has stored."""
        conversation_id = select(Conversation.id).where(_key_filter(key)).scalar_subquery()
        statement = select(func.count()).where(col(Message.conversation_id) == conversation_id)
        async with self._session("counting turns") as session:
            return int((await session.exec(statement)).one())

    async def forget(self, key: ConversationKey) -> int:
        """Delete every turn of `key` (its meta stays); returns how many were deleted."""
        conversation_id = select(Conversation.id).where(_key_filter(key)).scalar_subquery()
        async with self._session("forgetting a conversation", write=True) as session:
            await session.exec(
                delete(PlatformMessage).where(
                    col(PlatformMessage.conversation_id) == conversation_id
                )
            )
            result = await session.exec(
                delete(Message).where(col(Message.conversation_id) == conversation_id)
            )
        return int(result.rowcount)

    # -- per-conversation meta -------------------------------------------------------------

    async def get_meta(self, key: ConversationKey) -> dict[str, Any]:
        """The conversation's flags and settings; `{}` for an unknown conversation."""
        async with self._session("reading conversation settings") as session:
            meta = (
                await session.exec(select(Conversation.meta).where(_key_filter(key)))
            ).one_or_none()
        return _load_meta(meta)

    async def update_meta(self, key: ConversationKey, **values: Any) -> None:
        """Merge `values` (JSON-serialisable) into the conversation's meta; None removes a key."""
        async with self._session("updating conversation settings", write=True) as session:
            conversation_id = await self._ensure_conversation(session, key, _now())
            current = (
                await session.exec(
                    select(Conversation.meta)
                    .where(col(Conversation.id) == conversation_id)
                    .with_for_update()
                )
            ).one()
            meta = _load_meta(current)
            for name, value in values.items():
                if value is None:
                    meta.pop(name, None)
                else:
                    meta[name] = value
            await session.exec(
                update(Conversation)
                .where(col(Conversation.id) == conversation_id)
                .values(meta=json.dumps(meta, sort_keys=True), updated_at=_now())
            )

    # -- helpers --------------------------------------------------------------------------

    @asynccontextmanager
    async def _session(self, action: str, *, write: bool = False) -> AsyncIterator[AsyncSession]:
        if self._closed:
            raise StoreError(f"{action} failed: the store is closed")
        options = {WRITE_OPTION: True} if write else {}
        with translate_errors(action, self._engine):
            async with (
                AsyncSession(
                    self._engine, expire_on_commit=False, execution_options=options
                ) as session,
                session.begin(),
            ):
                yield session

    def _insert(self, table: Any) -> Any:
        """A dialect INSERT that supports ON CONFLICT."""
        if self._engine.dialect.name == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)

    async def _ensure_conversation(
        self, session: AsyncSession, key: ConversationKey, now: datetime
    ) -> int:
        """The id of `key`'s conversation, created if missing; touches `updated_at`."""
        statement = (
            self._insert(_CONVERSATIONS)
            .values(
                platform=key.platform,
                space=key.space,
                channel=key.channel,
                thread=key.thread,
                created_at=now,
                updated_at=now,
                meta="{}",
            )
            .on_conflict_do_update(
                index_elements=["platform", "space", "channel", "thread"],
                set_={"updated_at": now},
            )
            .returning(_CONVERSATIONS.c.id)
        )
        return int((await session.exec(statement)).scalar_one())

    async def _link(
        self,
        session: AsyncSession,
        key: ConversationKey,
        conversation_id: int,
        turn_id: int,
        message_ids: Sequence[str],
    ) -> None:
        unique = list(dict.fromkeys(message_ids))
        if not unique:
            return
        statement = (
            self._insert(_PLATFORM_MESSAGES)
            .values(
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
                ]
            )
            .on_conflict_do_nothing(
                index_elements=["platform", "platform_message_id", "space", "channel"]
            )
        )
        await session.exec(statement)


def _id(value: int | None) -> int:
    if value is None:  # pragma: no cover - rows read back always have ids
        raise StoreError("a stored row has no id")
    return value


def _key_of(conversation: Conversation) -> ConversationKey:
    return ConversationKey(
        platform=conversation.platform,
        space=conversation.space,
        channel=conversation.channel,
        thread=conversation.thread,
    )


def _turn_of(message: Message, platform_message_ids: Sequence[str]) -> Turn:
    return Turn(
        role=Role(message.role),
        content=message.content,
        author_id=message.author_id,
        author_name=message.author_name,
        status=TurnStatus(message.status),
        platform_message_ids=tuple(platform_message_ids),
        token_count=message.token_count,
        id=message.id,
        created_at=_aware(message.created_at),
    )


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
