"""A local fake Slack (aiohttp): Web API at /api/<method>, Socket Mode websocket, signed events.

Speaks the wire protocol slack_sdk uses (JSON or form bodies, `Authorization: Bearer`), applies
per-(workspace, method) tiers like Slack (429 + `Retry-After` + `{"ok": false, "error":
"ratelimited"}`), the length limits (`msg_too_long`), native streams with an expiry switch
(`message_not_in_streaming_state`), and records every call with its time. `messages` holds what
a user would see: the current text of every bot message and whether it is final. Any text that
would notify people (`<!channel>`, `<!here>`, `<!everyone>`, `<@U…>`, `<!subteam^…>`) is flagged
in `live_mentions`.

Socket Mode: `apps.connections.open` (app token) returns `ws://127.0.0.1:PORT/socket?ticket=…`;
the socket sends `hello`, then the `events_api` envelopes a test sends with `send_event`, and
records acks (`{"envelope_id": …}`); unacked envelopes can be redelivered with `retry_attempt`.

Message metadata (`{"event_type", "event_payload"}`, else `invalid_metadata_format`) is kept with
the message and returned by `conversations.replies` only with `include_all_metadata`, which
also honours `oldest`/`latest`/`inclusive`/`limit`/`cursor` like Slack. `drop_responses(n)`
makes the next n creates (chat.postMessage, chat.startStream) apply and then lose their
response: the connection closes unanswered.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import json
import math
import re
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web

from tests.fakes.served import Served

LIVE_MENTION = re.compile(r"<(?:!channel|!here|!everyone|@|!subteam)")
TEXT_LIMIT = 40_000
MARKDOWN_LIMIT = 12_000
WRITE_METHODS = frozenset(
    {
        "chat.postMessage",
        "chat.update",
        "chat.delete",
        "chat.startStream",
        "chat.appendStream",
        "chat.stopStream",
    }
)


@dataclass(frozen=True)
class Tier:
    """A per-minute limit with a burst; `per` is "team", "channel" or "thread"."""

    per_minute: float
    burst: float
    per: str = "team"


# Slack's tiers (PLATFORMS.md §1), with modest bursts.
DEFAULT_TIERS: dict[str, Tier] = {
    "chat.postMessage": Tier(60, 3, "channel"),
    "chat.postMessage@team": Tier(600, 30),  # "several hundred messages per minute" per workspace
    "chat.update": Tier(50, 10),
    "chat.delete": Tier(50, 10),
    "chat.startStream": Tier(20, 5),
    "chat.stopStream": Tier(20, 5),
    "chat.appendStream": Tier(100, 20),
    "assistant.threads.setStatus": Tier(60, 3, "thread"),
    "assistant.threads.setSuggestedPrompts": Tier(50, 10),
    "assistant.threads.setTitle": Tier(50, 10),
    "users.info": Tier(100, 20),
    "conversations.replies": Tier(50, 10),
    "agents.sessions.setStatus": Tier(50, 10),
    "apps.connections.open": Tier(60, 10),
}


@dataclass
class Call:
    """One Web API request as the fake saw it."""

    method: str
    at: float
    args: dict[str, Any]
    status: int = 200
    error: str | None = None
    team: str = ""  # the workspace whose token made the call


@dataclass(frozen=True)
class InstalledTeam:
    """A workspace the app was installed in through `oauth.v2.access`."""

    team_id: str
    bot_user_id: str
    bot_id: str
    enterprise_id: str | None = None


@dataclass
class Message:
    """A message the bot wrote, as users see it."""

    channel: str
    ts: str
    thread_ts: str | None
    text: str  # the wire text (escaped mrkdwn or Markdown)
    markdown: bool  # written as markdown_text
    streaming: bool
    created_at: float
    updated_at: float
    history: list[tuple[float, str]] = field(default_factory=list)
    expired: bool = False
    deleted: bool = False
    metadata: dict[str, Any] | None = None

    @property
    def final(self) -> bool:
        """Not a native stream still open (or stuck after expiry)."""
        return not self.streaming and not self.expired

    @property
    def visible(self) -> str:
        """The text with Slack's escapes decoded (what a reader sees, markup aside)."""
        return unescape(self.text)


def unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


class _Bucket:
    def __init__(self, tier: Tier, now: float) -> None:
        self.rate = tier.per_minute / 60.0
        self.burst = tier.burst
        self.tokens = tier.burst
        self.updated = now

    def take(self, now: float) -> float:
        """0 when granted, else the seconds until a token is there."""
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class SlackError(Exception):
    def __init__(self, error: str, status: int = 200) -> None:
        super().__init__(error)
        self.error = error
        self.status = status


