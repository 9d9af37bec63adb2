"""A fake Telegram Bot API on 127.0.0.1 that behaves like Telegram, for tests and benchmarks.

Serves `/bot<token>/<method>` with JSON or form bodies (python-telegram-bot sends form fields
whose non-string values are JSON), answers `{"ok": true, "result": ...}` or
`{"ok": false, "error_code": ..., "description": ..., "parameters": {...}}` like Telegram.

Methods: getMe, getUpdates (long polling with offset, timeout, allowed_updates), sendMessage,
editMessageText, sendMessageDraft, sendChatAction, setMyCommands, deleteWebhook, setWebhook,
getWebhookInfo. Telegram's limits: about 1 message a second per chat (a small burst is
tolerated), 20 a minute per group and 30 a second for the whole bot, answered with 429 and
`retry_after`; 400 "message is not modified", "message is too long" (over 4096 UTF-16 units),
"can't parse entities" (entities out of range, overlapping or of an unsupported type; bad
HTML/MarkdownV2 markup), "message to edit not found", "message thread not found", 403
"bot was blocked by the user". A wrong token gets 401. `drop_responses(n)` makes the next n
sendMessage calls apply and then lose their response (the connection closes unanswered).

Tests play the users: `send()` builds a realistic Update (entities for mentions and commands,
`reply_to_message`, forum topic fields) and delivers it by getUpdates or to the webhook.
Every call is recorded with its time; each message's visible text (entities applied as plain
text) and each chat's drafts are kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import socket
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from tests.fakes import render_telegram
from tests.fakes.served import Served

TOKEN = "7000001:AAH-fake-telegram-token-for-tests_0123456789"
BOT_ID = 7000001
BOT_USERNAME = "threadline_test_bot"
MAX_TEXT = 4096
ENTITY_TYPES = frozenset(
    {
        "mention",
        "hashtag",
        "cashtag",
        "bot_command",
        "url",
        "email",
        "phone_number",
        "bold",
        "italic",
        "underline",
        "strikethrough",
        "spoiler",
        "blockquote",
        "expandable_blockquote",
        "code",
        "pre",
        "text_link",
        "text_mention",
        "custom_emoji",
        "date_time",
    }
)
STRING_FIELDS = frozenset(
    {"text", "parse_mode", "url", "secret_token", "action", "language_code", "caption"}
)
WRITE_METHODS = frozenset({"sendMessage", "editMessageText", "sendMessageDraft"})
NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup "
    "are exactly the same as a current content and reply markup of the message"
)
_MENTION = re.compile(r"@[A-Za-z0-9_]{5,32}")
_COMMAND = re.compile(r"/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{5,32})?")


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, as Telegram counts."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _utf16_offset(text: str, index: int) -> int:
    return utf16_len(text[:index])


class ApiError(Exception):
    """An error answer of the Bot API."""

    def __init__(self, code: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.retry_after = retry_after


@dataclass
class Call:
    """One API call the fake received (`at` is time.time())."""

    method: str
    at: float
    payload: dict[str, Any]
    status: int = 200
    description: str | None = None


@dataclass
class Message:
    """A message in a chat, with its visible text and when it last changed."""

    chat_id: int
    message_id: int
    text: str
    entities: list[dict[str, Any]]
    from_bot: bool
    thread_id: int | None = None
    reply_to: int | None = None
    created_at: float = 0.0
    changed_at: float = 0.0
    edits: int = 0
    history: list[str] = field(default_factory=list)
    json: dict[str, Any] = field(default_factory=dict)

    @property
    def mentions(self) -> tuple[str, ...]:
        """Who this message mentions (notifies), as Telegram decides: see `render_telegram`."""
        return render_telegram.show(self.text, self.entities).mentions


@dataclass
class Draft:
    """The latest state of one draft (sendMessageDraft) in a private chat."""

    chat_id: int
    draft_id: int
    text: str
    thread_id: int | None
    updates: int = 0
    changed_at: float = 0.0


@dataclass
class Chat:
    """A chat the fake knows: private (a user) or a group."""

    id: int
    type: str
    title: str | None = None
    user: dict[str, Any] | None = None
    forum: bool = False
    topics: set[int] = field(default_factory=set)
    next_message_id: int = 1

    def json(self) -> dict[str, Any]:
        if self.type == "private":
            assert self.user is not None
            data = {"id": self.id, "type": "private", "first_name": self.user["first_name"]}
            if self.user.get("username"):
                data["username"] = self.user["username"]
            return data
        data = {"id": self.id, "type": self.type, "title": self.title or f"group {self.id}"}
        if self.forum:
            data["is_forum"] = True
        return data


class _Window:
    """At most `limit` events in any `seconds` window (a strict sliding window)."""

    def __init__(self, limit: int, seconds: float) -> None:
        self.limit = limit
        self.seconds = seconds
        self.events: deque[float] = deque()

    def wait(self, now: float) -> float:
        while self.events and self.events[0] <= now - self.seconds:
            self.events.popleft()
        if len(self.events) < self.limit:
            return 0.0
        return self.events[0] + self.seconds - now

    def add(self, now: float) -> None:
        self.events.append(now)


class _Bucket:
    """A token bucket: `rate` per second, at most `burst` at once."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.updated = time.monotonic()

    def wait(self, now: float) -> float:
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        return 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) / self.rate

    def add(self, now: float) -> None:
        self.tokens -= 1.0


