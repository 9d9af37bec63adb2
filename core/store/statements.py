"""The SQL statements `HistoryStore` runs, built once per process with named bind parameters."""

from __future__ import annotations

from typing import Any

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
from sqlalchemy.types import NullType

from core.conversation import ConversationKey
from core.store.models import (
    Conversation,
    Message,
    PlatformMessage,
    ProcessedEvent,
    StreamingAnswer,
)

CONVERSATIONS: Table = Conversation.__table__  # type: ignore[attr-defined]
MESSAGES: Table = Message.__table__  # type: ignore[attr-defined]
PLATFORM_MESSAGES: Table = PlatformMessage.__table__  # type: ignore[attr-defined]
PROCESSED_EVENTS: Table = ProcessedEvent.__table__  # type: ignore[attr-defined]
STREAMING: Table = StreamingAnswer.__table__  # type: ignore[attr-defined]

# Every statement below takes its values as named bind parameters, so it is built and compiled
# once per process and each call only supplies a parameter dict.


def key_params(key: ConversationKey) -> dict[str, str]:
    return {
        "platform": key.platform,
        "space": key.space,
        "channel": key.channel,
        "thread": key.thread,
    }


KEY_FILTER = and_(
    CONVERSATIONS.c.platform == bindparam("platform", type_=String()),
    CONVERSATIONS.c.space == bindparam("space", type_=String()),
    CONVERSATIONS.c.channel == bindparam("channel", type_=String()),
    CONVERSATIONS.c.thread == bindparam("thread", type_=String()),
)
ID_OF_KEY = select(CONVERSATIONS.c.id).where(KEY_FILTER).scalar_subquery()
ID_AND_META_OF_KEY = select(CONVERSATIONS.c.id, CONVERSATIONS.c.meta).where(KEY_FILTER)

TURN_COLUMNS = (
    MESSAGES.c.id,
    MESSAGES.c.conversation_id,
    MESSAGES.c.role,
    MESSAGES.c.content,
    MESSAGES.c.author_id,
    MESSAGES.c.author_name,
    MESSAGES.c.status,
    MESSAGES.c.token_count,
    MESSAGES.c.created_at,
)


def conversation_is(by_key: bool) -> ColumnElement[bool]:
    """`messages.conversation_id` equals the `cid` parameter, or the id of the key parameters."""
    if by_key:
        return MESSAGES.c.conversation_id == ID_OF_KEY
    return MESSAGES.c.conversation_id == bindparam("cid")


def newest_turns(dialect: str, *, by_key: bool, upto: bool, links: bool) -> Select[Any]:
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
    platform_messages = PLATFORM_MESSAGES
    inner = select(*TURN_COLUMNS)
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
            .where(platform_messages.c.message_id == MESSAGES.c.id)
            .scalar_subquery()
        )
        inner = inner.add_columns(ids)
    inner = inner.where(conversation_is(by_key))
    if upto:
        inner = inner.where(MESSAGES.c.id <= bindparam("upto"))
    inner = inner.order_by(MESSAGES.c.id.desc()).limit(bindparam("limit", type_=Integer()))
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


COUNT = {
    by_key: select(func.count()).select_from(MESSAGES).where(conversation_is(by_key))
    for by_key in (False, True)
}
FORGET = {
    by_key: (
        delete(PLATFORM_MESSAGES).where(
            PLATFORM_MESSAGES.c.conversation_id == (ID_OF_KEY if by_key else bindparam("cid"))
        ),
        delete(MESSAGES).where(conversation_is(by_key)),
    )
    for by_key in (False, True)
}
KEY_OF_ID = select(
    CONVERSATIONS.c.platform,
    CONVERSATIONS.c.space,
    CONVERSATIONS.c.channel,
    CONVERSATIONS.c.thread,
).where(CONVERSATIONS.c.id == bindparam("cid"))
CONVERSATION_OF_TURN = select(MESSAGES.c.conversation_id).where(
    MESSAGES.c.id == bindparam("turn_id"), conversation_is(by_key=True)
)
INSERT_TURN = (
    MESSAGES.insert()
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
    .returning(MESSAGES.c.id)
)
TOUCH_CONVERSATION = (
    update(CONVERSATIONS)
    .where(CONVERSATIONS.c.id == bindparam("cid"))
    .values(updated_at=bindparam("now"))
    .returning(CONVERSATIONS.c.meta)
)
PRUNE_EVENTS = delete(PROCESSED_EVENTS).where(PROCESSED_EVENTS.c.created_at < bindparam("cutoff"))
SET_META = (
    update(CONVERSATIONS)
    .where(CONVERSATIONS.c.id == bindparam("cid"))
    .values(meta=bindparam("meta"), updated_at=bindparam("now"))
)


