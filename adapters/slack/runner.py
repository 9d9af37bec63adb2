"""The Slack channel's lifecycle: Socket Mode or HTTP Events API, event dispatch, tracked tasks."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.api import SlackApi, SlackGone
from adapters.slack.inbound import (
    SlackMessage,
    parse_message,
    to_inbound,
    workspace_of,
)
from adapters.slack.sink import NativeAdmission, Scopes, SlackSink, SlackTarget, revive
from core.errors import ConfigError, SinkError
from core.routing import Accepted, Routed
from core.service import ChatService, Prepared
from core.streaming import Pacer, Priority
from core.tasks import TaskSet

log = logging.getLogger(__name__)

SUGGESTED_PROMPTS = (
    {"title": "Explain something", "message": "Explain how a token bucket rate limiter works."},
    {"title": "Write code", "message": "Write a Python function that merges two sorted lists."},
    {"title": "Summarise", "message": "Summarise the key points of our discussion so far."},
)
ASSISTANT_TITLE = "Chat with threadline"
_NAME_LIMIT = 20_000


@dataclass(frozen=True, slots=True)
class SlackConfig:
    """What the channel needs from the settings."""

    bot_token: str
    app_token: str | None = None
    signing_secret: str | None = None
    api_url: str = "https://slack.com/api/"
    require_mention: bool = False
    native_streaming: bool = True
    http_host: str = "0.0.0.0"
    http_port: int = 3000
    http_path: str = "/slack/events"


class SlackChannel:
    """Receives Slack events (Socket Mode or HTTP), answers them through the ChatService.

    Every event is acknowledged at once and each message handed to the core's accept step
    before anything is awaited (which also drops the second copy that app_mention and
    message.* deliver, and Slack's retries); the work runs in a tracked task.
    """

    def __init__(self, config: SlackConfig, service: ChatService, pacer: Pacer) -> None:
        self.config = config
        self.service = service
        self.pacer = pacer
        self.admission = NativeAdmission(config.native_streaming)
        self.status_off: set[str] = set()
        self.bot_user_id = ""
        self.bot_id: str | None = None
        self.http_port: int | None = None
        self._api: SlackApi | None = None
        self._tasks = TaskSet("slack")
        self._names: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._name_lookups: dict[tuple[str, str], asyncio.Future[str]] = {}
        self.ready = asyncio.Event()

    @property
    def api(self) -> SlackApi:
        assert self._api is not None, "the channel is not running"
        return self._api

    async def run(self) -> None:
        """Connect, serve events until cancelled, then finish cleanly."""
        async with aiohttp.ClientSession() as session:
            client = AsyncWebClient(
                token=self.config.bot_token,
                base_url=self.config.api_url,
                session=session,
                retry_handlers=[],
                timeout=30,
            )
            self._api = SlackApi(client, self.pacer)
            try:
                await self._identify()
                self.service.recovery.register("slack", self._revive)
                if self.config.app_token:
                    await self._socket_mode(session)
                else:
                    await self._http_mode()
            finally:
                await self._tasks.cancel_all()

    # -- start-up ----------------------------------------------------------------------------

    async def _identify(self) -> None:
        delay = 1.0
        while True:
            try:
                data = await self.api.raw("auth.test")
                break
            except SinkError as exc:
                if isinstance(exc, SlackGone) and exc.error in ("invalid_auth", "not_authed"):
                    raise ConfigError(
                        "SLACK_BOT_TOKEN", f"Slack refused it ({exc.error})"
                    ) from None
                log.warning("slack auth.test failed (%s); retrying in %.0fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
        self.bot_user_id = str(data.get("user_id") or "")
        self.bot_id = data.get("bot_id")
        self.api.bot_id = self.bot_id
        log.info("slack bot %s (team %s) ready", self.bot_user_id, data.get("team_id"))

    def _revive(self, described: dict[str, Any]) -> SlackSink | None:
        return revive(
            self.api, described, admission=self.admission, status_off=self.status_off
        )

    # -- Socket Mode -------------------------------------------------------------------------

    async def _socket_mode(self, session: aiohttp.ClientSession) -> None:
        assert self.config.app_token is not None
        # The socket URL carries a connection ticket: keep slack_sdk's DEBUG logs of it out.
        quiet = logging.getLogger(f"{__name__}.connections")
        quiet.setLevel(max(logging.INFO, logging.getLogger().getEffectiveLevel()))
        opener = AsyncWebClient(
            base_url=self.config.api_url,
            session=session,
            retry_handlers=[],
            timeout=30,
            logger=quiet,
        )
        delay = 1.0
        while True:
            try:
                opened = await opener.apps_connections_open(app_token=self.config.app_token)
                url = str(opened["url"])
                async with session.ws_connect(url, heartbeat=20.0) as socket:
                    delay = 1.0
                    asked = await self._read_socket(socket)
                if asked:
                    continue  # Slack asked us to move to a fresh connection: at once
                log.info("slack socket closed; reconnecting")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("slack socket mode connection failed: %s", type(exc).__name__)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    async def _read_socket(self, socket: aiohttp.ClientWebSocketResponse) -> bool:
        """Serve one connection; True when Slack asked to reconnect (`disconnect`)."""
        async for frame in socket:
            if frame.type is not aiohttp.WSMsgType.TEXT:
                if frame.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.ERROR):
                    return False
                continue
            try:
                envelope = json.loads(frame.data)
            except ValueError:
                log.warning("slack socket sent a frame that is not JSON")
                continue
            kind = envelope.get("type")
            if kind == "hello":
                log.info("slack socket mode connected")
                self.ready.set()
                continue
            if kind == "disconnect":
                log.info("slack asked to reconnect (%s)", envelope.get("reason"))
                return True
            envelope_id = envelope.get("envelope_id")
            if envelope_id:
                await socket.send_str(json.dumps({"envelope_id": envelope_id}))
            if kind == "events_api" and isinstance(envelope.get("payload"), Mapping):
                self.dispatch(envelope["payload"], retry=int(envelope.get("retry_attempt") or 0))
        return False

    # -- HTTP Events API ---------------------------------------------------------------------

    async def _http_mode(self) -> None:
        assert self.config.signing_secret is not None
        verifier = SignatureVerifier(self.config.signing_secret)
        app = web.Application()

        async def events(request: web.Request) -> web.Response:
            body = await request.read()
            timestamp = request.headers.get("X-Slack-Request-Timestamp")
            signature = request.headers.get("X-Slack-Signature")
            try:
                valid = verifier.is_valid(body, timestamp, signature)
            except (TypeError, ValueError):
                valid = False
            if not valid:
                log.warning("refused a slack request with a bad signature or timestamp")
                return web.Response(status=401, text="invalid signature")
            try:
                payload = json.loads(body)
            except ValueError:
                return web.Response(status=400, text="not JSON")
            if not isinstance(payload, dict):
                return web.Response(status=400, text="not an object")
            if payload.get("type") == "url_verification":
                return web.json_response({"challenge": payload.get("challenge")})
            retry = request.headers.get("X-Slack-Retry-Num")
            self.dispatch(payload, retry=int(retry) if retry and retry.isdigit() else 0)
            return web.Response(status=200)

        app.router.add_post(self.config.http_path, events)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.config.http_host, self.config.http_port)
            await site.start()
            server = getattr(site, "_server", None)
            sockets = getattr(server, "sockets", None) or ()
            self.http_port = sockets[0].getsockname()[1] if sockets else self.config.http_port
            log.info(
                "slack HTTP events listening on %s:%s%s",
                self.config.http_host,
                self.http_port,
                self.config.http_path,
            )
            self.ready.set()
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    # -- dispatch ----------------------------------------------------------------------------

    def dispatch(self, payload: Mapping[str, Any], *, retry: int = 0) -> None:
        """Take one Events API payload: remember it, and start its work in a tracked task."""
        if payload.get("type") != "event_callback":
            return
        event = payload.get("event") or {}
        kind = event.get("type")
        if kind == "assistant_thread_started":
            self._tasks.spawn(self._assistant_thread_started(payload))
            return
        if kind not in ("message", "app_mention"):
            return
        message = parse_message(payload, bot_user_id=self.bot_user_id, bot_id=self.bot_id)
        if message is None:
            return
        inbound = to_inbound(message, require_mention=self.config.require_mention)
        accepted = self.service.accept(inbound)
        if accepted is None:
            return  # the same message as app_mention and message.*, or redelivered
        self._tasks.spawn(self._answer(message, accepted))

    async def _answer(self, message: SlackMessage, accepted: Accepted) -> None:
        async def prepare(routed: Routed) -> Prepared:
            name = message.user if message.is_dm else await self._author_name(message)
            target = SlackTarget(
                space=message.space,
                team_id=message.user_team,
                channel=message.channel,
                thread_ts=message.thread,
                user=message.user,
                is_dm=message.is_dm,
            )
            sink = SlackSink(
                self.api,
                target,
                native=self.admission.admit(message.space),
                admission=self.admission,
                status_off=self.status_off,
            )
            return Prepared(sink, author_name=name)

        outcome = await self.service.answer(accepted, prepare)
        if outcome.skipped:
            log.debug("slack message %s skipped: %s", message.event_id, outcome.skipped)

    async def _author_name(self, message: SlackMessage) -> str:
        """The author's display name from users.info, cached per user (ids when it fails)."""
        key = (message.space, message.user)
        name = self._names.get(key)
        if name is not None:
            return name
        pending = self._name_lookups.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._name_lookups[key] = future
        name = message.user
        try:
            data = await self.api.call(
                "users.info",
                scopes=Scopes.users_info(message.space),
                priority=Priority.FIRST,
                form=True,
                user=message.user,
            )
            user = data.get("user") or {}
            profile = user.get("profile") or {}
            name = str(
                profile.get("display_name")
                or profile.get("real_name")
                or user.get("real_name")
                or user.get("name")
                or message.user
            )
        except SinkError as exc:
            log.info("users.info failed for %s: %s", message.user, exc)
        finally:
            self._name_lookups.pop(key, None)
            self._names[key] = name
            if len(self._names) > _NAME_LIMIT:
                self._names.popitem(last=False)
            future.set_result(name)
        return name

    async def _assistant_thread_started(self, payload: Mapping[str, Any]) -> None:
        """An assistant (AI app) thread opened: suggest prompts and give it a title."""
        thread = (payload.get("event") or {}).get("assistant_thread") or {}
        channel, thread_ts = thread.get("channel_id"), thread.get("thread_ts")
        if not channel or not thread_ts:
            return
        space, _ = workspace_of(payload)
        try:
            await self.api.call(
                "assistant.threads.setSuggestedPrompts",
                scopes=Scopes.tier3(space, "assistant.threads.setSuggestedPrompts"),
                priority=Priority.FIRST,
                channel_id=channel,
                thread_ts=thread_ts,
                title="Try asking",
                prompts=list(SUGGESTED_PROMPTS),
            )
            await self.api.call(
                "assistant.threads.setTitle",
                scopes=Scopes.tier3(space, "assistant.threads.setTitle"),
                priority=Priority.FIRST,
                channel_id=channel,
                thread_ts=thread_ts,
                title=ASSISTANT_TITLE,
            )
        except SinkError as exc:
            log.info("could not set up assistant thread %s: %s", thread_ts, exc)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("assistant thread %s set-up failed", thread_ts)
