"""A local fake Discord: REST API v10 and gateway websocket on 127.0.0.1 (aiohttp).

It speaks the wire protocol discord.py 2.7 uses and behaves like Discord where threadline
depends on it:

* REST under `/api/v10`: `Authorization: Bot <token>` checked (401 otherwise, except the
  interaction callback and webhook routes, which carry their own token); `GET /users/@me`,
  `GET /oauth2/applications/@me`, `GET /gateway/bot` (the fake's own gateway URL),
  `POST /channels/{id}/messages`, `PATCH /channels/{id}/messages/{mid}`,
  `POST /channels/{id}/typing`, `POST /channels/{id}/messages/{mid}/threads`,
  `GET /channels/{id}`, `PUT/GET /applications/{app}/commands`,
  `POST /interactions/{id}/{token}/callback`, `POST /webhooks/{app}/{token}` and
  `PATCH /webhooks/{app}/{token}/messages/{mid}`.
* Rate limits: fixed windows per bucket (message create, message edit, typing, thread create:
  5 per 5 s per channel; with `shared_message_bucket=True` creates and edits of a channel
  count in ONE bucket, which both routes report with the same `X-RateLimit-Bucket`) and 50
  requests per second per bot (interaction callbacks exempt), with real `X-RateLimit-*`
  headers; a 429 has a JSON body `{message, retry_after, global}`, `Retry-After`,
  `X-RateLimit-Scope` and `Via` (discord.py treats a 429 without `Via` as a Cloudflare ban).
* Idempotent creates: a create with `nonce` (at most 25 characters) and `enforce_nonce: true`
  whose author sent a message with that nonce in the last `NONCE_WINDOW` seconds returns that
  message and creates none. The nonce is echoed in the message.
* Lost responses: `drop_responses(n, how)` makes the next n message creates apply and then lose
  their response (`"close"`: the connection is closed without an answer; `"hang"`: no answer
  until the client gives up).
* Errors: 400 code 50035 for content over 2,000 characters, 404 code 10008 (Unknown Message)
  for a deleted message, 403 code 50013 (Missing Permissions) in a channel set read-only.
* Gateway (plain JSON text frames): HELLO, heartbeat ACK, IDENTIFY (token and shard checked
  and recorded) -> READY and one GUILD_CREATE per guild of that shard; tests inject
  MESSAGE_CREATE and INTERACTION_CREATE dispatches, routed to the shard that owns the guild.

Everything is recorded: every REST call (method, route, body, time, status), the 429 count,
every message's current content and its edit history (with times), and mention pings the
writes would have caused.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import re
import socket
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import WSMsgType, web

from tests.fakes import render_discord
from tests.fakes.served import Served

DISCORD_EPOCH_MS = 1_420_070_400_000
MAX_CONTENT = 2000
ALL_PERMISSIONS = str((1 << 41) - 1)
HEARTBEAT_INTERVAL_MS = 41_250
NONCE_WINDOW = 300.0  # "the past few minutes" of Discord's docs
MAX_NONCE = 25


@dataclass
class Call:
    """One REST request the fake received."""

    method: str
    path: str
    route: str  # the path with ids replaced by {placeholders}
    json: Any
    at: float  # time.time()
    status: int = 0
    query: dict[str, str] = field(default_factory=dict)
    dropped: bool = False  # applied, but the client never got the response


@dataclass
class FakeMessage:
    """A message as users see it: current content plus every version with its time."""

    id: str
    channel_id: str
    author_id: str
    content: str
    reference_id: str | None = None
    guild_id: str | None = None
    deleted: bool = False
    nonce: str | int | None = None
    history: list[tuple[float, str]] = field(default_factory=list)  # (time.time(), content)
    allowed_mentions: list[Any] = field(default_factory=list)  # per write, as sent

    @property
    def updated_at(self) -> float:
        return self.history[-1][0]


@dataclass
class FakeUser:
    id: str
    username: str
    global_name: str | None = None
    bot: bool = False
    nick: str | None = None

    def json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "username": self.username,
            "discriminator": "0",
            "global_name": self.global_name,
            "avatar": None,
            "bot": self.bot,
            "public_flags": 0,
            "flags": 0,
        }

    def member_json(self) -> dict[str, Any]:
        return {
            "roles": [],
            "nick": self.nick,
            "joined_at": _iso(time.time() - 86400),
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "avatar": None,
        }


@dataclass
class _Window:
    """A fixed-window bucket: `limit` requests from its first one until `period` later."""

    limit: int
    period: float
    name: str
    count: int = 0
    reset_at: float = 0.0

    def take(self, now: float) -> tuple[bool, int, float]:
        """(allowed, remaining, seconds until reset)."""
        if now >= self.reset_at:
            self.count = 0
            self.reset_at = now + self.period
        if self.count >= self.limit:
            return False, 0, self.reset_at - now
        self.count += 1
        return True, self.limit - self.count, self.reset_at - now


@dataclass
class _Session:
    ws: web.WebSocketResponse
    shard: tuple[int, int] | None = None
    seq: int = 0
    session_id: str = ""
    ready: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class _Reply(Exception):
    """Finish a REST call with this status and body."""

    def __init__(self, status: int, body: Any = None, headers: dict[str, str] | None = None):
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}


class FakeDiscord(Served):
    """A Discord REST API and gateway on 127.0.0.1 for tests and benchmarks.

    One guild with a text channel `channel_id` and a thread `thread_id` (public thread of the
    text channel), plus a DM channel `dm_channel_id` with `user`. `api_url` is what
    DISCORD_API_URL is set to. `limit_headers=False` leaves the `X-RateLimit-*` headers out of
    successful responses (a client must then find the limit by its 429s).
    """

    def __init__(
        self,
        *,
        token: str = "fake-discord-token",
        message_limit: int = 5,
        message_period: float = 5.0,
        global_limit: int = 50,
        guild_count: int = 1,
        limit_headers: bool = True,
        shared_message_bucket: bool = False,
    ) -> None:
        self.token = token
        self.limit_headers = limit_headers
        self.shared_message_bucket = shared_message_bucket
        self.message_limit = message_limit
        self.message_period = message_period
        self.global_limit = global_limit
        self._ids = itertools.count(1)
        self.bot = FakeUser(self.snowflake(), "threadline", "Threadline", bot=True)
        self.application_id = self.snowflake()
        self.user = FakeUser(self.snowflake(), "alice", "Alice", nick="Ali")
        self.other_user = FakeUser(self.snowflake(), "bob", "Bob")
        self.other_bot = FakeUser(self.snowflake(), "otherbot", "Other Bot", bot=True)
        self.guilds: list[str] = []
        self.channels: dict[str, dict[str, Any]] = {}
        for _ in range(guild_count):
            self.add_guild()
        self.guild_id = self.guilds[0]
        self.channel_id = self._guild_channels(self.guild_id, 0)[0]
        self.thread_id = self._guild_channels(self.guild_id, 11)[0]
        self.dm_channel_id = self.snowflake()
        self.channels[self.dm_channel_id] = {
            "id": self.dm_channel_id,
            "type": 1,
            "last_message_id": None,
            "recipients": [self.user.json()],
            "flags": 0,
        }
        self.forbidden_channels: set[str] = set()
        self.messages: dict[str, FakeMessage] = {}
        self.calls: list[Call] = []
        self.rate_limited = 0
        self.nonces: dict[tuple[str, str], tuple[float, str]] = {}  # (author, nonce) -> (at, id)
        self._drops: list[str] = []  # how to lose the next create responses
        self.pings: list[tuple[str, str]] = []  # (message id, what was pinged) per write
        self.identifies: list[dict[str, Any]] = []
        self.commands: list[dict[str, Any]] = []
        self.interaction_callbacks: list[dict[str, Any]] = []
        self.interactions: dict[str, dict[str, Any]] = {}  # token -> interaction payload
        self.sessions: list[_Session] = []
        self._background: set[asyncio.Task[None]] = set()
        self._windows: dict[tuple[str, str], _Window] = {}
        self._global = _Window(global_limit, 1.0, "global")
        self._runner: web.AppRunner | None = None
        self._port = 0

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    @property
    def api_url(self) -> str:
        """The REST base (DISCORD_API_URL)."""
        return f"{self.base_url}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self._port}/gateway"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/gateway", self._gateway)
        app.router.add_route("*", "/api/v10/{tail:.*}", self._rest)
        self._runner = web.AppRunner(
            app, access_log=None, shutdown_timeout=0.1, handler_cancellation=True
        )
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", 0))
            self._port = sock.getsockname()[1]
            await web.SockSite(self._runner, sock).start()
        except BaseException:
            sock.close()
            await self.stop()
            raise

    async def stop(self) -> None:
        for session in list(self.sessions):
            with contextlib.suppress(Exception):
                await session.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- world ---------------------------------------------------------------------------------

    def snowflake(self) -> str:
        """A new id, increasing like Discord's (time in the high bits)."""
        ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
        return str((ms << 22) | (next(self._ids) & 0x3FFFFF))

    def add_guild(self) -> str:
        """A guild with one text channel and one public thread of it; returns its id."""
        guild_id = self.snowflake()
        self.guilds.append(guild_id)
        channel_id = self.snowflake()
        self.channels[channel_id] = {
            "id": channel_id,
            "type": 0,
            "guild_id": guild_id,
            "name": "general",
            "position": 0,
            "permission_overwrites": [],
            "nsfw": False,
            "topic": None,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "parent_id": None,
            "flags": 0,
        }
        self._thread_json(self.snowflake(), channel_id, guild_id, "existing thread")
        return guild_id

    def _thread_json(
        self, thread_id: str, parent_id: str, guild_id: str, name: str
    ) -> dict[str, Any]:
        data = {
            "id": thread_id,
            "type": 11,
            "guild_id": guild_id,
            "parent_id": parent_id,
            "owner_id": self.user.id,
            "name": name,
            "last_message_id": None,
            "message_count": 0,
            "member_count": 1,
            "rate_limit_per_user": 0,
            "flags": 0,
            "thread_metadata": {
                "archived": False,
                "auto_archive_duration": 1440,
                "archive_timestamp": _iso(time.time()),
                "locked": False,
            },
        }
        self.channels[thread_id] = data
        return data

    def _guild_channels(self, guild_id: str, kind: int) -> list[str]:
        return [
            cid
            for cid, c in self.channels.items()
            if c.get("guild_id") == guild_id and c["type"] == kind
        ]

    def shard_of(self, guild_id: str | None, count: int) -> int:
        """Which shard receives a guild's events (DMs go to shard 0)."""
        return 0 if guild_id is None else (int(guild_id) >> 22) % count

    def guild_on_shard(self, shard_id: int, count: int) -> str:
        """A guild id (created if needed) whose events go to `shard_id` of `count`."""
        for guild_id in self.guilds:
            if self.shard_of(guild_id, count) == shard_id:
                return guild_id
        for _ in range(1000):
            guild_id = self.add_guild()
            if self.shard_of(guild_id, count) == shard_id:
                return guild_id
        raise RuntimeError("no guild for that shard")

    def text_channel_of(self, guild_id: str) -> str:
        return self._guild_channels(guild_id, 0)[0]

    # -- what users see ------------------------------------------------------------------------

    def bot_messages(self, channel_id: str | None = None) -> list[FakeMessage]:
        """The bot's messages (in one channel), oldest first."""
        return [
            m
            for m in self.messages.values()
            if m.author_id == self.bot.id and (channel_id is None or m.channel_id == channel_id)
        ]

    def answer_parts(self, user_message_id: str) -> list[FakeMessage]:
        """The bot's answer to a message: its reply, then each part replying to the previous."""
        by_reference: dict[str, FakeMessage] = {}
        for message in self.bot_messages():
            if message.reference_id is not None:
                by_reference.setdefault(message.reference_id, message)
        parts: list[FakeMessage] = []
        current = by_reference.get(user_message_id)
        while current is not None:
            parts.append(current)
            current = by_reference.get(current.id)
        return parts

    def answer_text(self, user_message_id: str) -> str:
        """The visible text of the answer to a message, parts joined by newlines."""
        return "\n".join(m.content for m in self.answer_parts(user_message_id))

    def writes(self) -> list[Call]:
        """Every message create and edit call (channels and webhooks)."""
        return [
            c
            for c in self.calls
            if (c.method == "POST" and c.route.endswith("/messages"))
            or (c.method == "PATCH" and "/messages/" in c.route)
            or (c.method in ("POST", "PATCH") and c.route.startswith("/webhooks/"))
        ]

    def calls_to(self, method: str, route: str) -> list[Call]:
        return [c for c in self.calls if c.method == method and c.route == route]

    @property
    def ready_shards(self) -> int:
        return sum(1 for s in self.sessions if s.ready and not s.ws.closed)

    def set_forbidden(self, channel_id: str) -> None:
        """Writes in `channel_id` fail with 403 Missing Permissions from now on."""
        self.forbidden_channels.add(channel_id)

    def drop_responses(self, count: int = 1, how: str = "close") -> None:
        """The next `count` message creates are applied, then their responses are lost.

        `how="close"` closes the connection without an answer; `"hang"` never answers, so
        the client's own timeout ends the request.
        """
        if how not in ("close", "hang"):
            raise ValueError(how)
        self._drops.extend([how] * count)

    def delete_message(self, message_id: str) -> None:
        """The message is gone: edits answer 404 Unknown Message."""
        self.messages[message_id].deleted = True

    # -- injecting events ----------------------------------------------------------------------

    def seed_message(self, channel_id: str, content: str, author: FakeUser | None = None) -> str:
        """A message that exists without a gateway event (for REST-only tests)."""
        channel = self.channels[channel_id]
        author = author or self.user
        return self._store(channel_id, author.id, content, None, channel.get("guild_id")).id

    async def user_message(
        self,
        channel_id: str,
        content: str,
        *,
        author: FakeUser | None = None,
        mention_bot: bool = False,
        reply_to: str | None = None,
        mentions: list[FakeUser] | None = None,
    ) -> str:
        """A user posts `content` (mentioning the bot first if asked); returns its id."""
        author = author or self.user
        channel = self.channels[channel_id]
        guild_id = channel.get("guild_id")
        mentioned = list(mentions or [])
        if mention_bot:
            content = f"<@{self.bot.id}> {content}"
            mentioned.insert(0, self.bot)
        message = self._store(channel_id, author.id, content, reply_to, guild_id)
        data = self._message_json(message, author=author, mentions=mentioned)
        await self._dispatch(guild_id, "MESSAGE_CREATE", data)
        return message.id

    async def interaction(
        self,
        name: str,
        channel_id: str,
        options: dict[str, str] | None = None,
        *,
        author: FakeUser | None = None,
    ) -> str:
        """A user runs slash command `name`; returns the interaction token."""
        author = author or self.user
        channel = self.channels[channel_id]
        guild_id = channel.get("guild_id")
        command = next((c for c in self.commands if c["name"] == name), None)
        if command is None:
            raise AssertionError(f"slash command /{name} is not registered")
        interaction_id = self.snowflake()
        token = f"interaction-token-{interaction_id}"
        payload: dict[str, Any] = {
            "id": interaction_id,
            "application_id": self.application_id,
            "type": 2,
            "data": {
                "id": command["id"],
                "name": name,
                "type": 1,
                "options": [
                    {"name": key, "type": 3, "value": value}
                    for key, value in (options or {}).items()
                ],
            },
            "channel_id": channel_id,
            "channel": dict(channel),
            "token": token,
            "version": 1,
            "app_permissions": ALL_PERMISSIONS,
            "locale": "en-US",
            "entitlements": [],
            "authorizing_integration_owners": {"0": guild_id or author.id},
            "attachment_size_limit": 26_214_400,
        }
        if guild_id is not None:
            payload["guild_id"] = guild_id
            payload["guild_locale"] = "en-US"
            payload["context"] = 0
            member = author.member_json()
            member["user"] = author.json()
            member["permissions"] = ALL_PERMISSIONS
            payload["member"] = member
        else:
            payload["user"] = author.json()
            payload["context"] = 1
        self.interactions[token] = payload
        await self._dispatch(guild_id, "INTERACTION_CREATE", payload)
        return token

    def followups(self, token: str) -> list[FakeMessage]:
        """Follow-up messages of an interaction."""
        ids = self.interactions[token].get("_followups", [])
        return [self.messages[i] for i in ids]

    async def _dispatch(self, guild_id: str | None, event: str, data: dict[str, Any]) -> None:
        session = self._session_for(guild_id)
        await self._send_dispatch(session, event, data)

    def _session_for(self, guild_id: str | None) -> _Session:
        # The newest session of a shard gets its events, as on Discord, where a new IDENTIFY
        # replaces a session whose connection died without a close.
        for session in reversed(self.sessions):
            if not session.ready or session.ws.closed:
                continue
            shard_id, count = session.shard or (0, 1)
            if self.shard_of(guild_id, count) == shard_id:
                return session
        raise AssertionError(f"no connected shard receives events of guild {guild_id}")

    async def _send_dispatch(self, session: _Session, event: str, data: Any) -> None:
        async with session.lock:
            session.seq += 1
            await session.ws.send_str(
                json.dumps({"op": 0, "t": event, "s": session.seq, "d": data})
            )

    # -- gateway -------------------------------------------------------------------------------

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True, max_msg_size=0)
        await ws.prepare(request)
        session = _Session(ws)
        self.sessions.append(session)
        await ws.send_str(
            json.dumps({"op": 10, "d": {"heartbeat_interval": HEARTBEAT_INTERVAL_MS}})
        )
        async for frame in ws:
            if frame.type is not WSMsgType.TEXT:
                continue
            payload = json.loads(frame.data)
            op = payload.get("op")
            if op == 1:
                async with session.lock:
                    await ws.send_str(json.dumps({"op": 11}))
            elif op == 2:
                await self._identify(session, payload["d"])
            elif op == 6:
                async with session.lock:
                    await ws.send_str(json.dumps({"op": 9, "d": False}))
        return ws

    async def _identify(self, session: _Session, data: dict[str, Any]) -> None:
        self.identifies.append(data)
        if data.get("token") != self.token:
            await session.ws.close(code=4004, message=b"Authentication failed.")
            return
        shard = data.get("shard")
        session.shard = (int(shard[0]), int(shard[1])) if shard else None
        shard_id, count = session.shard or (0, 1)
        session.session_id = f"session-{self.snowflake()}"
        mine = [g for g in self.guilds if self.shard_of(g, count) == shard_id]
        ready = {
            "v": 10,
            "user": self.bot.json(),
            "guilds": [{"id": g, "unavailable": True} for g in mine],
            "session_id": session.session_id,
            "resume_gateway_url": self.gateway_url,
            "application": {"id": self.application_id, "flags": 0},
            "private_channels": [],
            "relationships": [],
            "presences": [],
        }
        if session.shard is not None:
            ready["shard"] = list(session.shard)
        await self._send_dispatch(session, "READY", ready)
        for guild_id in mine:
            await self._send_dispatch(session, "GUILD_CREATE", self._guild_json(guild_id))
        session.ready = True

    def _guild_json(self, guild_id: str) -> dict[str, Any]:
        channels = [c for c in self.channels.values() if c.get("guild_id") == guild_id]
        bot_member = self.bot.member_json()
        bot_member["user"] = self.bot.json()
        return {
            "id": guild_id,
            "name": f"guild {guild_id[-4:]}",
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "owner_id": self.user.id,
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "roles": [
                {
                    "id": guild_id,
                    "name": "@everyone",
                    "color": 0,
                    "hoist": False,
                    "icon": None,
                    "unicode_emoji": None,
                    "position": 0,
                    "permissions": ALL_PERMISSIONS,
                    "managed": False,
                    "mentionable": False,
                    "flags": 0,
                }
            ],
            "emojis": [],
            "stickers": [],
            "features": [],
            "mfa_level": 0,
            "application_id": None,
            "system_channel_id": None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "vanity_url_code": None,
            "description": None,
            "banner": None,
            "premium_tier": 0,
            "preferred_locale": "en-US",
            "public_updates_channel_id": None,
            "nsfw_level": 0,
            "premium_progress_bar_enabled": False,
            "joined_at": _iso(time.time() - 3600),
            "large": False,
            "unavailable": False,
            "member_count": 3,
            "voice_states": [],
            "members": [bot_member],
            "channels": [c for c in channels if c["type"] != 11],
            "threads": [c for c in channels if c["type"] == 11],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
        }

    # -- REST ------------------------------------------------------------------------------------

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["tail"]
        body: Any = None
        if request.can_read_body:
            raw = await request.read()
            if raw:
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw.decode(errors="replace")
        call = Call(
            request.method,
            path,
            _route_of(path),
            body,
            time.time(),
            query=dict(request.query),
        )
        self.calls.append(call)
        status, data, headers = self._handle(request, call)
        call.status = status
        if status == 429:
            self.rate_limited += 1
        if (
            self._drops
            and status == 200
            and call.method == "POST"
            and call.route == "/channels/{channel_id}/messages"
        ):
            call.dropped = True
            if self._drops.pop(0) == "hang":
                await asyncio.Event().wait()  # cancelled when the client disconnects
            assert request.transport is not None
            request.transport.close()
            raise asyncio.CancelledError  # nothing more is written on this connection
        if status == 204:
            return web.Response(status=204, headers=headers)
        # exactly "application/json", as Discord sends it: discord.py compares the whole header
        headers["Content-Type"] = "application/json"
        return web.Response(body=json.dumps(data).encode(), status=status, headers=headers)

    def _handle(self, request: web.Request, call: Call) -> tuple[int, Any, dict[str, str]]:
        headers: dict[str, str] = {}
        try:
            own_token = call.route.startswith(("/interactions/", "/webhooks/"))
            if not own_token and request.headers.get("Authorization") != f"Bot {self.token}":
                raise _Reply(401, {"message": "401: Unauthorized", "code": 0})
            now = time.monotonic()
            if not call.route.startswith("/interactions/"):
                ok, _, reset_after = self._global.take(now)
                if not ok:
                    raise _Reply(
                        429,
                        {
                            "message": "You are being rate limited.",
                            "retry_after": round(reset_after, 3),
                            "global": True,
                        },
                        {
                            "Retry-After": str(math.ceil(reset_after)),
                            "X-RateLimit-Global": "true",
                            "X-RateLimit-Scope": "global",
                            "Via": "1.1 google",
                        },
                    )
            bucket = self._bucket_of(call)
            if bucket is not None:
                window = self._windows.get(bucket)
                if window is None:
                    window = self._windows[bucket] = _Window(
                        self.message_limit, self.message_period, bucket[0]
                    )
                ok, remaining, reset_after = window.take(now)
                limit_headers = {
                    "X-RateLimit-Limit": str(window.limit),
                    "X-RateLimit-Remaining": str(remaining),
                    "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
                    "X-RateLimit-Reset-After": f"{reset_after:.3f}",
                    "X-RateLimit-Bucket": f"fake-{bucket[0]}",
                }
                if self.limit_headers:
                    headers.update(limit_headers)
                if not ok:
                    raise _Reply(
                        429,
                        {
                            "message": "You are being rate limited.",
                            "retry_after": round(reset_after, 3),
                            "global": False,
                        },
                        {
                            **limit_headers,
                            "Retry-After": str(math.ceil(reset_after)),
                            "X-RateLimit-Scope": "user",
                            "Via": "1.1 google",
                        },
                    )
            status, data = self._route_call(call)
            return status, data, headers
        except _Reply as reply:
            headers.update(reply.headers)
            return reply.status, reply.body, headers

    def _bucket_of(self, call: Call) -> tuple[str, str] | None:
        parts = call.path.strip("/").split("/")
        if call.route == "/channels/{channel_id}/messages" and call.method == "POST":
            return ("messages" if self.shared_message_bucket else "messages.create", parts[1])
        if call.route == "/channels/{channel_id}/messages/{message_id}" and call.method == "PATCH":
            return ("messages" if self.shared_message_bucket else "messages.edit", parts[1])
        if call.route == "/channels/{channel_id}/typing":
            return ("typing", parts[1])
        if call.route == "/channels/{channel_id}/messages/{message_id}/threads":
            return ("threads.create", parts[1])
        return None

    def _route_call(self, call: Call) -> tuple[int, Any]:
        parts = call.path.strip("/").split("/")
        route, method = call.route, call.method
        if route == "/users/@me" and method == "GET":
            return 200, self.bot.json()
        if route == "/oauth2/applications/@me" and method == "GET":
            return 200, self._application_json()
        if route == "/gateway/bot" and method == "GET":
            return 200, {
                "url": self.gateway_url,
                "shards": 1,
                "session_start_limit": {
                    "total": 1000,
                    "remaining": 999,
                    "reset_after": 0,
                    "max_concurrency": 1,
                },
            }
        if route == "/gateway" and method == "GET":
            return 200, {"url": self.gateway_url}
        if route == "/channels/{channel_id}" and method == "GET":
            channel = self.channels.get(parts[1])
            if channel is None:
                raise _Reply(404, {"message": "Unknown Channel", "code": 10003})
            return 200, channel
        if route == "/channels/{channel_id}/messages" and method == "POST":
            return 200, self._create_message(parts[1], call.json or {})
        if route == "/channels/{channel_id}/messages/{message_id}" and method == "PATCH":
            return 200, self._edit_message(parts[1], parts[3], call.json or {})
        if route == "/channels/{channel_id}/typing" and method == "POST":
            self._channel_for_write(parts[1])
            return 204, None
        if route == "/channels/{channel_id}/messages/{message_id}/threads" and method == "POST":
            return 201, self._start_thread(parts[1], parts[3], call.json or {})
        if route == "/applications/{application_id}/commands":
            if method == "PUT":
                self.commands = [
                    {
                        **command,
                        "id": self.snowflake(),
                        "application_id": self.application_id,
                        "version": self.snowflake(),
                        "type": command.get("type", 1),
                        "default_member_permissions": None,
                        "dm_permission": True,
                        "nsfw": False,
                    }
                    for command in (call.json or [])
                ]
                return 200, self.commands
            if method == "GET":
                return 200, self.commands
        if route == "/interactions/{interaction_id}/{token}/callback" and method == "POST":
            return self._interaction_callback(parts[1], parts[2], call)
        if route == "/webhooks/{application_id}/{token}" and method == "POST":
            return 200, self._followup(parts[2], call.json or {})
        if route == "/webhooks/{application_id}/{token}/messages/{message_id}" and method in (
            "PATCH",
            "GET",
        ):
            return 200, self._edit_followup(parts[2], parts[4], call.json or {}, method)
        raise _Reply(404, {"message": "404: Not Found", "code": 0})

    def _application_json(self) -> dict[str, Any]:
        return {
            "id": self.application_id,
            "name": "threadline",
            "icon": None,
            "description": "",
            "summary": "",
            "type": None,
            "bot_public": True,
            "bot_require_code_grant": False,
            "owner": self.user.json(),
            "team": None,
            "verify_key": "0" * 64,
            "flags": 0,
            "bot": self.bot.json(),
            "interactions_endpoint_url": None,
        }

    def _channel_for_write(self, channel_id: str) -> dict[str, Any]:
        channel = self.channels.get(channel_id)
        if channel is None:
            raise _Reply(404, {"message": "Unknown Channel", "code": 10003})
        if channel_id in self.forbidden_channels:
            raise _Reply(403, {"message": "Missing Permissions", "code": 50013})
        return channel

    def _check_content(self, body: dict[str, Any]) -> str:
        content = body.get("content")
        if content is None:
            return ""
        if not isinstance(content, str):
            raise _Reply(400, {"message": "Invalid Form Body", "code": 50035})
        if len(content) > MAX_CONTENT:
            raise _Reply(
                400,
                {
                    "message": "Invalid Form Body",
                    "code": 50035,
                    "errors": {
                        "content": {
                            "_errors": [
                                {
                                    "code": "BASE_TYPE_MAX_LENGTH",
                                    "message": "Must be 2000 or fewer in length.",
                                }
                            ]
                        }
                    },
                },
            )
        return content

    def _create_message(self, channel_id: str, body: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel_for_write(channel_id)
        nonce = body.get("nonce")
        if nonce is not None and (
            isinstance(nonce, bool)
            or not isinstance(nonce, str | int)
            or len(str(nonce)) > MAX_NONCE
        ):
            raise _Reply(400, {"message": "Invalid Form Body", "code": 50035})
        if nonce is not None and body.get("enforce_nonce"):
            now = time.time()
            seen = self.nonces.get((self.bot.id, str(nonce)))
            if seen is not None and now - seen[0] <= NONCE_WINDOW:
                existing = self.messages.get(seen[1])
                if existing is not None and not existing.deleted:
                    return self._message_json(existing, author=self.bot)
        content = self._check_content(body)
        if not content:
            raise _Reply(400, {"message": "Cannot send an empty message", "code": 50006})
        reference = body.get("message_reference") or {}
        ref_id = reference.get("message_id")
        if ref_id is not None and (ref_id not in self.messages or self.messages[ref_id].deleted):
            if reference.get("fail_if_not_exists", True):
                raise _Reply(400, {"message": "Unknown message reference", "code": 50035})
            ref_id = None
        message = self._store(channel_id, self.bot.id, content, ref_id, channel.get("guild_id"))
        if nonce is not None:
            message.nonce = nonce
            self.nonces[(self.bot.id, str(nonce))] = (time.time(), message.id)
        self._record_mentions(message, body)
        return self._message_json(message, author=self.bot)

    def _edit_message(self, channel_id: str, message_id: str, body: dict[str, Any]) -> Any:
        self._channel_for_write(channel_id)
        message = self.messages.get(message_id)
        if message is None or message.deleted or message.channel_id != channel_id:
            raise _Reply(404, {"message": "Unknown Message", "code": 10008})
        if message.author_id != self.bot.id:
            raise _Reply(
                403, {"message": "Cannot edit a message authored by another user", "code": 50005}
            )
        content = self._check_content(body)
        if "content" in body:
            message.content = content
        message.history.append((time.time(), message.content))
        self._record_mentions(message, body)
        return self._message_json(message, author=self.bot)

    def _record_mentions(self, message: FakeMessage, body: dict[str, Any]) -> None:
        """What Discord would ping for this write: default allowances unless the body says."""
        allowed = body.get("allowed_mentions")
        message.allowed_mentions.append(allowed)
        reply = message.reference_id is not None and len(message.history) == 1
        for ping in render_discord.pings(message.content, allowed, reply=reply):
            self.pings.append((message.id, ping))

    def _start_thread(self, channel_id: str, message_id: str, body: dict[str, Any]) -> Any:
        channel = self._channel_for_write(channel_id)
        if message_id not in self.messages:
            raise _Reply(404, {"message": "Unknown Message", "code": 10008})
        guild_id = channel["guild_id"]
        data = self._thread_json(message_id, channel_id, guild_id, str(body.get("name", "")))
        data["owner_id"] = self.bot.id
        task = asyncio.get_running_loop().create_task(self._announce_thread(guild_id, data))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return data

    async def _announce_thread(self, guild_id: str, data: dict[str, Any]) -> None:
        with contextlib.suppress(Exception):
            await self._dispatch(guild_id, "THREAD_CREATE", {**data, "newly_created": True})

    def _interaction_callback(self, interaction_id: str, token: str, call: Call) -> tuple[int, Any]:
        payload = self.interactions.get(token)
        if payload is None or payload["id"] != interaction_id:
            raise _Reply(404, {"message": "Unknown interaction", "code": 10062})
        if payload.get("_responded"):
            raise _Reply(
                400, {"message": "Interaction has already been acknowledged.", "code": 40060}
            )
        payload["_responded"] = True
        body = call.json or {}
        self.interaction_callbacks.append(body)
        kind = body.get("type")
        data = body.get("data") or {}
        resource: dict[str, Any] = {"type": kind}
        response_message_id = None
        if kind == 4:
            content = self._check_content(data)
            message = self._store(
                payload["channel_id"], self.bot.id, content, None, payload.get("guild_id")
            )
            self._record_mentions(message, data)
            payload.setdefault("_followups", []).append(message.id)
            resource["message"] = self._message_json(message, author=self.bot)
            response_message_id = message.id
        if call.query.get("with_response") not in ("1", "true", "True"):
            return 204, None
        return 200, {
            "interaction": {
                "id": interaction_id,
                "type": 2,
                "response_message_id": response_message_id,
                "response_message_loading": kind == 5,
                "response_message_ephemeral": bool(data.get("flags", 0) & 64),
            },
            "resource": resource,
        }

    def _followup(self, token: str, body: dict[str, Any]) -> Any:
        payload = self.interactions.get(token)
        if payload is None:
            raise _Reply(404, {"message": "Unknown Webhook", "code": 10015})
        content = self._check_content(body)
        message = self._store(
            payload["channel_id"], self.bot.id, content, None, payload.get("guild_id")
        )
        self._record_mentions(message, body)
        payload.setdefault("_followups", []).append(message.id)
        return self._message_json(message, author=self.bot)

    def _edit_followup(self, token: str, message_id: str, body: dict[str, Any], method: str) -> Any:
        payload = self.interactions.get(token)
        if payload is None:
            raise _Reply(404, {"message": "Unknown Webhook", "code": 10015})
        message = self.messages.get(message_id)
        if message is None or message_id not in payload.get("_followups", []):
            raise _Reply(404, {"message": "Unknown Message", "code": 10008})
        if method == "PATCH":
            message.content = self._check_content(body) if "content" in body else message.content
            message.history.append((time.time(), message.content))
            self._record_mentions(message, body)
        return self._message_json(message, author=self.bot)

    # -- messages ------------------------------------------------------------------------------

    def _store(
        self,
        channel_id: str,
        author_id: str,
        content: str,
        reference_id: str | None,
        guild_id: str | None,
    ) -> FakeMessage:
        message = FakeMessage(
            id=self.snowflake(),
            channel_id=channel_id,
            author_id=author_id,
            content=content,
            reference_id=reference_id,
            guild_id=guild_id,
        )
        message.history.append((time.time(), content))
        self.messages[message.id] = message
        return message

    def _user(self, user_id: str) -> FakeUser:
        for user in (self.bot, self.user, self.other_user, self.other_bot):
            if user.id == user_id:
                return user
        return FakeUser(user_id, f"user{user_id[-4:]}")

    def _message_json(
        self,
        message: FakeMessage,
        *,
        author: FakeUser,
        mentions: list[FakeUser] | None = None,
        nested: bool = True,
    ) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": message.id,
            "channel_id": message.channel_id,
            "author": author.json(),
            "content": message.content,
            "timestamp": _iso(message.history[0][0]),
            "edited_timestamp": _iso(message.updated_at) if len(message.history) > 1 else None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [],
            "embeds": [],
            "pinned": False,
            "type": 19 if message.reference_id else 0,
            "flags": 0,
            "components": [],
        }
        if message.nonce is not None:
            data["nonce"] = message.nonce
        if message.guild_id is not None:
            data["guild_id"] = message.guild_id
            data["member"] = author.member_json()
        for user in mentions or []:
            entry = user.json()
            if message.guild_id is not None:
                entry["member"] = user.member_json()
            data["mentions"].append(entry)
        if message.reference_id is not None:
            referenced = self.messages.get(message.reference_id)
            data["message_reference"] = {
                "type": 0,
                "message_id": message.reference_id,
                "channel_id": message.channel_id,
                **({"guild_id": message.guild_id} if message.guild_id else {}),
            }
            if referenced is not None and nested:
                data["referenced_message"] = self._message_json(
                    referenced, author=self._user(referenced.author_id), nested=False
                )
        return data


_ROUTE_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(p), r)
    for p, r in (
        (r"^/channels/\d+$", "/channels/{channel_id}"),
        (r"^/channels/\d+/messages$", "/channels/{channel_id}/messages"),
        (r"^/channels/\d+/messages/\d+$", "/channels/{channel_id}/messages/{message_id}"),
        (
            r"^/channels/\d+/messages/\d+/threads$",
            "/channels/{channel_id}/messages/{message_id}/threads",
        ),
        (r"^/channels/\d+/typing$", "/channels/{channel_id}/typing"),
        (r"^/applications/\d+/commands$", "/applications/{application_id}/commands"),
        (
            r"^/interactions/\d+/[^/]+/callback$",
            "/interactions/{interaction_id}/{token}/callback",
        ),
        (r"^/webhooks/\d+/[^/]+$", "/webhooks/{application_id}/{token}"),
        (
            r"^/webhooks/\d+/[^/]+/messages/[^/]+$",
            "/webhooks/{application_id}/{token}/messages/{message_id}",
        ),
    )
]


def _route_of(path: str) -> str:
    for pattern, route in _ROUTE_PATTERNS:
        if pattern.match(path):
            return route
    return path


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat()
