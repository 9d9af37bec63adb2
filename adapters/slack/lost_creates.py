"""Finds the message a Slack create made when its response was lost, so it is not posted twice."""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from adapters.slack.api import SlackApi
from core.errors import SinkGone, SinkRejected
from core.streaming import PaceScope, Priority

log = logging.getLogger(__name__)

EVENT_TYPE = "threadline_answer"  # message metadata of every message an answer writes
CLOCK_SKEW = 60.0  # seconds our clock may be ahead of Slack's message timestamps
PAGE = 100


def tag(answer: str, part: int) -> dict[str, Any]:
    """The message metadata naming one part (message) of one answer."""
    return {"event_type": EVENT_TYPE, "event_payload": {"answer": answer, "part": part}}


@dataclass(frozen=True, slots=True)
class LostCreate:
    """A create that may have been applied: which part it was and what it carried."""

    part: int
    text: str  # the model's text the create carried
    settled: str  # a native stream: the text it was started with
    stream: bool  # chat.startStream (untagged: Slack takes no metadata there)
    since: float  # wall-clock time just before the first attempt


@dataclass(frozen=True, slots=True)
class Found:
    """The message a lost create made."""

    ts: str
    stream: bool


async def find_created(
    api: SlackApi,
    scopes: tuple[PaceScope, ...],
    *,
    channel: str,
    thread_ts: str,
    answer: str,
    lost: LostCreate,
    known: Collection[str],
) -> Found | None:
    """Look through the thread's newest replies for the message `lost` made.

    A posted message carries its answer and part in its metadata. A started stream cannot
    carry metadata, so it is the oldest untagged message of this bot since the attempt, other
    than those this answer already knows (a thread's answers are written one at a time, and
    each stream is tagged when it stops). None when Slack shows no such message, or when the
    thread cannot be read (then the create is simply made again).
    """
    cursor: str | None = None
    streams: list[str] = []
    while True:
        try:
            data = await api.call(
                "conversations.replies",
                scopes=scopes,
                priority=Priority.FIRST,
                form=True,
                channel=channel,
                ts=thread_ts,
                oldest=f"{lost.since - CLOCK_SKEW:.6f}",
                inclusive=True,
                include_all_metadata=True,
                limit=PAGE,
                cursor=cursor,
            )
        except (SinkGone, SinkRejected) as exc:
            log.warning("cannot read thread %s to find a lost create (%s)", thread_ts, exc)
            return None
        for message in data.get("messages") or []:
            ts = str(message.get("ts") or "")
            if not ts or ts == thread_ts or ts in known:
                continue
            metadata = message.get("metadata") or {}
            if metadata.get("event_type") == EVENT_TYPE:
                payload = metadata.get("event_payload") or {}
                if payload.get("answer") == answer and payload.get("part") == lost.part:
                    return Found(ts, stream=False)
                continue  # another answer's message, or another part of this one
            if lost.stream and api.bot_id is not None and message.get("bot_id") == api.bot_id:
                streams.append(ts)
        cursor = str((data.get("response_metadata") or {}).get("next_cursor") or "") or None
        if not data.get("has_more") or cursor is None:
            break
    if streams:
        return Found(min(streams, key=float), stream=True)
    return None
