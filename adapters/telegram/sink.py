"""The Telegram ReplySink: drafts in private chats, sendMessage + paced edits elsewhere."""

from __future__ import annotations

import datetime as dtm
import itertools
import logging
import random
import warnings
from dataclasses import dataclass, field
from typing import Any

from telegram import Bot, LinkPreviewOptions, MessageEntity, ReplyParameters
from telegram.constants import ChatAction
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
)
from telegram.warnings import PTBDeprecationWarning

from adapters.telegram.format import MAX_MESSAGE_LENGTH, Rendered, render, rendered_length
from adapters.telegram.resend import PER_MESSAGE, ResendGuard, maybe_applied
from core.errors import SinkError, SinkGone, SinkRateLimited, SinkRejected
from core.metrics import platform_call
from core.streaming import PaceScope, SinkLimits

log = logging.getLogger(__name__)

# Telegram: about 1 message/s per chat, 20/min per group, 30/s for the whole bot. Each bucket
# is set so that burst + rate * window stays under the platform's limit over any window.
CHAT_RATE, CHAT_BURST = 0.9, 2.0
GROUP_RATE, GROUP_BURST = 17.0 / 60.0, 3.0
BOT_RATE, BOT_BURST = 25.0, 4.0
TYPING_RATE, TYPING_BURST = 0.25, 1.0
PRIVATE_EDIT_INTERVAL = 1.0
GROUP_EDIT_INTERVAL = 3.0
NETWORK_RETRY_AFTER = 1.0

_GONE = (
    "message to edit not found",
    "message_id_invalid",
    "chat not found",
    "message thread not found",
    "topic_deleted",
    "topic_closed",
    "not enough rights",
    "have no rights",
    "need administrator rights",
    "chat_write_forbidden",
    "bot was kicked",
    "peer_id_invalid",
)
_NOT_MODIFIED = "message is not modified"
_BAD_ENTITIES = (
    "can't parse entities",
    "can't find end",
    "unsupported start tag",
    "entity_bounds_invalid",
    "entities_too_long",
    "entity_text_invalid",
)
_NO_PREVIEW = LinkPreviewOptions(is_disabled=True)
_draft_ids = itertools.count(random.randrange(1, 1 << 30))


@dataclass
class DraftSupport:
    """Whether sendMessageDraft works for this bot; shared by every private-chat sink.

    It starts on and is turned off by the first draft the server refuses (an older Bot API
    server, a method not found); from then on private chats use sendMessage + edits too.
    """

    enabled: bool = True
    failures: int = 0

    def disable(self, reason: str) -> None:
        self.failures += 1
        if self.enabled:
            log.warning("sendMessageDraft failed (%s); using sendMessage and edits instead", reason)
        self.enabled = False


class SendUnconfirmed(SinkRateLimited):
    """sendMessage failed after its request may have reached Telegram (the response was lost)."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where an answer goes: chat, forum topic, and the message it answers (groups)."""

    chat_id: int
    private: bool
    thread_id: int | None = None
    reply_to: int | None = None


def limits_for(target: Target, bot_id: int) -> SinkLimits:
    """Length limit and pacing scopes of one chat (private or group), shared bot-wide."""
    bot_scope = PaceScope(f"telegram:{bot_id}:bot", BOT_RATE, BOT_BURST)
    typing = (
        PaceScope(f"telegram:{bot_id}:typing:{target.chat_id}", TYPING_RATE, TYPING_BURST),
        bot_scope,
    )
    if target.private:
        chat = PaceScope(f"telegram:{bot_id}:chat:{target.chat_id}", CHAT_RATE, CHAT_BURST)
        scopes: tuple[PaceScope, ...] = (chat, bot_scope)
        interval = PRIVATE_EDIT_INTERVAL
    else:
        group = PaceScope(f"telegram:{bot_id}:group:{target.chat_id}", GROUP_RATE, GROUP_BURST)
        scopes = (group, bot_scope)
        interval = GROUP_EDIT_INTERVAL
    return SinkLimits(
        max_length=MAX_MESSAGE_LENGTH,
        measure=rendered_length,
        post_scopes=scopes,
        edit_scopes=scopes,
        typing_scopes=typing,
        min_edit_interval=interval,
        supports_edit=True,
        finalize_unchanged=target.private,
    )


@dataclass(slots=True)
class _Message:
    """One message of the answer: a draft until sendMessage, then a real message id."""

    draft_id: int | None = None
    real_id: int | None = None
    shown: Rendered | None = None
    plain: bool = False


