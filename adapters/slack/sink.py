"""The Slack ReplySink: native streams (start/append/stop) or chat.postMessage + chat.update."""

from __future__ import annotations

import logging
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from adapters.slack.api import NOT_STREAMING, SlackApi, SlackRejected, SlackUnanswered
from adapters.slack.format import to_markdown_text, to_mrkdwn
from adapters.slack.lost_creates import LostCreate, find_created, tag
from core.errors import SinkError, SinkRateLimited
from core.streaming import PaceScope, Priority, SinkLimits

log = logging.getLogger(__name__)

THINKING = "is thinking…"
MARKDOWN_LIMIT = 12_000  # markdown_text per call (and per message we stream)
TEXT_LIMIT = 3_900  # mrkdwn `text`: Slack advises at most 4,000 characters
_UNSETTLED_TAIL = " \t\n*_~`"  # what a preview may add for display only (closers), or spaces
# A trailing `&…` that may yet become an entity reference, which renders differently.
_PARTIAL_ENTITY = re.compile(r"&#?[A-Za-z0-9]{0,31}\Z")


def _per_minute(count: float) -> float:
    return count / 60.0


class Scopes:
    """Pacing scopes, a bit under Slack's tiers; keys name the workspace and the method."""

    @staticmethod
    def method(space: str, method: str) -> str:
        return f"slack:{space}:{method}"

    @classmethod
    def post_message(cls, space: str, channel: str) -> tuple[PaceScope, ...]:
        """chat.postMessage: ~1/s per channel, plus a workspace-wide cap (several hundred/min)."""
        return (
            PaceScope(f"{cls.method(space, 'chat.postMessage')}:{channel}", rate=0.9, burst=2),
            PaceScope(cls.method(space, "chat.postMessage"), rate=_per_minute(240), burst=10),
        )

    @classmethod
    def update(cls, space: str) -> tuple[PaceScope, ...]:
        """chat.update: Tier 3 (50+/min) per workspace, shared by every message edited there."""
        return (PaceScope(cls.method(space, "chat.update"), rate=_per_minute(45), burst=5),)

    @classmethod
    def start_stream(cls, space: str) -> tuple[PaceScope, ...]:
        """chat.startStream: Tier 2 (20+/min)."""
        return (PaceScope(cls.method(space, "chat.startStream"), rate=_per_minute(18), burst=3),)

    @classmethod
    def append_stream(cls, space: str) -> tuple[PaceScope, ...]:
        """chat.appendStream: Tier 4 (100+/min)."""
        return (PaceScope(cls.method(space, "chat.appendStream"), rate=_per_minute(90), burst=10),)

    @classmethod
    def stop_stream(cls, space: str) -> tuple[PaceScope, ...]:
        """chat.stopStream: Tier 2 (20+/min)."""
        return (PaceScope(cls.method(space, "chat.stopStream"), rate=_per_minute(18), burst=3),)

    @classmethod
    def set_status(cls, space: str, channel: str, thread: str) -> tuple[PaceScope, ...]:
        """assistant.threads.setStatus: ~1/s per thread (special tier), a workspace cap too."""
        name = cls.method(space, "assistant.threads.setStatus")
        return (
            PaceScope(f"{name}:{channel}:{thread}", rate=0.9, burst=1),
            PaceScope(name, rate=_per_minute(90), burst=10),
        )

    @classmethod
    def tier3(cls, space: str, method: str) -> tuple[PaceScope, ...]:
        """Any Tier 3 method (50+/min): setTitle, setSuggestedPrompts, conversations.replies."""
        return (PaceScope(cls.method(space, method), rate=_per_minute(45), burst=5),)

    @classmethod
    def users_info(cls, space: str) -> tuple[PaceScope, ...]:
        """users.info: Tier 4 (100+/min)."""
        return (PaceScope(cls.method(space, "users.info"), rate=_per_minute(90), burst=10),)


class NativeAdmission:
    """Per workspace: whether native streaming works, and a budget of new streams per minute.

    chat.startStream and chat.stopStream allow about 20 calls a minute per workspace, so at most
    that many answers a minute can stream natively; the others use chat.postMessage + paced
    chat.update (about 50 edits a minute) instead of queueing for minutes.
    """

    def __init__(self, enabled: bool, *, per_minute: float = 18.0, burst: float = 3.0) -> None:
        self.enabled = enabled
        self._rate = per_minute / 60.0
        self._burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}
        self.unavailable: set[str] = set()

    def admit(self, space: str) -> bool:
        """Whether the next answer in `space` streams natively (takes one unit of budget)."""
        if not self.enabled or space in self.unavailable:
            return False
        now = time.monotonic()
        tokens, updated = self._buckets.get(space, (self._burst, now))
        tokens = min(self._burst, tokens + (now - updated) * self._rate)
        if tokens < 1.0:
            self._buckets[space] = (tokens, now)
            return False
        self._buckets[space] = (tokens - 1.0, now)
        return True

    def mark_unavailable(self, space: str, reason: str) -> None:
        """Native streaming failed in `space`: use the fallback there from now on."""
        if space not in self.unavailable:
            log.warning("native streaming unavailable in %s (%s); using chat.update", space, reason)
            self.unavailable.add(space)


