"""Slack Events API payloads to `SlackMessage` and `Inbound` (pure functions, no I/O)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from core.conversation import ConversationKey, Inbound

PLATFORM = "slack"

# Human messages that carry a subtype but are still someone talking to the bot.
_HUMAN_SUBTYPES = frozenset({"file_share", "thread_broadcast"})
_USER_TOKEN = re.compile(r"<@([UW][A-Z0-9]+)(?:\|([^<>]*))?>")
_CHANNEL_TOKEN = re.compile(r"<#([CGD][A-Z0-9]+)(?:\|([^<>]*))?>")
_SPECIAL_TOKEN = re.compile(r"<!([a-z]+)(?:\^[^<>|]*)?(?:\|([^<>]*))?>")
_LINK_TOKEN = re.compile(r"<((?:https?|mailto|tel):[^<>|]+)(?:\|([^<>]*))?>")


@dataclass(frozen=True, slots=True)
class SlackMessage:
    """One user message the bot may answer, reduced to what the adapter needs."""

    space: str  # the workspace: team id, or "enterprise:team" on Enterprise Grid
    team_id: str
    user_team: str  # the author's team (differs from team_id in shared channels)
    channel: str
    user: str
    text: str  # cleaned for the model: the bot's mention removed, Slack tokens made readable
    ts: str
    thread_ts: str | None
    is_dm: bool
    mentioned: bool

    @property
    def thread(self) -> str:
        """The conversation's thread: the root of the thread this message is in, or itself."""
        return self.thread_ts or self.ts

    @property
    def key(self) -> ConversationKey:
        """The conversation this message belongs to."""
        return ConversationKey(PLATFORM, self.space, self.channel, self.thread)

    @property
    def event_id(self) -> str:
        """One id per Slack message, whichever events deliver it (app_mention, message.*)."""
        return f"{self.channel}:{self.ts}"


def workspace_of(body: Mapping[str, Any]) -> tuple[str, str]:
    """(space, team_id) of an Events API envelope: `enterprise:team` on Enterprise Grid."""
    event = body.get("event") or {}
    team = str(body.get("team_id") or event.get("team") or "")
    enterprise = body.get("enterprise_id")
    if not enterprise:
        for authorization in body.get("authorizations") or ():
            enterprise = authorization.get("enterprise_id")
            if enterprise:
                break
    space = f"{enterprise}:{team}" if enterprise else team
    return space, team


def parse_message(
    body: Mapping[str, Any], *, bot_user_id: str, bot_id: str | None = None
) -> SlackMessage | None:
    """The user message of an `event_callback` envelope; None for what the bot never answers.

    Ignored: other event types, edits and other subtypes, messages from any bot (this one too),
    empty messages.
    """
    event = body.get("event")
    if not isinstance(event, Mapping) or event.get("type") not in ("message", "app_mention"):
        return None
    subtype = event.get("subtype")
    if subtype is not None and subtype not in _HUMAN_SUBTYPES:
        return None
    user = event.get("user")
    if not user or event.get("bot_id") or event.get("bot_profile") or user == bot_user_id:
        return None
    if bot_id is not None and event.get("bot_id") == bot_id:
        return None
    channel, ts = event.get("channel"), event.get("ts")
    if not channel or not ts:
        return None
    raw = str(event.get("text") or "")
    mention = f"<@{bot_user_id}>"
    mentioned = event.get("type") == "app_mention" or mention in raw or f"<@{bot_user_id}|" in raw
    text = clean_text(raw, bot_user_id)
    if not text:
        return None
    space, team = workspace_of(body)
    channel_type = event.get("channel_type")
    is_dm = channel_type == "im" or (channel_type is None and str(channel).startswith("D"))
    thread_ts = event.get("thread_ts")
    return SlackMessage(
        space=space,
        team_id=team,
        user_team=str(event.get("user_team") or event.get("team") or team),
        channel=str(channel),
        user=str(user),
        text=text,
        ts=str(ts),
        thread_ts=str(thread_ts) if thread_ts else None,
        is_dm=is_dm,
        mentioned=mentioned,
    )


def to_inbound(message: SlackMessage, *, require_mention: bool) -> Inbound:
    """The Inbound of a message: the core answers DMs and mentions, and, unless mentions are
    required, replies in a thread the bot already takes part in.

    The author's display name is looked up after the core has routed the message; until then
    it is the user id.
    """
    return Inbound(
        key=message.key,
        message_id=message.ts,
        author_id=message.user,
        author_name=message.user,
        text=message.text,
        is_direct=message.is_dm,
        event_id=message.event_id,
        addressed=message.is_dm or message.mentioned,
        continues_thread=message.thread_ts is not None and not require_mention,
    )


def clean_text(text: str, bot_user_id: str) -> str:
    """Slack's wire text for the model: the bot's mention dropped, tokens readable, unescaped."""
    text = _USER_TOKEN.sub(
        lambda m: "" if m.group(1) == bot_user_id else "@" + (m.group(2) or m.group(1)), text
    )
    text = _CHANNEL_TOKEN.sub(lambda m: "#" + (m.group(2) or m.group(1)), text)
    text = _SPECIAL_TOKEN.sub(lambda m: "@" + (m.group(2) or m.group(1)), text)
    text = _LINK_TOKEN.sub(
        lambda m: f"{m.group(2)} ({m.group(1)})" if m.group(2) else m.group(1), text
    )
    text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    return re.sub(r"[ \t]{2,}", " ", text).strip()