@dataclass
class TelegramSink:
    """A ReplySink for one answer in one Telegram chat (or forum topic).

    Private chats stream into a draft (sendMessageDraft) and commit it with sendMessage in
    `finalize`, which returns the real message id; if drafts fail, or in groups, the first
    text is sent with sendMessage and grows with editMessageText. Texts are rendered as plain
    text + entities; when Telegram refuses the entities, the message is sent as plain text.

    A sendMessage whose response was lost may have been shown; Telegram has no idempotency
    key, so it is sent again at most once per message and as `resends` allows per chat, and
    otherwise the answer ends (docs/telegram.md).
    """

    bot: Bot
    target: Target
    bot_id: int
    drafts: DraftSupport = field(default_factory=DraftSupport)
    resends: ResendGuard = field(default_factory=ResendGuard)
    _messages: dict[str, _Message] = field(default_factory=dict, init=False)
    _unconfirmed: int = field(default=0, init=False)  # lost responses of the pending send
    _posted: int = field(default=0, init=False)
    _limits: SinkLimits | None = field(default=None, init=False)

    @property
    def limits(self) -> SinkLimits:
        if self._limits is None:
            self._limits = limits_for(self.target, self.bot_id)
        return self._limits

    def describe(self) -> dict[str, Any]:
        """Where this answer shows, for finishing it from another process (`revive`)."""
        target = self.target
        return {
            "chat_id": target.chat_id,
            "private": target.private,
            "thread_id": target.thread_id,
            "reply_to": target.reply_to,
        }

    async def show_typing(self) -> None:
        await self._call(
            "sendChatAction",
            self.bot.send_chat_action(
                chat_id=self.target.chat_id,
                action=ChatAction.TYPING,
                message_thread_id=self.target.thread_id,
            ),
        )

    async def post(self, text: str) -> str:
        rendered = render(text)
        if self.target.private and self.drafts.enabled:
            draft_id = next(_draft_ids)
            message = _Message(draft_id=draft_id)
            if await self._draft(message, rendered):
                key = f"draft:{draft_id}"
                self._messages[key] = message
                return key
        message = _Message()
        await self._send(message, rendered)
        assert message.real_id is not None
        key = str(message.real_id)
        self._messages[key] = message
        return key

    async def edit(self, message_id: str, text: str) -> None:
        message = self._message(message_id)
        rendered = render(text)
        if message.real_id is None:
            if self.drafts.enabled and await self._draft(message, rendered):
                return
            await self._send(message, rendered)  # drafts failed mid-answer: a real message
            return
        await self._edit(message, rendered)

    async def finalize(self, message_id: str, text: str) -> str | None:
        message = self._message(message_id)
        rendered = render(text)
        if message.real_id is None:
            await self._send(message, rendered)  # commits the draft: a real message
        else:
            await self._edit(message, rendered)
        assert message.real_id is not None
        real = str(message.real_id)
        if real != message_id:
            self._messages[real] = message
            return real
        return None

    # -- calls -----------------------------------------------------------------------------

    def _message(self, message_id: str) -> _Message:
        message = self._messages.get(message_id)
        if message is None:  # posted by a process that died: a draft or a real message
            draft, _, number = message_id.partition("draft:")
            if not draft and number:
                message = _Message(draft_id=int(number))
            else:
                message = _Message(real_id=int(message_id))
            self._messages[message_id] = message
        return message

    async def _draft(self, message: _Message, rendered: Rendered) -> bool:
        """Show `rendered` in the message's draft; False when drafts do not work."""
        assert message.draft_id is not None
        try:
            await self._call(
                "sendMessageDraft",
                self.bot.send_message_draft(
                    chat_id=self.target.chat_id,
                    draft_id=message.draft_id,
                    text=rendered.text,
                    message_thread_id=self.target.thread_id,
                    entities=_entities(rendered, plain=message.plain),
                ),
            )
        except SinkRejected as exc:
            if _bad_entities(exc) and not message.plain:
                message.plain = True
                return await self._draft(message, rendered)
            self.drafts.disable(str(exc))
            return False
        message.shown = rendered
        return True

    async def _send(self, message: _Message, rendered: Rendered) -> None:
        reply = None
        if self.target.reply_to is not None and self._posted == 0:
            reply = ReplyParameters(
                message_id=self.target.reply_to, allow_sending_without_reply=True
            )
        if self._unconfirmed:
            self._may_send_again()
        try:
            sent = await self._call(
                "sendMessage",
                self.bot.send_message(
                    chat_id=self.target.chat_id,
                    text=rendered.text,
                    entities=_entities(rendered, plain=message.plain),
                    message_thread_id=self.target.thread_id,
                    reply_parameters=reply,
                    link_preview_options=_NO_PREVIEW,
                ),
            )
        except SendUnconfirmed:
            self._unconfirmed += 1
            raise
        except SinkRejected as exc:
            if not _bad_entities(exc) or message.plain:
                raise
            log.warning("Telegram refused the formatting (%s); sending plain text", exc)
            message.plain = True
            await self._send(message, rendered)
            return
        self._unconfirmed = 0
        message.real_id = int(sent.message_id)
        message.shown = rendered
        self._posted += 1

    def _may_send_again(self) -> None:
        """Allow one blind re-send of a message whose response was lost, within the bounds."""
        chat = self.target.chat_id
        if self._unconfirmed > PER_MESSAGE or not self.resends.allow(chat):
            raise SinkRejected(
                "sendMessage: Telegram did not confirm the message (it may be shown already); "
                "not sending it again"
            )
        log.warning(
            "telegram sendMessage in chat %s lost its response; sending again (may show twice)",
            chat,
        )

    async def _edit(self, message: _Message, rendered: Rendered) -> None:
        if message.shown is not None and _same(message.shown, rendered, message.plain):
            return
        assert message.real_id is not None
        try:
            await self._call(
                "editMessageText",
                self.bot.edit_message_text(
                    text=rendered.text,
                    chat_id=self.target.chat_id,
                    message_id=message.real_id,
                    entities=_entities(rendered, plain=message.plain),
                    link_preview_options=_NO_PREVIEW,
                ),
            )
        except SinkRejected as exc:
            if not _bad_entities(exc) or message.plain:
                raise
            log.warning("Telegram refused the formatting (%s); editing as plain text", exc)
            message.plain = True
            await self._edit(message, rendered)
            return
        message.shown = rendered

    async def _call(self, method: str, call: Any) -> Any:
        """Await one Bot API call (counted); translate its errors into core sink errors."""
        try:
            result = await self._translated(method, call)
        except SinkRateLimited as exc:
            network = isinstance(exc.__cause__, NetworkError)
            platform_call("telegram", method, "no_response" if network else "rate_limited")
            raise
        except SinkError:
            platform_call("telegram", method, "error")
            raise
        platform_call("telegram", method, "ok")
        return result

    async def _translated(self, method: str, call: Any) -> Any:
        try:
            return await call
        except RetryAfter as exc:
            raise SinkRateLimited(_retry_after(exc), f"{method}: flood control") from exc
        except BadRequest as exc:
            text = exc.message.lower()
            if _NOT_MODIFIED in text:
                return True
            if any(marker in text for marker in _GONE):
                raise SinkGone(f"{method}: {exc.message}") from exc
            raise SinkRejected(f"{method}: {exc.message}") from exc
        except Forbidden as exc:
            raise SinkGone(f"{method}: {exc.message}") from exc
        except ChatMigrated as exc:
            raise SinkGone(f"{method}: the group became supergroup {exc.new_chat_id}") from exc
        except InvalidToken as exc:
            raise SinkRejected(f"{method}: {exc.message}") from exc
        except NetworkError as exc:  # timeouts and connection errors: retry after a pause
            if method == "sendMessage" and maybe_applied(exc):
                raise SendUnconfirmed(NETWORK_RETRY_AFTER, f"{method}: {exc.message}") from exc
            raise SinkRateLimited(NETWORK_RETRY_AFTER, f"{method}: {exc.message}") from exc
        except TelegramError as exc:
            raise SinkRejected(f"{method}: {exc.message}") from exc
        except SinkError:
            raise