@dataclass(frozen=True, slots=True)
class SlackTarget:
    """Where an answer goes: a thread in a channel or DM of one workspace."""

    space: str
    team_id: str  # the recipient's team, for native streams in channels
    channel: str
    thread_ts: str
    user: str
    is_dm: bool

    @property
    def status_key(self) -> str:
        """Where setStatus works or not: DMs/assistant threads and channels can differ."""
        return f"{self.space}:{'dm' if self.is_dm else 'channel'}"


@dataclass(slots=True)
class _Message:
    """One message this sink wrote."""

    streaming: bool  # a native stream not stopped yet
    part: int = 0  # which message of the answer (its metadata tag)
    sent: str = ""  # native: the Markdown appended so far (before escaping)
    expired: bool = False  # native: Slack ended the stream; finish with chat.update
    last_text: str = field(default="")


class SlackSink:
    """One answer in one Slack thread.

    Native mode streams with chat.startStream / appendStream / stopStream, `markdown_text`
    escaped. Intermediate texts may end with markup added only for display (a closing fence);
    a stream only appends, so only the settled part (the text without trailing markup) is
    appended and the rest goes with chat.stopStream. If a stream cannot start, the workspace
    falls back for good and this answer continues with chat.postMessage + chat.update
    (`markdown_text`); if it expires, the message is finished with chat.update.

    Fallback mode posts mrkdwn `text` (converted from Markdown, escaped) with chat.postMessage
    and edits it with chat.update. Every call is paced by the scope of the method it uses.

    Every message is tagged with the answer and its part (message metadata; a stream when it
    stops). When a create's response is lost, the next attempt first looks for the message in
    the thread (`lost_creates`) and continues it instead of posting a second one.
    """

    def __init__(
        self,
        api: SlackApi,
        target: SlackTarget,
        *,
        native: bool,
        admission: NativeAdmission,
        status_off: set[str],
        resumed: bool = False,
    ) -> None:
        self._api = api
        self._resumed = resumed
        self._target = target
        self._native = native
        self._admission = admission
        self._status_off = status_off
        self._status_shown = False
        self._messages: dict[str, _Message] = {}
        self._answer = uuid.uuid4().hex[:16]
        self._part = 0  # the part the next create makes
        self._lost: LostCreate | None = None  # a create whose response was lost
        space = target.space
        self._post_scopes = Scopes.post_message(space, target.channel)
        self._update_scopes = Scopes.update(space)
        typing = Scopes.set_status(space, target.channel, target.thread_ts)
        if native:
            self._limits = SinkLimits(
                max_length=MARKDOWN_LIMIT,
                measure=_markdown_length,
                # `post` paces itself: its method (and budget) is chosen at call time
                post_scopes=(),
                edit_scopes=Scopes.append_stream(space),
                final_scopes=Scopes.stop_stream(space),
                typing_scopes=typing,
                min_edit_interval=1.0,
                finalize_unchanged=True,
            )
        else:
            self._limits = SinkLimits(
                max_length=TEXT_LIMIT,
                measure=_mrkdwn_length,
                post_scopes=self._post_scopes,
                edit_scopes=self._update_scopes,
                typing_scopes=typing,
                min_edit_interval=1.5,
                finalize_unchanged=False,
            )

    @property
    def limits(self) -> SinkLimits:
        return self._limits

    @property
    def native(self) -> bool:
        """Whether this answer was admitted to native streaming."""
        return self._native

    async def show_typing(self) -> None:
        """`assistant.threads.setStatus` once ("is thinking…"); Slack clears it on our reply."""
        target = self._target
        if self._status_shown or target.status_key in self._status_off:
            return
        self._status_shown = True
        try:
            await self._api.raw(
                "assistant.threads.setStatus",
                channel_id=target.channel,
                thread_ts=target.thread_ts,
                status=THINKING,
            )
        except SinkRateLimited:
            self._status_shown = False
            raise
        except SinkError as exc:
            # Not an AI app, not an assistant thread, or a missing scope: stop asking.
            log.info("setStatus unavailable in %s: %s", target.status_key, exc)
            self._status_off.add(target.status_key)

    async def post(self, text: str) -> str:
        if self._lost is not None:
            found = await self._find_lost(text)
            if found is not None:
                return found
        if not self._native:
            data = await self._create("chat.postMessage", text, "", **self._text_args(text))
            return self._created(data, _Message(streaming=False, last_text=text))
        settled = _settled(text)
        try:
            # Paced here rather than through `limits.post_scopes`: which method this post uses
            # (chat.startStream, or chat.postMessage when the stream cannot start) and so
            # which Slack budget it draws from is only known at call time.
            data = await self._create(
                "chat.startStream",
                text,
                settled,
                scopes=Scopes.start_stream(self._target.space),
                priority=Priority.FIRST,
                channel=self._target.channel,
                thread_ts=self._target.thread_ts,
                markdown_text=to_markdown_text(settled) if settled else None,
                **self._recipient(),
            )
        except SlackRejected as exc:
            self._admission.mark_unavailable(self._target.space, exc.error)
            data = await self._create(
                "chat.postMessage",
                text,
                "",
                scopes=self._post_scopes,
                priority=Priority.FIRST,
                **self._markdown_args(text),
            )
            return self._created(data, _Message(streaming=False, last_text=text))
        return self._created(data, _Message(streaming=True, sent=settled))

    async def edit(self, message_id: str, text: str) -> None:
        message = self._messages.get(message_id) or _Message(streaming=False)
        self._messages[message_id] = message
        if not self._native:
            await self._api.raw("chat.update", **self._update_text_args(message_id, text))
            message.last_text = text
            return
        if not message.streaming:  # fell back or expired: a paced chat.update
            if text == message.last_text:
                return
            await self._update_markdown(message_id, text, Priority.EDIT)
            message.last_text = text
            return
        settled = _settled(text)
        if len(settled) <= len(message.sent) or not settled.startswith(message.sent):
            return  # nothing new is settled yet; the rest comes later or at the end
        shown, wire = to_markdown_text(message.sent), to_markdown_text(settled)
        if not wire.startswith(shown):
            return  # what was appended renders differently now: the final text replaces it
        try:
            await self._api.raw(
                "chat.appendStream",
                channel=self._target.channel,
                ts=message_id,
                markdown_text=wire[len(shown) :],
            )
        except SlackRejected as exc:
            if exc.error != NOT_STREAMING:
                raise
            self._expire(message_id, message)
            await self._update_markdown(message_id, text, Priority.EDIT)
            message.last_text = text
            return
        message.sent = settled

    def describe(self) -> dict[str, Any]:
        """Where this answer shows, for finishing it from another process (`revive`)."""
        target = self._target
        return {
            "space": target.space,
            "team_id": target.team_id,
            "channel": target.channel,
            "thread_ts": target.thread_ts,
            "user": target.user,
            "is_dm": target.is_dm,
            "native": self._native,
        }

    async def finalize(self, message_id: str, text: str) -> str | None:
        if self._resumed and self._native and message_id not in self._messages:
            await self._finish_resumed(message_id, text)
            return None
        message = self._messages.get(message_id) or _Message(streaming=False)
        self._messages[message_id] = message
        if not self._native:
            await self._api.raw("chat.update", **self._update_text_args(message_id, text))
            message.last_text = text
            return None
        if not message.streaming:
            if text != message.last_text:
                await self._update_markdown(message_id, text, Priority.FINAL)
                message.last_text = text
            return None
        shown, wire = to_markdown_text(message.sent), to_markdown_text(text)
        extends = text.startswith(message.sent) and wire.startswith(shown)
        rest = wire[len(shown) :] if extends else ""
        try:
            await self._api.raw(
                "chat.stopStream",
                channel=self._target.channel,
                ts=message_id,
                markdown_text=rest or None,
                metadata=tag(self._answer, message.part),
            )
        except SlackRejected as exc:
            if exc.error != NOT_STREAMING:
                raise
            self._expire(message_id, message)
            extends = False
        message.streaming = False
        if not extends:
            # What was streamed is not a prefix of the final text (a split cut before text
            # already shown, or an expired stream): replace the whole message.
            await self._update_markdown(message_id, text, Priority.FINAL)
        message.sent = text
        message.last_text = text
        return None

    # -- helpers -------------------------------------------------------------------------------

    async def _create(
        self, method: str, shown: str, settled: str, /, **args: Any
    ) -> dict[str, Any]:
        """One create of `shown`; a lost response is remembered so the next attempt looks first."""
        since = time.time()
        try:
            if "scopes" in args:
                return await self._api.call(method, **args)
            return await self._api.raw(method, **args)
        except SlackUnanswered:
            if self._lost is None:
                stream = method == "chat.startStream"
                self._lost = LostCreate(self._part, shown, settled, stream, since)
            raise

    def _created(self, data: dict[str, Any], message: _Message) -> str:
        ts = str(data["ts"])
        message.part = self._part
        self._messages[ts] = message
        self._part += 1
        self._lost = None
        return ts

    async def _find_lost(self, text: str) -> str | None:
        """The message a lost create made, brought up to `text`; None: post it (again)."""
        lost = self._lost
        assert lost is not None
        found = await find_created(
            self._api,
            Scopes.tier3(self._target.space, "conversations.replies"),
            channel=self._target.channel,
            thread_ts=self._target.thread_ts,
            answer=self._answer,
            lost=lost,
            known=self._messages.keys(),
        )
        self._lost = None
        if found is None:
            return None
        log.info("a lost create in %s was applied; continuing message %s", self._target, found.ts)
        if found.stream:
            message = _Message(streaming=True, sent=lost.settled)
        else:
            message = _Message(streaming=False, last_text=lost.text)
        ts = self._created({"ts": found.ts}, message)
        if text != lost.text:
            if not (self._native and not message.streaming):  # else `edit` paces itself
                await self._api.pacer.acquire(self._limits.edit_scopes, Priority.FINAL)
            await self.edit(ts, text)
        return ts

    async def _finish_resumed(self, message_id: str, text: str) -> None:
        """A stream another process started: stop it as it is, then replace its text."""
        try:
            await self._api.call(
                "chat.stopStream",
                scopes=Scopes.stop_stream(self._target.space),
                priority=Priority.FINAL,
                channel=self._target.channel,
                ts=message_id,
            )
        except SlackRejected as exc:
            if exc.error != NOT_STREAMING:
                raise
        await self._update_markdown(message_id, text, Priority.FINAL)
        self._messages[message_id] = _Message(streaming=False, sent=text, last_text=text)

    def _expire(self, message_id: str, message: _Message) -> None:
        log.info("stream %s in %s expired; finishing it with chat.update", message_id, self._target)
        message.streaming = False
        message.expired = True

    async def _update_markdown(self, message_id: str, text: str, priority: Priority) -> None:
        await self._api.call(
            "chat.update",
            scopes=self._update_scopes,
            priority=priority,
            channel=self._target.channel,
            ts=message_id,
            markdown_text=to_markdown_text(text),
        )

    def _recipient(self) -> dict[str, Any]:
        if self._target.is_dm:
            return {}
        return {"recipient_user_id": self._target.user, "recipient_team_id": self._target.team_id}

    def _text_args(self, text: str) -> dict[str, Any]:
        return {
            "channel": self._target.channel,
            "thread_ts": self._target.thread_ts,
            "text": to_mrkdwn(text),
            "unfurl_links": False,
            "unfurl_media": False,
            "metadata": tag(self._answer, self._part),
        }

    def _update_text_args(self, message_id: str, text: str) -> dict[str, Any]:
        return {"channel": self._target.channel, "ts": message_id, "text": to_mrkdwn(text)}

    def _markdown_args(self, text: str) -> dict[str, Any]:
        return {
            "channel": self._target.channel,
            "thread_ts": self._target.thread_ts,
            "markdown_text": to_markdown_text(text),
            "unfurl_links": False,
            "unfurl_media": False,
            "metadata": tag(self._answer, self._part),
        }