class FakeSlack(Served):
    """The fake Slack server; use `async with FakeSlack() as slack:`."""

    def __init__(
        self,
        *,
        bot_token: str = "xoxb-fake-bot-token-123456",
        app_token: str = "xapp-fake-app-token-123456",
        signing_secret: str = "fake-signing-secret-abcdef",
        team_id: str = "T0FAKE",
        enterprise_id: str | None = None,
        bot_user_id: str = "UBOT",
        bot_id: str = "BBOT",
        tiers: Mapping[str, Tier] | None = None,
        users: Mapping[str, str] | None = None,
    ) -> None:
        self.bot_token = bot_token
        self.app_token = app_token
        self.signing_secret = signing_secret
        self.team_id = team_id
        self.enterprise_id = enterprise_id
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.tiers = dict(DEFAULT_TIERS if tiers is None else tiers)
        self.users = dict(users or {})
        self.users_info_delay: dict[str, float] = {}  # user id -> seconds users.info takes
        # switches
        self.native_streaming = True  # False: chat.startStream fails (feature not enabled)
        self.stream_ttl: float | None = None  # seconds a stream lives before it expires
        self.status_error: str | None = None  # e.g. "not_allowed" for setStatus
        self.missing_channels: set[str] = set()
        self.not_in_channels: set[str] = set()
        self.auto_redeliver = False  # redeliver envelopes not acked within `ack_timeout`
        self.agent_app = False  # declared an agent: agents.sessions.setStatus works
        self.ack_timeout = 3.0
        # records
        self.calls: list[Call] = []
        self.messages: dict[str, Message] = {}
        self.rate_limited = 0
        self.rate_limited_by_method: Counter[str] = Counter()
        self.errors: list[Call] = []
        self.live_mentions: list[tuple[str, str]] = []
        self.link_names_used = 0
        self.statuses: list[tuple[str, str, str]] = []
        self.suggested_prompts: list[dict[str, Any]] = []
        self.titles: list[tuple[str, str, str]] = []
        self.envelopes_sent: dict[str, float] = {}
        self.responses: list[dict[str, Any]] = []  # posted to response_url (slash commands)
        self.sessions: dict[tuple[str, str], str] = {}  # (channel, thread) -> agent status
        self.session_history: list[tuple[str, str, str]] = []
        self.acks: dict[str, float] = {}
        self.sockets: list[web.WebSocketResponse] = []
        self.socket_connects = 0
        self._buckets: dict[str, _Bucket] = {}
        self._ts = itertools.count(1)
        self._envelopes: dict[str, dict[str, Any]] = {}
        self._runner: web.AppRunner | None = None
        self._port = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._ticket_set: set[str] = set()
        self._drops = 0
        self.dropped: list[Call] = []
        # OAuth installs: client credentials, codes handed out, tokens issued per team
        self.client_id = "1111.2222"
        self.client_secret = "fake-client-secret-0123456789"
        self.token_rotation = False  # tokens expire (expires_in) and come with a refresh token
        self.token_lifetime = 43_200
        self.teams: dict[str, InstalledTeam] = {}  # by bot token
        self.refresh_tokens: dict[str, str] = {}  # refresh token -> team id
        self.revoked: set[str] = set()
        self.token_expiry: dict[str, float] = {}
        self._codes: dict[str, InstalledTeam] = {}
        self._installers: dict[str, str] = {}

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_get("/socket", self._socket)
        app.router.add_post("/respond/{id}", self._respond)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self._port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks))
        for socket in list(self.sockets):
            await socket.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def port(self) -> int:
        return self._port

    @property
    def api_url(self) -> str:
        """For SLACK_API_URL (slack_sdk `base_url` form)."""
        return f"http://127.0.0.1:{self._port}/api/"

    @property
    def space(self) -> str:
        """The workspace as threadline names it."""
        return f"{self.enterprise_id}:{self.team_id}" if self.enterprise_id else self.team_id

    # -- views ---------------------------------------------------------------------------------

    def thread_messages(self, channel: str, thread_ts: str) -> list[Message]:
        """The bot's messages in one thread, oldest first."""
        return sorted(
            (
                m
                for m in self.messages.values()
                if m.channel == channel and m.thread_ts == thread_ts and not m.deleted
            ),
            key=lambda m: m.ts,
        )

    def thread_text(self, channel: str, thread_ts: str) -> list[str]:
        return [m.visible for m in self.thread_messages(channel, thread_ts)]

    def thread_final(self, channel: str, thread_ts: str) -> bool:
        messages = self.thread_messages(channel, thread_ts)
        return bool(messages) and all(m.final for m in messages)

    def calls_of(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def method_counts(self, *, writes_only: bool = False) -> Counter[str]:
        return Counter(c.method for c in self.calls if not writes_only or c.method in WRITE_METHODS)

    def drop_responses(self, count: int = 1) -> None:
        """The next `count` creates are applied, then their responses are lost."""
        self._drops += count

    def expire_streams(self) -> None:
        """Every open stream expires now (later appends and stops are refused)."""
        for message in self.messages.values():
            if message.streaming:
                message.streaming = False
                message.expired = True

    # -- events --------------------------------------------------------------------------------

    def next_ts(self) -> str:
        return f"{int(time.time())}.{next(self._ts):06d}"

    def event_payload(
        self, event: Mapping[str, Any], *, event_id: str | None = None, team: str | None = None
    ) -> dict[str, Any]:
        """An Events API `event_callback` envelope around `event` (for `team`: an installed
        workspace, else the fake's own)."""
        bot_user = self.bot_user_id
        if team is not None and team != self.team_id:
            bot_user = self.bot_of(team).bot_user_id
        payload: dict[str, Any] = {
            "token": "verification-token",
            "team_id": team or self.team_id,
            "api_app_id": "A0FAKE",
            "event": dict(event),
            "type": "event_callback",
            "event_id": event_id or f"Ev{uuid.uuid4().hex[:12].upper()}",
            "event_time": int(time.time()),
            "authorizations": [
                {
                    "enterprise_id": self.enterprise_id,
                    "team_id": team or self.team_id,
                    "user_id": bot_user,
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
        }
        if self.enterprise_id:
            payload["enterprise_id"] = self.enterprise_id
        return payload

    def message(
        self,
        channel: str,
        text: str,
        *,
        user: str = "U1",
        ts: str | None = None,
        thread_ts: str | None = None,
        channel_type: str | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """A `message` event as Slack sends it (`channel_type` from the channel id)."""
        if channel_type is None:
            channel_type = {"D": "im", "G": "group"}.get(channel[:1], "channel")
        event: dict[str, Any] = {
            "type": "message",
            "channel": channel,
            "user": user,
            "text": text,
            "ts": ts or self.next_ts(),
            "team": self.team_id,
            "channel_type": channel_type,
            "event_ts": ts,
        }
        if thread_ts:
            event["thread_ts"] = thread_ts
            event["parent_user_id"] = user
        event["event_ts"] = event["ts"]
        event.update(extra)
        return event

    def app_mention(self, message_event: Mapping[str, Any]) -> dict[str, Any]:
        """The `app_mention` event Slack sends next to `message_event`."""
        event = {k: v for k, v in message_event.items() if k != "channel_type"}
        event["type"] = "app_mention"
        return event

    async def send_event(
        self,
        event: Mapping[str, Any],
        *,
        event_id: str | None = None,
        retry_attempt: int = 0,
        payload: Mapping[str, Any] | None = None,
        socket: int = -1,
    ) -> str:
        """Send one `events_api` envelope (on the newest socket, or `sockets[socket]`).

        Returns its envelope id.
        """
        if not self.sockets:
            raise AssertionError("no Socket Mode client is connected")
        body = (
            dict(payload) if payload is not None else self.event_payload(event, event_id=event_id)
        )
        envelope_id = uuid.uuid4().hex
        envelope = {
            "envelope_id": envelope_id,
            "type": "events_api",
            "accepts_response_payload": False,
            "retry_attempt": retry_attempt,
            "retry_reason": "timeout" if retry_attempt else "",
            "payload": body,
        }
        self._envelopes[envelope_id] = envelope
        self.envelopes_sent[envelope_id] = time.time()
        await self.sockets[socket].send_str(json.dumps(envelope))
        if self.auto_redeliver:
            self._spawn(self._redeliver_unacked(envelope_id))
        return envelope_id

    async def send_envelope(
        self, kind: str, payload: Mapping[str, Any], *, socket: int = -1
    ) -> str:
        """Send a `slash_commands` or `interactive` envelope; returns its envelope id."""
        if not self.sockets:
            raise AssertionError("no Socket Mode client is connected")
        envelope_id = uuid.uuid4().hex
        envelope = {
            "envelope_id": envelope_id,
            "type": kind,
            "accepts_response_payload": kind == "slash_commands",
            "payload": dict(payload),
        }
        self.envelopes_sent[envelope_id] = time.time()
        await self.sockets[socket].send_str(json.dumps(envelope))
        return envelope_id

    def slash_command(
        self, channel: str, text: str, *, user: str = "U1", command: str = "/threadline"
    ) -> dict[str, Any]:
        """A slash command payload as Slack sends it (its response_url points at this fake)."""
        return {
            "token": "verification-token",
            "team_id": self.team_id,
            "team_domain": "fake",
            "channel_id": channel,
            "channel_name": "directmessage" if channel.startswith("D") else "general",
            "user_id": user,
            "user_name": user.lower(),
            "command": command,
            "text": text,
            "api_app_id": "A0FAKE",
            "is_enterprise_install": "false",
            "response_url": f"http://127.0.0.1:{self._port}/respond/{uuid.uuid4().hex}",
            "trigger_id": f"{next(self._ts)}.{uuid.uuid4().hex[:8]}",
        }

    def message_shortcut(
        self,
        channel: str,
        message: Mapping[str, Any],
        *,
        user: str = "U1",
        callback_id: str = "ask_threadline",
    ) -> dict[str, Any]:
        """A message shortcut (`message_action`) payload for `message` in `channel`."""
        return {
            "type": "message_action",
            "token": "verification-token",
            "callback_id": callback_id,
            "trigger_id": f"{next(self._ts)}.{uuid.uuid4().hex[:8]}",
            "action_ts": self.next_ts(),
            "team": {"id": self.team_id, "domain": "fake"},
            "user": {"id": user, "username": user.lower(), "team_id": self.team_id},
            "channel": {"id": channel, "name": "general"},
            "message": dict(message),
            "message_ts": message.get("ts"),
            "response_url": f"http://127.0.0.1:{self._port}/respond/{uuid.uuid4().hex}",
        }

    def assistant_thread_event(
        self,
        kind: str,
        channel: str,
        thread_ts: str,
        *,
        user: str = "U1",
        viewing: str | None = None,
    ) -> dict[str, Any]:
        """`assistant_thread_started` or `assistant_thread_context_changed`."""
        context: dict[str, Any] = {}
        if viewing is not None:
            context = {"channel_id": viewing, "team_id": self.team_id, "enterprise_id": None}
        return {
            "type": kind,
            "assistant_thread": {
                "user_id": user,
                "context": context,
                "channel_id": channel,
                "thread_ts": thread_ts,
            },
            "event_ts": self.next_ts(),
        }

    async def stop_session(self, channel: str, thread_ts: str, *, user: str = "U1") -> str:
        """A user clicks the agent session's native Stop: Slack stops the thread's open streams
        and sends `agent_session_stopped` (the session's status stays as the app left it)."""
        stopped = []
        for message in self.thread_messages(channel, thread_ts):
            if message.streaming:
                message.streaming = False
                stopped.append(message.ts)
        event = {
            "type": "agent_session_stopped",
            "channel": channel,
            "thread_ts": thread_ts,
            "user": user,
            "streaming_message_ts": stopped,
            "event_ts": self.next_ts(),
        }
        return await self.send_event(event)

    async def _respond(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.responses.append(dict(body))
        return web.Response(text="ok")

    async def redeliver(self, envelope_id: str, *, socket: int = -1) -> str:
        """Send an envelope's payload again as Slack's retry (same event_id, retry_attempt+1)."""
        envelope = self._envelopes[envelope_id]
        return await self.send_event(
            envelope["payload"]["event"],
            payload=envelope["payload"],
            retry_attempt=int(envelope["retry_attempt"]) + 1,
            socket=socket,
        )

    async def _redeliver_unacked(self, envelope_id: str) -> None:
        """Like Slack: an envelope nobody acknowledged goes out again on a live connection."""
        await asyncio.sleep(self.ack_timeout)
        for _ in range(20):
            if envelope_id in self.acks:
                return
            if self.sockets:
                await self.redeliver(envelope_id)
                return
            await asyncio.sleep(0.25)

    async def disconnect(self, reason: str = "refresh_requested", *, close: bool = True) -> None:
        """Ask every connected client to reconnect, as Slack does; then close the sockets, or
        leave them open (Slack closes them about 10 s later) with `close=False`."""
        for socket in list(self.sockets):
            await socket.send_str(
                json.dumps({"type": "disconnect", "reason": reason, "debug_info": {}})
            )
            if close:
                await socket.close()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ticket = request.query.get("ticket", "")
        if ticket not in self._tickets():
            raise web.HTTPUnauthorized()
        socket = web.WebSocketResponse(heartbeat=None)
        await socket.prepare(request)
        self.sockets.append(socket)
        self.socket_connects += 1
        await socket.send_str(
            json.dumps(
                {
                    "type": "hello",
                    "num_connections": len(self.sockets),
                    "debug_info": {"host": "fake-slack", "approximate_connection_time": 18060},
                    "connection_info": {"app_id": "A0FAKE"},
                }
            )
        )
        try:
            async for frame in socket:
                if frame.type is aiohttp.WSMsgType.TEXT:
                    try:
                        data = json.loads(frame.data)
                    except ValueError:
                        continue
                    envelope_id = data.get("envelope_id")
                    if envelope_id and envelope_id not in self.acks:
                        self.acks[envelope_id] = time.time()
        finally:
            self.sockets.remove(socket)
        return socket

    def _tickets(self) -> set[str]:
        return self._ticket_set

    # -- Web API -------------------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args = await _read_args(request)
        call = Call(method, time.time(), args)
        self.calls.append(call)
        try:
            token = _bearer(request) or str(args.get("token") or "")
            self._check_token(method, token)
            call.team = self._team_of(token)
            self._check_rate(method, args, call.team)
            handler = getattr(self, "_m_" + method.replace(".", "_"), None)
            if handler is None:
                raise SlackError("unknown_method")
            if method == "users.info":
                await asyncio.sleep(self.users_info_delay.get(str(args.get("user")), 0.0))
            result = handler(args) if method not in _NEEDS_REQUEST else handler(args, request)
            if method == "auth.test" and token in self.teams:
                installed = self.teams[token]
                result = {
                    **result,
                    "team_id": installed.team_id,
                    "user_id": installed.bot_user_id,
                    "bot_id": installed.bot_id,
                    "enterprise_id": installed.enterprise_id,
                }
        except SlackError as exc:
            call.status, call.error = exc.status, exc.error
            self.errors.append(call)
            headers = {}
            if exc.status == 429:
                headers["Retry-After"] = str(self._retry_after)
            return web.json_response(
                {"ok": False, "error": exc.error}, status=exc.status, headers=headers
            )
        if self._drops and method in ("chat.postMessage", "chat.startStream"):
            self._drops -= 1
            self.dropped.append(call)
            assert request.transport is not None
            request.transport.close()
            raise asyncio.CancelledError  # applied; the client never hears of it
        return web.json_response({"ok": True, **result})

    def _check_token(self, method: str, token: str) -> None:
        if method == "apps.connections.open":
            if token != self.app_token:
                raise SlackError(
                    "invalid_auth" if not token.startswith("xoxb") else "not_allowed_token_type"
                )
            return
        if method == "oauth.v2.access":
            return  # client credentials, checked by the method
        if token in self.revoked:
            raise SlackError("token_revoked")
        if token in self.token_expiry and time.time() > self.token_expiry[token]:
            raise SlackError("token_expired")
        if token != self.bot_token and token not in self.teams:
            raise SlackError("invalid_auth" if token else "not_authed")

    def _team_of(self, token: str) -> str:
        installed = self.teams.get(token)
        return installed.team_id if installed is not None else self.space

    def _check_rate(self, method: str, args: Mapping[str, Any], team: str) -> None:
        now = time.monotonic()
        checks = [(method, self.tiers.get(method))]
        if method + "@team" in self.tiers:
            checks.append((method + "@team", self.tiers[method + "@team"]))
        waits = []
        for name, tier in checks:
            if tier is None:
                continue
            key = f"{team}:{name}"
            if tier.per == "channel":
                key += ":" + str(args.get("channel"))
            elif tier.per == "thread":
                key += f":{args.get('channel_id')}:{args.get('thread_ts')}"
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _Bucket(tier, now)
            waits.append((bucket, bucket.tokens))
            wait = bucket.take(now)
            if wait > 0:
                for granted, before in waits[:-1]:
                    granted.tokens = before  # all or nothing
                self.rate_limited += 1
                self.rate_limited_by_method[method] += 1
                self._retry_after = max(1, math.ceil(wait))
                raise SlackError("ratelimited", 429)

    _retry_after = 1

    def _record_text(self, method: str, ts: str, text: str) -> None:
        if LIVE_MENTION.search(text):
            self.live_mentions.append((method, ts))

    def _message(self, args: Mapping[str, Any], *, streaming_ok: bool = True) -> Message:
        channel, ts = str(args.get("channel") or ""), str(args.get("ts") or "")
        self._channel_ok(channel)
        message = self.messages.get(ts)
        if message is None or message.channel != channel or message.deleted:
            raise SlackError("message_not_found")
        return message

    def _channel_ok(self, channel: str) -> None:
        if not channel or channel in self.missing_channels:
            raise SlackError("channel_not_found")
        if channel in self.not_in_channels:
            raise SlackError("not_in_channel")

    def _content(
        self, args: Mapping[str, Any], *, required: bool = True
    ) -> tuple[str, bool] | None:
        if args.get("link_names") not in (None, False, "false", "0", 0):
            self.link_names_used += 1
        blocks = args.get("blocks")
        if blocks is not None:
            if isinstance(blocks, str):
                try:
                    blocks = json.loads(blocks)
                except ValueError:
                    raise SlackError("invalid_blocks") from None
            if not isinstance(blocks, list):
                raise SlackError("invalid_blocks")
        markdown = args.get("markdown_text")
        text = args.get("text")
        if markdown is not None:
            if len(str(markdown)) > MARKDOWN_LIMIT:
                raise SlackError("msg_too_long")
            return str(markdown), True
        if text is not None and str(text) != "":
            if len(str(text)) > TEXT_LIMIT:
                raise SlackError("msg_too_long")
            return str(text), False
        if required and not blocks:
            raise SlackError("no_text")
        return None

    def _metadata(self, args: Mapping[str, Any]) -> dict[str, Any] | None:
        raw = args.get("metadata")
        if raw is None:
            return None
        if isinstance(raw, str):
            try:
                raw = json.loads(raw)
            except ValueError:
                raise SlackError("invalid_metadata_format") from None
        if (
            not isinstance(raw, dict)
            or not isinstance(raw.get("event_type"), str)
            or not isinstance(raw.get("event_payload"), dict)
        ):
            raise SlackError("invalid_metadata_format")
        return {"event_type": raw["event_type"], "event_payload": raw["event_payload"]}

    def _new_message(
        self, args: Mapping[str, Any], text: str, markdown: bool, streaming: bool
    ) -> Message:
        metadata = self._metadata(args)
        now = time.time()
        ts = self.next_ts()
        thread_ts = args.get("thread_ts")
        message = Message(
            channel=str(args["channel"]),
            ts=ts,
            thread_ts=str(thread_ts) if thread_ts else None,
            text=text,
            markdown=markdown,
            streaming=streaming,
            created_at=now,
            updated_at=now,
            history=[(now, text)],
            metadata=metadata,
        )
        self.messages[ts] = message
        return message

    def _set_text(self, message: Message, text: str, method: str) -> None:
        now = time.time()
        message.text = text
        message.updated_at = now
        message.history.append((now, text))
        self._record_text(method, message.ts, text)

    def _expire_if_old(self, message: Message) -> None:
        if (
            message.streaming
            and self.stream_ttl is not None
            and time.time() - message.created_at > self.stream_ttl
        ):
            message.streaming = False
            message.expired = True

    # methods ---------------------------------------------------------------------------------

    def _m_auth_test(self, args: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "url": "https://fake.slack.com/",
            "team": "Fake Team",
            "user": "threadline",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "enterprise_id": self.enterprise_id,
            "is_enterprise_install": False,
        }

    def _m_apps_connections_open(self, args: Mapping[str, Any]) -> dict[str, Any]:
        ticket = uuid.uuid4().hex
        self._tickets().add(ticket)
        return {"url": f"ws://127.0.0.1:{self._port}/socket?ticket={ticket}"}

    def _m_chat_postMessage(self, args: Mapping[str, Any]) -> dict[str, Any]:
        self._channel_ok(str(args.get("channel") or ""))
        content = self._content(args)
        assert content is not None
        message = self._new_message(args, content[0], content[1], streaming=False)
        self._record_text("chat.postMessage", message.ts, content[0])
        return {"channel": message.channel, "ts": message.ts, "message": {"text": content[0]}}

    def _m_chat_update(self, args: Mapping[str, Any]) -> dict[str, Any]:
        message = self._message(args)
        content = self._content(args)
        assert content is not None
        metadata = self._metadata(args)
        message.markdown = content[1]
        message.streaming = False
        message.expired = False
        if metadata is not None:
            message.metadata = metadata
        self._set_text(message, content[0], "chat.update")
        return {"channel": message.channel, "ts": message.ts, "text": content[0]}

    def _m_chat_delete(self, args: Mapping[str, Any]) -> dict[str, Any]:
        message = self._message(args)
        message.deleted = True
        return {"channel": message.channel, "ts": message.ts}

    def _m_chat_startStream(self, args: Mapping[str, Any]) -> dict[str, Any]:
        if not self.native_streaming:
            raise SlackError("feature_not_enabled")
        channel = str(args.get("channel") or "")
        self._channel_ok(channel)
        if not args.get("thread_ts"):
            raise SlackError("invalid_arguments")
        if not channel.startswith("D") and not (
            args.get("recipient_user_id") and args.get("recipient_team_id")
        ):
            raise SlackError("missing_recipient_user_id")
        content = self._content(args, required=False)
        text = content[0] if content else ""
        message = self._new_message(args, text, True, streaming=True)
        self._record_text("chat.startStream", message.ts, text)
        return {"channel": channel, "ts": message.ts}

    def _m_chat_appendStream(self, args: Mapping[str, Any]) -> dict[str, Any]:
        message = self._message(args)
        self._expire_if_old(message)
        if not message.streaming:
            raise SlackError("message_not_in_streaming_state")
        content = self._content(args)
        assert content is not None
        if len(message.text) + len(content[0]) > MARKDOWN_LIMIT * 4:
            raise SlackError("msg_too_long")
        self._set_text(message, message.text + content[0], "chat.appendStream")
        return {"channel": message.channel, "ts": message.ts}

    def _m_chat_stopStream(self, args: Mapping[str, Any]) -> dict[str, Any]:
        message = self._message(args)
        self._expire_if_old(message)
        if not message.streaming:
            raise SlackError("message_not_in_streaming_state")
        content = self._content(args, required=False)
        metadata = self._metadata(args)
        if metadata is not None:
            message.metadata = metadata
        message.streaming = False
        self._set_text(message, message.text + (content[0] if content else ""), "chat.stopStream")
        return {"channel": message.channel, "ts": message.ts, "message": {"text": message.text}}

    def _m_assistant_threads_setStatus(self, args: Mapping[str, Any]) -> dict[str, Any]:
        if self.status_error:
            raise SlackError(self.status_error)
        self.statuses.append(
            (str(args.get("channel_id")), str(args.get("thread_ts")), str(args.get("status")))
        )
        return {}

    def _m_assistant_threads_setSuggestedPrompts(self, args: Mapping[str, Any]) -> dict[str, Any]:
        prompts = args.get("prompts")
        if isinstance(prompts, str):
            prompts = json.loads(prompts)
        if not isinstance(prompts, list) or not prompts:
            raise SlackError("invalid_arguments")
        self.suggested_prompts.append(dict(args))
        return {}

    def _m_assistant_threads_setTitle(self, args: Mapping[str, Any]) -> dict[str, Any]:
        self.titles.append(
            (str(args.get("channel_id")), str(args.get("thread_ts")), str(args.get("title")))
        )
        return {}

    def authorize_code(
        self, team_id: str, *, bot_user_id: str | None = None, installer: str = "U9"
    ) -> str:
        """A code as Slack gives the installing user's browser for the redirect URL."""
        code = f"code-{uuid.uuid4().hex[:10]}"
        suffix = team_id[-4:]
        self._codes[code] = InstalledTeam(
            team_id=team_id,
            bot_user_id=bot_user_id or f"UB{suffix}",
            bot_id=f"BB{suffix}",
        )
        self._installers[code] = installer
        return code

    def _issue(self, installed: InstalledTeam) -> dict[str, Any]:
        token = f"xoxb-{installed.team_id}-{uuid.uuid4().hex[:16]}"
        self.teams[token] = installed
        issued: dict[str, Any] = {"access_token": token}
        if self.token_rotation:
            refresh = f"xoxe-1-{uuid.uuid4().hex[:16]}"
            self.refresh_tokens[refresh] = installed.team_id
            self.token_expiry[token] = time.time() + self.token_lifetime
            issued.update(refresh_token=refresh, expires_in=self.token_lifetime)
        return issued

    def _m_oauth_v2_access(self, args: Mapping[str, Any], request: web.Request) -> dict[str, Any]:
        client_id, client_secret = args.get("client_id"), args.get("client_secret")
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            decoded = base64.b64decode(header[6:]).decode()
            client_id, _, client_secret = decoded.partition(":")
        if client_id != self.client_id or client_secret != self.client_secret:
            raise SlackError("invalid_client_id")
        if args.get("grant_type") == "refresh_token":
            team_id = self.refresh_tokens.pop(str(args.get("refresh_token") or ""), None)
            installed = next((t for t in self.teams.values() if t.team_id == team_id), None)
            if installed is None:
                raise SlackError("invalid_refresh_token")
            return {"token_type": "bot", **self._issue(installed), "team": {"id": team_id}}
        installed = self._codes.pop(str(args.get("code") or ""), None)
        if installed is None:
            raise SlackError("invalid_code")
        return {
            **self._issue(installed),
            "token_type": "bot",
            "scope": "app_mentions:read,chat:write,commands",
            "bot_user_id": installed.bot_user_id,
            "app_id": "A0FAKE",
            "team": {"id": installed.team_id, "name": f"Team {installed.team_id}"},
            "enterprise": None,
            "is_enterprise_install": False,
            "authed_user": {"id": self._installers.get(str(args.get("code")), "U9")},
        }

    def uninstall(self, team_id: str) -> None:
        """Every token of the team stops working (`app_uninstalled` is the test's to send)."""
        for token, installed in self.teams.items():
            if installed.team_id == team_id:
                self.revoked.add(token)

    def bot_of(self, team_id: str) -> InstalledTeam:
        return next(t for t in self.teams.values() if t.team_id == team_id)

    def _m_agents_sessions_setStatus(self, args: Mapping[str, Any]) -> dict[str, Any]:
        if not self.agent_app:
            raise SlackError("not_allowed")
        status = str(args.get("status") or "")
        if status not in ("active", "processing", "suspended", "closed"):
            raise SlackError("invalid_arguments")
        channel, thread = str(args.get("channel_id") or ""), str(args.get("thread_ts") or "")
        self._channel_ok(channel)
        self.sessions[(channel, thread)] = status
        self.session_history.append((channel, thread, status))
        return {"status": status}

    def _m_users_info(self, args: Mapping[str, Any]) -> dict[str, Any]:
        user = str(args.get("user") or "")
        if user not in self.users:
            raise SlackError("user_not_found")
        name = self.users[user]
        return {
            "user": {
                "id": user,
                "team_id": self.team_id,
                "name": name.lower().replace(" ", "."),
                "real_name": name,
                "profile": {"display_name": name, "real_name": name},
            }
        }

    def _m_conversations_replies(self, args: Mapping[str, Any]) -> dict[str, Any]:
        channel, ts = str(args.get("channel") or ""), str(args.get("ts") or "")
        self._channel_ok(channel)
        if not ts:
            raise SlackError("invalid_arguments")
        with_metadata = _flag(args.get("include_all_metadata"))
        inclusive = _flag(args.get("inclusive"))
        oldest = float(args.get("oldest") or 0)
        latest = float(args.get("latest") or math.inf)
        limit = max(1, min(int(args.get("limit") or 1000), 1000))
        start = int(args.get("cursor") or 0)

        def within(stamp: float) -> bool:
            if inclusive:
                return oldest <= stamp <= latest
            return oldest < stamp < latest

        found = [m for m in self.thread_messages(channel, ts) if within(float(m.ts))]
        page = found[start : start + limit]
        messages = []
        for m in page:
            item: dict[str, Any] = {
                "type": "message",
                "ts": m.ts,
                "thread_ts": m.thread_ts,
                "user": self.bot_user_id,
                "bot_id": self.bot_id,
                "text": m.text,
            }
            if with_metadata and m.metadata is not None:
                item["metadata"] = m.metadata
            messages.append(item)
        more = start + limit < len(found)
        return {
            "messages": messages,
            "has_more": more,
            "response_metadata": {"next_cursor": str(start + limit) if more else ""},
        }


_NEEDS_REQUEST = frozenset({"oauth.v2.access"})


def _flag(value: Any) -> bool:
    return value in (True, 1, "1", "true", "True")


async def _read_args(request: web.Request) -> dict[str, Any]:
    args: dict[str, Any] = dict(request.query)
    if request.method != "POST" or not request.can_read_body:
        return args
    kind = request.content_type
    if kind == "application/json":
        body = await request.json()
        if isinstance(body, dict):
            args.update(body)
    else:
        form = await request.post()
        args.update({k: v for k, v in form.items() if isinstance(v, str)})
    return args


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return header[len("Bearer ") :]
    return None


def sign(secret: str, body: bytes, timestamp: str) -> str:
    """Slack's v0 request signature."""
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


async def post_signed_event(
    url: str,
    payload: Mapping[str, Any],
    secret: str,
    *,
    retry_num: int | None = None,
    timestamp: int | None = None,
    signature: str | None = None,
) -> tuple[int, str, float]:
    """POST `payload` to an HTTP events endpoint as Slack does; returns (status, body, seconds)."""
    body = json.dumps(payload).encode()
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    headers = {
        "Content-Type": "application/json",
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": signature or sign(secret, body, stamp),
    }
    if retry_num is not None:
        headers["X-Slack-Retry-Num"] = str(retry_num)
        headers["X-Slack-Retry-Reason"] = "http_timeout"
    started = time.monotonic()
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers=headers) as response,
    ):
        text = await response.text()
        return response.status, text, time.monotonic() - started


async def post_signed_form(
    url: str, fields: Mapping[str, Any], secret: str
) -> tuple[int, str, float]:
    """POST a form (a slash command, or `payload=` of an interaction) signed as Slack does."""
    body = urlencode({k: str(v) for k, v in fields.items()}).encode()
    stamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": sign(secret, body, stamp),
    }
    started = time.monotonic()
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers=headers) as response,
    ):
        text = await response.text()
        return response.status, text, time.monotonic() - started