def _entities(rendered: Rendered, *, plain: bool) -> list[MessageEntity] | None:
    """The entities to send; a plain-text fallback keeps only the `@username` guards."""
    chosen = rendered.plain_entities if plain else rendered.entities
    if not chosen:
        return None
    entities = [MessageEntity.de_json(dict(entity), None) for entity in chosen]
    return [entity for entity in entities if entity is not None]


def _same(shown: Rendered, rendered: Rendered, plain: bool) -> bool:
    return shown.text == rendered.text and (plain or shown.entities == rendered.entities)


def _bad_entities(exc: SinkError) -> bool:
    text = str(exc).lower()
    return any(marker in text for marker in _BAD_ENTITIES)


def _retry_after(exc: RetryAfter) -> float:
    """Seconds to wait (PTB 22 warns that the attribute becomes a timedelta; both work)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value: int | float | dtm.timedelta = exc.retry_after
    if isinstance(value, dtm.timedelta):
        return value.total_seconds()
    return float(value)


def revive(
    bot: Bot,
    described: dict[str, Any],
    bot_id: int,
    drafts: DraftSupport,
    resends: ResendGuard,
) -> TelegramSink | None:
    """A sink that finishes the messages of a stored answer (`TelegramSink.describe`)."""
    try:
        target = Target(
            chat_id=int(described["chat_id"]),
            private=bool(described["private"]),
            thread_id=None if described.get("thread_id") is None else int(described["thread_id"]),
            reply_to=None if described.get("reply_to") is None else int(described["reply_to"]),
        )
    except (KeyError, TypeError, ValueError):
        return None
    return TelegramSink(bot, target, bot_id, drafts, resends)