def dialect_statements(dialect: str) -> tuple[Any, Any, Any]:
    """ON CONFLICT statements: (upsert a conversation, claim an event, link a message id)."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    conversation = insert(CONVERSATIONS).values(
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
    ).returning(CONVERSATIONS.c.id, CONVERSATIONS.c.meta)
    claim = (
        insert(PROCESSED_EVENTS)
        .values(
            platform=bindparam("platform"),
            event_id=bindparam("event_id"),
            created_at=bindparam("now"),
        )
        .on_conflict_do_nothing(index_elements=["platform", "event_id"])
        .returning(PROCESSED_EVENTS.c.event_id)
    )
    link = (
        insert(PLATFORM_MESSAGES)
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


PG_LINK_COLUMNS = (
    "platform",
    "platform_message_id",
    "space",
    "channel",
    "message_id",
    "conversation_id",
)
PG_APPEND_FIELDS = (
    "role",
    "content",
    "author_id",
    "author_name",
    "status",
    "token_count",
    "created_at",
    "finished_at",
)


def pg_append(*, cached: bool, claim: bool) -> Any:
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

    now = param("now", CONVERSATIONS.c.updated_at.type)
    claimed = None
    if claim:
        claimed = (
            postgresql.insert(PROCESSED_EVENTS)
            .values(
                platform=param("claim_platform", String()),
                event_id=param("event_id", String()),
                created_at=now,
            )
            .on_conflict_do_nothing(index_elements=["platform", "event_id"])
            .returning(PROCESSED_EVENTS.c.event_id)
            .cte("claim")
        )
    if cached:
        touch = update(CONVERSATIONS).where(
            CONVERSATIONS.c.id == param("cid", CONVERSATIONS.c.id.type)
        )
        if claimed is not None:
            touch = touch.where(select(claimed.c.event_id).exists())
        conv = (
            touch.values(updated_at=now)
            .returning(CONVERSATIONS.c.id, CONVERSATIONS.c.meta)
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
            insert = postgresql.insert(CONVERSATIONS).values(meta="{}", **key_values)
        else:
            # INSERT ... SELECT from the claim: no row to insert (or upsert) when it lost.
            insert = postgresql.insert(CONVERSATIONS).from_select(
                list(key_values), select(*key_values.values()).select_from(claimed)
            )  # `meta` takes its server default, '{}'
        conv = (
            insert.on_conflict_do_update(
                index_elements=["platform", "space", "channel", "thread"],
                set_={"updated_at": insert.excluded.updated_at},
            )
            .returning(CONVERSATIONS.c.id, CONVERSATIONS.c.meta)
            .cte("conv")
        )
    columns = MESSAGES.c
    turn = (
        MESSAGES.insert()
        .from_select(
            ["conversation_id", *PG_APPEND_FIELDS],
            select(
                conv.c.id,
                *(param(name, columns[name].type) for name in PG_APPEND_FIELDS),
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
        postgresql.insert(PLATFORM_MESSAGES)
        .from_select(
            list(PG_LINK_COLUMNS),
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


def find_turn(
    platform: str, platform_message_id: str, *, space: str | None, channel: str | None
) -> Select[Any]:
    """The conversation (id and key) and turn id a platform message is linked to: one row."""
    links = PLATFORM_MESSAGES
    statement = (
        select(
            CONVERSATIONS.c.id,
            CONVERSATIONS.c.platform,
            CONVERSATIONS.c.space,
            CONVERSATIONS.c.channel,
            CONVERSATIONS.c.thread,
            links.c.message_id,
        )
        .select_from(links)
        .join(CONVERSATIONS, CONVERSATIONS.c.id == links.c.conversation_id)
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
    return statement


# -- streaming answers ---------------------------------------------------------------------------

INSERT_STREAMING = STREAMING.insert().values(
    message_id=bindparam("tid"),
    platform=bindparam("platform"),
    owner=bindparam("owner"),
    heartbeat_at=bindparam("now"),
    target=bindparam("target"),
    open_message=bindparam("open_message"),
    open_text=bindparam("open_text"),
)
SAVE_STREAMING = (
    update(STREAMING)
    .where(STREAMING.c.message_id == bindparam("b_tid"), STREAMING.c.owner == bindparam("b_owner"))
    .values(
        heartbeat_at=bindparam("b_now"),
        open_message=bindparam("b_open_message"),
        open_text=bindparam("b_open_text"),
    )
)
SAVE_CONTENT = (
    update(MESSAGES)
    .where(MESSAGES.c.id == bindparam("b_tid"))
    .values(content=bindparam("b_content"))
)
FINISH_TURN = (
    update(MESSAGES)
    .where(MESSAGES.c.id == bindparam("b_tid"))
    .values(
        content=bindparam("b_content"),
        status=bindparam("b_status"),
        token_count=bindparam("b_token_count"),
        finished_at=bindparam("b_now"),
    )
)
DELETE_STREAMING = delete(STREAMING).where(STREAMING.c.message_id == bindparam("tid"))
STALE_STREAMING = (
    select(
        STREAMING.c.message_id,
        STREAMING.c.target,
        STREAMING.c.open_message,
        STREAMING.c.open_text,
        MESSAGES.c.content,
        CONVERSATIONS.c.platform,
        CONVERSATIONS.c.space,
        CONVERSATIONS.c.channel,
        CONVERSATIONS.c.thread,
    )
    .select_from(STREAMING)
    .join(MESSAGES, MESSAGES.c.id == STREAMING.c.message_id)
    .join(CONVERSATIONS, CONVERSATIONS.c.id == MESSAGES.c.conversation_id)
    .where(
        STREAMING.c.heartbeat_at < bindparam("stale"),
        STREAMING.c.platform.in_(bindparam("platforms", expanding=True)),
    )
    .order_by(STREAMING.c.message_id)
    .limit(bindparam("limit", type_=Integer()))
)
TAKE_OVER_STREAMING = (
    update(STREAMING)
    .where(
        STREAMING.c.message_id == bindparam("b_tid"),
        STREAMING.c.heartbeat_at < bindparam("b_stale"),
    )
    .values(owner=bindparam("b_owner"), heartbeat_at=bindparam("b_now"))
)