def _settled(text: str) -> str:
    """The part of an intermediate text no later text will change.

    The driver's intermediate texts are a prefix of the answer plus, at the very end, markup
    added only for display (closers of an open fence or emphasis): characters among spaces,
    newlines and `*_~``. Dropping every such trailing character leaves a prefix of the final
    text (at worst a little short: real trailing markup follows with a later append).
    """
    return _PARTIAL_ENTITY.sub("", text.rstrip(_UNSETTLED_TAIL))


def _markdown_length(text: str) -> int:
    return len(to_markdown_text(text))


def _mrkdwn_length(text: str) -> int:
    return len(to_mrkdwn(text))


def revive(
    api: SlackApi,
    described: dict[str, Any],
    *,
    admission: NativeAdmission,
    status_off: set[str],
) -> SlackSink | None:
    """A sink that finishes the messages of a stored answer (`SlackSink.describe`)."""
    try:
        target = SlackTarget(
            space=str(described["space"]),
            team_id=str(described["team_id"]),
            channel=str(described["channel"]),
            thread_ts=str(described["thread_ts"]),
            user=str(described["user"]),
            is_dm=bool(described["is_dm"]),
        )
    except KeyError:
        return None
    return SlackSink(
        api,
        target,
        native=bool(described.get("native")),
        admission=admission,
        status_off=status_off,
        resumed=True,
    )