class FakeTelegram(Served):
    """The fake Bot API server; see the module docstring."""

    def __init__(
        self,
        *,
        token: str = TOKEN,
        bot_id: int = BOT_ID,
        username: str = BOT_USERNAME,
        chat_rate: float = 1.0,
        chat_burst: float = 3.0,
        group_per_minute: int = 20,
        bot_per_second: int = 30,
        drafts_supported: bool = True,
        unsupported_entity_types: frozenset[str] = frozenset(),
    ) -> None:
        self.token = token
        self.bot_id = bot_id
        self.username = username
        self.chat_rate = chat_rate
        self.chat_burst = chat_burst
        self.group_per_minute = group_per_minute
        self.bot_per_second = bot_per_second
        self.drafts_supported = drafts_supported
        self.unsupported_entity_types = unsupported_entity_types
        self.calls: list[Call] = []
        self.rate_limited = 0
        self.unauthorized = 0
        self.chats: dict[int, Chat] = {}
        self.messages: dict[tuple[int, int], Message] = {}
        self.drafts: dict[int, dict[int, Draft]] = defaultdict(dict)
        self.blocked: set[int] = set()
        self.commands: list[dict[str, Any]] = []
        self.webhook_url: str | None = None
        self.webhook_secret: str | None = None
        self.webhook_deliveries: list[int] = []
        self.last_update: dict[str, Any] = {}
        self._updates: list[dict[str, Any]] = []
        self._next_update_id = 100
        self._confirmed = 0
        self._new_update = asyncio.Event()
        self._chat_limits: dict[int, _Bucket] = {}
        self._group_limits: dict[int, _Window] = {}
        self._bot_limit = _Window(bot_per_second, 1.0)
        self._next_user_id = 5000
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._port = 0
        self._drops = 0
        self.dropped: list[Call] = []

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        self._runner = web.AppRunner(
            app, access_log=None, shutdown_timeout=0.1, handler_cancellation=True
        )
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def api_url(self) -> str:
        """The python-telegram-bot `base_url` (TELEGRAM_API_URL) of this fake."""
        return f"http://127.0.0.1:{self._port}/bot"

    def env(self) -> dict[str, str]:
        """The settings that point threadline at this fake."""
        return {"TELEGRAM_BOT_TOKEN": self.token, "TELEGRAM_API_URL": self.api_url}

    # -- the users' side -----------------------------------------------------------------

    def user(
        self, first_name: str, last_name: str | None = None, username: str | None = None
    ) -> dict[str, Any]:
        """A new (human) user."""
        self._next_user_id += 1
        data: dict[str, Any] = {
            "id": self._next_user_id,
            "is_bot": False,
            "first_name": first_name,
            "language_code": "en",
        }
        if last_name:
            data["last_name"] = last_name
        if username:
            data["username"] = username
        return data

    def private_chat(self, user: dict[str, Any]) -> int:
        """The private chat of `user` with the bot (its id is the user's id)."""
        chat = self.chats.get(user["id"])
        if chat is None:
            chat = self.chats[user["id"]] = Chat(id=user["id"], type="private", user=user)
        return chat.id

    def group(self, chat_id: int, title: str = "Team", *, forum: bool = False) -> int:
        """A supergroup (ids of groups are negative), optionally a forum with topics."""
        kind = "supergroup" if str(chat_id).startswith("-100") else "group"
        self.chats[chat_id] = Chat(id=chat_id, type=kind, title=title, forum=forum)
        return chat_id

    def create_topic(self, chat_id: int, name: str, creator: dict[str, Any]) -> int:
        """A forum topic; its id is the id of its `forum_topic_created` service message."""
        chat = self.chats[chat_id]
        message_id = self._next_id(chat)
        chat.topics.add(message_id)
        data = {
            "message_id": message_id,
            "from": creator,
            "chat": chat.json(),
            "date": int(time.time()),
            "message_thread_id": message_id,
            "forum_topic_created": {"name": name, "icon_color": 7322096},
            "is_topic_message": True,
        }
        self._store(chat, data, "", [], from_bot=False, thread_id=message_id)
        return message_id

    def send(
        self,
        chat_id: int,
        user: dict[str, Any],
        text: str,
        *,
        reply_to: int | None = None,
        topic: int | None = None,
        edited_of: int | None = None,
        deliver: bool = True,
    ) -> int:
        """`user` writes `text` in a chat; returns the message id (the update is delivered).

        Entities are detected like Telegram does (a leading /command, @mentions). `reply_to`
        makes it a reply; `topic` sends it in a forum topic (a message there without an
        explicit reply carries the topic's creation message as `reply_to_message`).
        `edited_of` sends an `edited_message` update for that message id instead.
        """
        chat = self.chats[chat_id]
        message_id = edited_of if edited_of is not None else self._next_id(chat)
        data: dict[str, Any] = {
            "message_id": message_id,
            "from": user,
            "chat": chat.json(),
            "date": int(time.time()),
            "text": text,
        }
        entities = self._detect_entities(text)
        if entities:
            data["entities"] = entities
        replied = reply_to
        if topic is not None:
            data["message_thread_id"] = topic
            data["is_topic_message"] = True
            if replied is None:
                replied = topic
        if replied is not None:
            original = self.messages.get((chat_id, replied))
            if original is not None:
                data["reply_to_message"] = original.json
        if edited_of is not None:
            data["edit_date"] = int(time.time())
            update_kind = "edited_message"
        else:
            update_kind = "message"
            self._store(chat, data, text, entities, from_bot=False, thread_id=topic)
            if replied is not None:
                self.messages[(chat_id, message_id)].reply_to = replied
        update = self._wrap({update_kind: data})
        self.last_update = update
        if deliver:
            self._push(update)
        return message_id

    def mention(self, text: str = "") -> str:
        """`@bot text`: a mention of the bot."""
        return f"@{self.username} {text}".rstrip()

    def push(self, update: dict[str, Any]) -> dict[str, Any]:
        """Deliver an update (given without update_id): to the webhook if set, else getUpdates."""
        wrapped = self._wrap(update)
        self._push(wrapped)
        return wrapped

    def _wrap(self, update: dict[str, Any]) -> dict[str, Any]:
        wrapped = {"update_id": self._next_update_id, **update}
        self._next_update_id += 1
        return wrapped

    def _push(self, update: dict[str, Any]) -> None:
        if self.webhook_url:
            task = asyncio.get_running_loop().create_task(self._deliver(update))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            self._updates.append(update)
            self._new_update.set()

    async def post_webhook(
        self, update: dict[str, Any], *, secret: str | None, url: str | None = None
    ) -> int:
        """POST `update` to the webhook URL with `secret` in the secret header; the status."""
        target = url or self.webhook_url
        assert target, "no webhook is set"
        headers = {} if secret is None else {"X-Telegram-Bot-Api-Secret-Token": secret}
        if self._session is None:
            self._session = aiohttp.ClientSession()
        async with self._session.post(target, json=update, headers=headers) as response:
            await response.read()
            return response.status

    def delete(self, chat_id: int, message_id: int) -> None:
        """Someone deletes a message: later edits of it fail with "message to edit not found"."""
        self.messages.pop((chat_id, message_id), None)

    def block(self, chat_id: int) -> None:
        """The user blocks the bot: every write to that chat is refused with 403."""
        self.blocked.add(chat_id)

    # -- what users see ------------------------------------------------------------------

    def drop_responses(self, count: int = 1) -> None:
        """The next `count` sendMessage calls are applied, then their responses are lost."""
        self._drops += count

    def bot_messages(self, chat_id: int | None = None) -> list[Message]:
        """The bot's messages (optionally in one chat), oldest first."""
        found = [m for m in self.messages.values() if m.from_bot]
        if chat_id is not None:
            found = [m for m in found if m.chat_id == chat_id]
        return sorted(found, key=lambda m: (m.chat_id, m.message_id))

    def replies_to(self, chat_id: int, message_id: int) -> list[Message]:
        """The bot's messages sent as replies to one message."""
        return [m for m in self.bot_messages(chat_id) if m.reply_to == message_id]

    def calls_of(self, method: str, *, ok: bool | None = None) -> list[Call]:
        """Recorded calls of one method (only successful ones with ok=True)."""
        return [
            c for c in self.calls if c.method == method and (ok is None or (c.status == 200) == ok)
        ]

    def write_calls(self) -> list[Call]:
        """Every successful write (sendMessage, editMessageText, sendMessageDraft)."""
        return [c for c in self.calls if c.method in WRITE_METHODS and c.status == 200]

    # -- the API ---------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        if request.match_info["token"] != self.token:
            self.unauthorized += 1
            return web.json_response(
                {"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401
            )
        payload = await self._payload(request)
        call = Call(method=method, at=time.time(), payload=payload)
        self.calls.append(call)
        handler = getattr(self, f"_api_{method}", None)
        try:
            if handler is None:
                raise ApiError(404, "Not Found")
            result = await handler(payload, call)
        except ApiError as exc:
            call.status = exc.code
            call.description = exc.description
            body: dict[str, Any] = {
                "ok": False,
                "error_code": exc.code,
                "description": exc.description,
            }
            if exc.retry_after is not None:
                self.rate_limited += 1
                body["parameters"] = {"retry_after": exc.retry_after}
            return web.json_response(body, status=exc.code)
        if self._drops and method == "sendMessage":
            self._drops -= 1
            self.dropped.append(call)
            assert request.transport is not None
            request.transport.close()
            raise asyncio.CancelledError  # applied; the client never hears of it
        return web.json_response({"ok": True, "result": result})

    async def _payload(self, request: web.Request) -> dict[str, Any]:
        if request.method == "GET":
            raw: dict[str, Any] = dict(request.query)
        elif request.content_type == "application/json":
            body = await request.read()
            return dict(json.loads(body)) if body else {}
        else:
            raw = dict(await request.post())
        payload: dict[str, Any] = {}
        for key, value in raw.items():
            if key in STRING_FIELDS or not isinstance(value, str):
                payload[key] = value
                continue
            try:
                payload[key] = json.loads(value)
            except ValueError:
                payload[key] = value
        return payload

    async def _api_getMe(self, payload: dict[str, Any], call: Call) -> Any:
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": "Threadline",
            "username": self.username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }

    async def _api_getUpdates(self, payload: dict[str, Any], call: Call) -> Any:
        if self.webhook_url:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; use "
                "deleteWebhook to delete the webhook first",
            )
        offset = int(payload.get("offset") or 0)
        timeout = float(payload.get("timeout") or 0)
        limit = int(payload.get("limit") or 100)
        allowed = payload.get("allowed_updates") or None
        if offset:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        deadline = time.monotonic() + timeout
        while True:
            ready = [u for u in self._updates if _allowed(u, allowed)][:limit]
            if ready:
                return ready
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            self._new_update.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new_update.wait(), remaining)

    async def _api_setMyCommands(self, payload: dict[str, Any], call: Call) -> Any:
        commands = payload.get("commands")
        if not isinstance(commands, list) or not commands:
            raise ApiError(400, "Bad Request: commands must be a non-empty list")
        for command in commands:
            if not re.fullmatch(r"[a-z0-9_]{1,32}", str(command.get("command", ""))):
                raise ApiError(400, "Bad Request: BOT_COMMAND_INVALID")
            if not 1 <= len(str(command.get("description", ""))) <= 256:
                raise ApiError(400, "Bad Request: BOT_COMMAND_DESCRIPTION_INVALID")
        self.commands = commands
        return True

    async def _api_setWebhook(self, payload: dict[str, Any], call: Call) -> Any:
        url = str(payload.get("url") or "")
        secret = payload.get("secret_token")
        if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", str(secret)):
            raise ApiError(400, "Bad Request: secret token contains unallowed characters")
        self.webhook_url = url or None
        self.webhook_secret = None if secret is None else str(secret)
        if self.webhook_url:  # pending updates now go to the webhook
            pending, self._updates = self._updates, []
            for update in pending:
                task = asyncio.get_running_loop().create_task(self._deliver(update))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        return True

    async def _api_deleteWebhook(self, payload: dict[str, Any], call: Call) -> Any:
        self.webhook_url = None
        self.webhook_secret = None
        if payload.get("drop_pending_updates"):
            self._updates = []
        return True

    async def _api_getWebhookInfo(self, payload: dict[str, Any], call: Call) -> Any:
        return {
            "url": self.webhook_url or "",
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates),
        }

    async def _api_sendChatAction(self, payload: dict[str, Any], call: Call) -> Any:
        chat = self._chat(payload)
        self._check_thread(chat, payload)
        self._rate_limit(chat, count_chat=False)
        return True

    async def _api_sendMessage(self, payload: dict[str, Any], call: Call) -> Any:
        chat = self._chat(payload)
        thread_id = self._check_thread(chat, payload)
        text, entities = self._text(payload)
        reply = payload.get("reply_parameters") or {}
        reply_to = payload.get("reply_to_message_id") or reply.get("message_id")
        if reply_to is not None and (chat.id, int(reply_to)) not in self.messages:
            if not reply.get("allow_sending_without_reply"):
                raise ApiError(400, "Bad Request: message to be replied not found")
            reply_to = None
        self._rate_limit(chat)
        message_id = self._next_id(chat)
        data: dict[str, Any] = {
            "message_id": message_id,
            "from": self._bot_user(),
            "chat": chat.json(),
            "date": int(time.time()),
            "text": text,
        }
        if entities:
            data["entities"] = entities
        if thread_id is not None:
            data["message_thread_id"] = thread_id
            data["is_topic_message"] = True
        if reply_to is not None:
            data["reply_to_message"] = self.messages[(chat.id, int(reply_to))].json
        message = self._store(chat, data, text, entities, from_bot=True, thread_id=thread_id)
        message.reply_to = None if reply_to is None else int(reply_to)
        self.drafts.get(chat.id, {}).clear()  # a real message replaces the drafts
        return data

    async def _api_editMessageText(self, payload: dict[str, Any], call: Call) -> Any:
        chat = self._chat(payload)
        message = self.messages.get((chat.id, int(payload.get("message_id") or 0)))
        if message is None or not message.from_bot:
            raise ApiError(400, "Bad Request: message to edit not found")
        text, entities = self._text(payload)
        if text == message.text and entities == message.entities:
            raise ApiError(400, NOT_MODIFIED)
        self._rate_limit(chat)
        now = time.time()
        message.text, message.entities = text, entities
        message.edits += 1
        message.changed_at = now
        message.history.append(text)
        data = dict(message.json)
        data.update({"text": text, "edit_date": int(now)})
        data.pop("entities", None)
        if entities:
            data["entities"] = entities
        message.json = data
        return data

    async def _api_sendMessageDraft(self, payload: dict[str, Any], call: Call) -> Any:
        if not self.drafts_supported:
            raise ApiError(404, "Not Found")
        chat = self._chat(payload)
        if chat.type != "private":
            raise ApiError(400, "Bad Request: TEXTDRAFT_PEER_INVALID")
        draft_id = int(payload.get("draft_id") or 0)
        if draft_id == 0:
            raise ApiError(400, "Bad Request: draft_id must be non-zero")
        thread_id = self._check_thread(chat, payload)
        text, _ = self._text(payload, allow_empty=True)
        self._rate_limit(chat)
        draft = self.drafts[chat.id].get(draft_id)
        if draft is None:
            draft = self.drafts[chat.id][draft_id] = Draft(chat.id, draft_id, text, thread_id)
        draft.text = text
        draft.updates += 1
        draft.changed_at = time.time()
        return True

    # -- checks --------------------------------------------------------------------------

    def _chat(self, payload: dict[str, Any]) -> Chat:
        try:
            chat = self.chats[int(payload.get("chat_id") or 0)]
        except (KeyError, ValueError):
            raise ApiError(400, "Bad Request: chat not found") from None
        if chat.id in self.blocked:
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        return chat

    def _check_thread(self, chat: Chat, payload: dict[str, Any]) -> int | None:
        thread = payload.get("message_thread_id")
        if thread is None:
            return None
        if int(thread) not in chat.topics:
            raise ApiError(400, "Bad Request: message thread not found")
        return int(thread)

    def _text(
        self, payload: dict[str, Any], *, allow_empty: bool = False
    ) -> tuple[str, list[dict[str, Any]]]:
        text = str(payload.get("text") or "")
        mode = payload.get("parse_mode")
        entities = payload.get("entities") or []
        if mode:
            text, entities = _parse_markup(text, str(mode))
        if not text.strip() and not allow_empty:
            raise ApiError(400, "Bad Request: message text is empty")
        if utf16_len(text) > MAX_TEXT:
            raise ApiError(400, "Bad Request: message is too long")
        self._check_entities(text, entities)
        return text, [dict(e) for e in entities]

    def _check_entities(self, text: str, entities: list[dict[str, Any]]) -> None:
        size = utf16_len(text)
        spans: list[tuple[int, int, str]] = []
        for entity in entities:
            kind = entity.get("type")
            offset, length = entity.get("offset"), entity.get("length")
            if kind not in ENTITY_TYPES or kind in self.unsupported_entity_types:
                raise ApiError(400, f"Bad Request: can't parse entities: unsupported type {kind}")
            if not isinstance(offset, int) or not isinstance(length, int):
                raise ApiError(400, "Bad Request: can't parse entities: bad offset or length")
            if offset < 0 or length <= 0 or offset + length > size:
                raise ApiError(
                    400, f"Bad Request: can't parse entities: entity beyond the text at {offset}"
                )
            if kind == "text_link" and not entity.get("url"):
                raise ApiError(400, "Bad Request: can't parse entities: text_link without url")
            spans.append((offset, offset + length, str(kind)))
        spans.sort(key=lambda s: (s[0], -s[1]))
        stack: list[tuple[int, int, str]] = []
        for start, end, kind in spans:
            while stack and stack[-1][1] <= start:
                stack.pop()
            if stack:
                outer = stack[-1]
                if end > outer[1]:
                    raise ApiError(
                        400, "Bad Request: can't parse entities: entities overlap partially"
                    )
                if outer[2] in ("pre", "code"):
                    raise ApiError(
                        400, f"Bad Request: can't parse entities: {kind} inside {outer[2]}"
                    )
            stack.append((start, end, kind))

    def _rate_limit(self, chat: Chat, *, count_chat: bool = True) -> None:
        now = time.monotonic()
        waits = [self._bot_limit.wait(now)]
        limits: list[_Bucket | _Window] = [self._bot_limit]
        if count_chat:
            if chat.type == "private":
                bucket = self._chat_limits.get(chat.id)
                if bucket is None:
                    bucket = self._chat_limits[chat.id] = _Bucket(self.chat_rate, self.chat_burst)
                waits.append(bucket.wait(now))
                limits.append(bucket)
            else:
                window = self._group_limits.get(chat.id)
                if window is None:
                    window = self._group_limits[chat.id] = _Window(self.group_per_minute, 60.0)
                waits.append(window.wait(now))
                limits.append(window)
        wait = max(waits)
        if wait > 0:
            retry = max(1, math.ceil(wait))
            raise ApiError(429, f"Too Many Requests: retry after {retry}", retry_after=retry)
        for limit in limits:
            limit.add(now)

    # -- helpers ---------------------------------------------------------------------------

    def _bot_user(self) -> dict[str, Any]:
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": "Threadline",
            "username": self.username,
        }

    def _next_id(self, chat: Chat) -> int:
        message_id = chat.next_message_id
        chat.next_message_id += 1
        return message_id

    def _store(
        self,
        chat: Chat,
        data: dict[str, Any],
        text: str,
        entities: list[dict[str, Any]],
        *,
        from_bot: bool,
        thread_id: int | None,
    ) -> Message:
        now = time.time()
        stored = {k: v for k, v in data.items() if k != "reply_to_message"}
        message = Message(
            chat_id=chat.id,
            message_id=int(data["message_id"]),
            text=text,
            entities=list(entities),
            from_bot=from_bot,
            thread_id=thread_id,
            created_at=now,
            changed_at=now,
            history=[text],
            json=stored,
        )
        self.messages[(chat.id, message.message_id)] = message
        return message

    def _detect_entities(self, text: str) -> list[dict[str, Any]]:
        entities: list[dict[str, Any]] = []
        command = _COMMAND.match(text)
        if command is not None:
            entities.append(
                {"type": "bot_command", "offset": 0, "length": utf16_len(command.group())}
            )
        for match in _MENTION.finditer(text):
            if command is not None and match.start() < command.end():
                continue
            entities.append(
                {
                    "type": "mention",
                    "offset": _utf16_offset(text, match.start()),
                    "length": utf16_len(match.group()),
                }
            )
        return entities

    async def _deliver(self, update: dict[str, Any]) -> None:
        status = await self.post_webhook(update, secret=self.webhook_secret)
        self.webhook_deliveries.append(status)


def _allowed(update: dict[str, Any], allowed: list[str] | None) -> bool:
    if not allowed:
        return True
    return any(kind in update for kind in allowed)


def _parse_markup(text: str, mode: str) -> tuple[str, list[dict[str, Any]]]:
    """The plain text of HTML or MarkdownV2 markup (entities not rebuilt); refuses bad markup."""
    if mode.upper() == "HTML":
        stack: list[str] = []
        for match in re.finditer(r"<(/?)([a-zA-Z-]+)[^>]*>|&(?!lt;|gt;|amp;|quot;)|<", text):
            if match.group(0) == "<" or match.group(0).startswith("&"):
                raise ApiError(
                    400, "Bad Request: can't parse entities: unsupported start tag or stray '<'"
                )
            closing, tag = match.group(1), match.group(2).lower()
            if closing:
                if not stack or stack.pop() != tag:
                    raise ApiError(
                        400, f"Bad Request: can't parse entities: can't find end tag for {tag}"
                    )
            else:
                stack.append(tag)
        if stack:
            raise ApiError(
                400, f"Bad Request: can't parse entities: can't find end tag for {stack[-1]}"
            )
        plain = re.sub(r"<[^>]+>", "", text)
        for escaped, char in (("&lt;", "<"), ("&gt;", ">"), ("&quot;", '"'), ("&amp;", "&")):
            plain = plain.replace(escaped, char)
        return plain, []
    if mode.lower() == "markdownv2":
        index = 0
        while index < len(text):
            char = text[index]
            if char == "\\":
                index += 2
                continue
            if char in ".!-=+#>{}|()[]":
                raise ApiError(
                    400,
                    f"Bad Request: can't parse entities: Character '{char}' is reserved and "
                    "must be escaped with the preceding '\\'",
                )
            index += 1
        return re.sub(r"\\(.)", r"\1", re.sub(r"(?<!\\)[*_~`]", "", text)), []
    raise ApiError(400, f"Bad Request: unsupported parse_mode {mode}")
