"""The Slack channel on Bolt: what each request does, answers through the core, tracked tasks."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.authorization.async_authorize import (
    AsyncAuthorize,
    AsyncInstallationStoreAuthorize,
)
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.api import SlackApi, SlackGone
from adapters.slack.arrival_order import ArrivalOrder
from adapters.slack.assistant import (
    ACTIVE,
    PROCESSING,
    AgentSessions,
    AssistantSettings,
    context_note,
    set_up_thread,
    viewed_channel,
)
from adapters.slack.bolt_app import COMMAND, bolt_logger, build_app
from adapters.slack.inbound import (
    PLATFORM,
    SlackMessage,
    parse_message,
    to_inbound,
    workspace_of,
)
from adapters.slack.people import AuthorNames
from adapters.slack.sink import NativeAdmission, SlackSink, SlackTarget, revive
from adapters.slack.slash import LastThreads, parse_slash, slash_help
from adapters.slack.transports import (
    OrderedHttpServer,
    OrderedSocketModeHandler,
    serve_http,
    serve_socket_mode,
)
from core.conversation import ConversationKey, Inbound
from core.errors import ConfigError, SinkError
from core.routing import Accepted, Routed
from core.service import ChatService, Prepared
from core.streaming import Pacer
from core.tasks import TaskSet

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SlackConfig:
    """What the channel needs from the settings."""

    bot_token: str | None  # one workspace; None: installs in many (OAuth)
    app_token: str | None = None
    signing_secret: str | None = None
    api_url: str = "https://slack.com/api/"
    require_mention: bool = False
    native_streaming: bool = True
    http_host: str = "0.0.0.0"
    http_port: int = 3000
    http_path: str = "/slack/events"
    assistant: AssistantSettings = field(default_factory=AssistantSettings)
    agent_sessions: bool = True


class SlackChannel:
    """Serves Slack through one Bolt `AsyncApp` (Socket Mode or HTTP) and answers via the core.

    Each request gets an arrival ticket from the transport; a message listener hands the
    message to the core's accept step in that order, before awaiting anything else, then
    answers in a tracked task. Answers are written through threadline's paced `SlackApi`.
    """

    def __init__(
        self,
        config: SlackConfig,
        service: ChatService,
        pacer: Pacer,
        *,
        installs: AsyncOAuthSettings | None = None,
    ) -> None:
        self.config = config
        self.installs = installs
        self.service = service
        self.pacer = pacer
        self.admission = NativeAdmission(config.native_streaming)
        self.status_off: set[str] = set()
        self.bot_user_id = ""
        self.bot_id: str | None = None
        self.http_port: int | None = None
        self.ready = asyncio.Event()
        self._order = ArrivalOrder()
        self._tasks = TaskSet("slack")
        self.sessions = AgentSessions(self._tasks, enabled=config.agent_sessions)
        self._names = AuthorNames()
        self._threads = LastThreads()
        self._session: aiohttp.ClientSession | None = None
        self._apis: dict[str, SlackApi] = {}  # by workspace
        self._tokens: dict[str, str] = {}  # the latest bot token Bolt authorized, by workspace
        self._uninstalled: set[str] = set()

    @property
    def api(self) -> SlackApi:
        """The API client of the configured bot token (one workspace)."""
        return self._api_for_space("")

    async def run(self) -> None:
        """Connect, serve Slack until cancelled, then finish cleanly."""
        async with aiohttp.ClientSession() as session:
            self._session = session
            try:
                if self.config.bot_token:
                    await self._identify()
                self.service.recovery.register("slack", self._revive)
                app = build_app(
                    self,
                    self._client(None),
                    signing_secret=self.config.signing_secret,
                    authorize=self._authorizer(),
                    oauth_settings=self.installs,
                    logger=bolt_logger(),
                )
                if self.config.app_token:
                    handler = OrderedSocketModeHandler(
                        app,
                        self.config.app_token,
                        self._order,
                        logger=_quiet("slack_sdk.socket_mode"),
                        web_client=self._client(None),
                    )
                    await serve_socket_mode(handler, self.ready.set)
                else:
                    server = OrderedHttpServer(app, self.config.http_path, self._order)
                    await serve_http(
                        server, self.config.http_host, self.config.http_port, self._listening
                    )
            finally:
                # Intake is closed by now (socket or listener); answers get the grace to finish.
                await self._tasks.finish(self.service.shutdown_grace)
                self._session = None

    # -- Bolt entry points -------------------------------------------------------------------

    async def on_message(self, body: Mapping[str, Any], context: AsyncBoltContext) -> None:
        """A message or app_mention: accept it in arrival order, answer in a tracked task."""
        await self._order.turn()
        try:
            message = parse_message(
                body,
                bot_user_id=context.bot_user_id or self.bot_user_id,
                bot_id=context.bot_id or self.bot_id,
            )
            if message is None or message.space in self._uninstalled:
                return
            self._threads.remember(message.space, message.channel, message.user, message.thread)
            inbound = to_inbound(message, require_mention=self.config.require_mention)
            accepted = self.service.accept(inbound)
            if accepted is None:
                return  # the same message as app_mention and message.*, or redelivered
            api = self._api_for(context)
            self._tasks.spawn(self._answer(api, message, accepted))
        finally:
            await self._order.accepted()

    async def on_thread_started(self, body: Mapping[str, Any], context: AsyncBoltContext) -> None:
        """An assistant thread opened: prompts and title, and the channel the user is viewing."""
        event = body.get("event") or {}
        thread = event.get("assistant_thread") or {}
        channel, thread_ts = thread.get("channel_id"), thread.get("thread_ts")
        if not channel or not thread_ts:
            return
        space, _ = workspace_of(body)
        api = self._api_for(context)
        self._tasks.spawn(
            set_up_thread(api, space, str(channel), str(thread_ts), self.config.assistant)
        )
        await self._remember_context(space, str(channel), str(thread_ts), viewed_channel(event))

    async def on_context_changed(
        self, body: Mapping[str, Any], context: AsyncBoltContext
    ) -> None:
        """The user switched channels with the assistant pane open: the thread's new context."""
        event = body.get("event") or {}
        thread = event.get("assistant_thread") or {}
        channel, thread_ts = thread.get("channel_id"), thread.get("thread_ts")
        if channel and thread_ts:
            space, _ = workspace_of(body)
            await self._remember_context(
                space, str(channel), str(thread_ts), viewed_channel(event)
            )

    async def on_session_stopped(
        self, body: Mapping[str, Any], context: AsyncBoltContext
    ) -> None:
        """The agent session's native Stop was clicked: stop that thread's answer."""
        event = body.get("event") or {}
        channel, thread_ts = event.get("channel"), event.get("thread_ts")
        if not channel or not thread_ts:
            return
        space, _ = workspace_of(body)
        key = ConversationKey(PLATFORM, space, str(channel), str(thread_ts))
        stopped = self.service.stop(key, requested_by=str(event.get("user") or "") or None)
        log.info("agent session stop in %s: %s", key, "stopped" if stopped else "nothing running")
        if not stopped:
            target = SlackTarget(space, space, str(channel), str(thread_ts), "", is_dm=False)
            self.sessions.want(self._api_for(context), target, ACTIVE)

    async def on_uninstalled(self, body: Mapping[str, Any], context: AsyncBoltContext) -> None:
        """The app left a workspace (or its bot token was revoked): nothing is answered there
        any more, and an installed workspace's record is removed."""
        event = body.get("event") or {}
        if event.get("type") == "tokens_revoked" and not (event.get("tokens") or {}).get("bot"):
            return  # only user tokens went; the bot stays
        space, team = workspace_of(body)
        enterprise = space.partition(":")[0] if ":" in space else None
        log.info("slack app uninstalled (or its token revoked) in %s", space)
        self._tokens.pop(space, None)
        self._apis.pop(space, None)
        if self.installs is None:
            self._uninstalled.add(space)
            return
        store = self.installs.installation_store
        await store.async_delete_all(enterprise_id=enterprise, team_id=team or None)

    async def on_command(
        self, body: Mapping[str, Any], respond: AsyncRespond, context: AsyncBoltContext
    ) -> None:
        """`/threadline …`: the command's reply, visible only to whoever typed it."""
        text = str(body.get("text") or "")
        command = parse_slash(text)
        if command is None:
            await respond(
                f"I don't know `{COMMAND} {text.strip()}`.\n\n" + slash_help(COMMAND),
                response_type="ephemeral",
            )
            return
        if command.name == "help":
            await respond(slash_help(COMMAND), response_type="ephemeral")
            return
        space = _space_of_interaction(body)
        channel, user = str(body.get("channel_id") or ""), str(body.get("user_id") or "")
        thread = self._threads.find(space, channel, user)
        if thread is None:
            await respond(
                "Write me a message first (here, or in a thread): "
                f"`{COMMAND} {command.name}` then applies to that conversation.",
                response_type="ephemeral",
            )
            return
        key = ConversationKey(PLATFORM, space, channel, thread)
        reply = await self.service.command(f"/{command.name} {command.argument}", key)
        await respond(reply or slash_help(COMMAND), response_type="ephemeral")

    async def on_shortcut(
        self, body: Mapping[str, Any], respond: AsyncRespond, context: AsyncBoltContext
    ) -> None:
        """"Ask threadline about this message": answered in that message's thread."""
        message = body.get("message") or {}
        channel = str((body.get("channel") or {}).get("id") or "")
        user = str((body.get("user") or {}).get("id") or "")
        ts = str(message.get("ts") or "")
        text = str(message.get("text") or "").strip()
        if not channel or not ts or not user:
            return
        if not text:
            await respond("That message has no text I can read.", response_type="ephemeral")
            return
        space = _space_of_interaction(body)
        thread = str(message.get("thread_ts") or ts)
        slack_message = SlackMessage(
            space=space,
            team_id=space.rpartition(":")[2],
            user_team=str((body.get("user") or {}).get("team_id") or space.rpartition(":")[2]),
            channel=channel,
            user=user,
            text=f"About this message:\n\n{text}",
            ts=ts,
            thread_ts=thread,
            is_dm=channel.startswith("D"),
            mentioned=True,
        )
        inbound = Inbound(
            key=slack_message.key,
            message_id=f"shortcut:{body.get('trigger_id') or ts}",
            author_id=user,
            author_name=user,
            text=slack_message.text,
            is_direct=slack_message.is_dm,
            event_id=f"shortcut:{body.get('trigger_id') or ts}",
            addressed=True,
        )
        accepted = self.service.accept(inbound)
        if accepted is not None:
            self._tasks.spawn(self._answer(self._api_for(context), slack_message, accepted))

    async def on_stop_button(self, body: Mapping[str, Any], context: AsyncBoltContext) -> None:
        """The Stop button of an answer (channels without an agent session)."""
        channel = str((body.get("channel") or {}).get("id") or "")
        container = body.get("container") or {}
        thread = str(container.get("thread_ts") or container.get("message_ts") or "")
        if channel and thread:
            key = ConversationKey(PLATFORM, _space_of_interaction(body), channel, thread)
            user = str((body.get("user") or {}).get("id") or "") or None
            self.service.stop(key, requested_by=user)

    # -- answering ---------------------------------------------------------------------------

    async def _answer(self, api: SlackApi, message: SlackMessage, accepted: Accepted) -> None:
        target = SlackTarget(
            space=message.space,
            team_id=message.user_team,
            channel=message.channel,
            thread_ts=message.thread,
            user=message.user,
            is_dm=message.is_dm,
        )

        async def prepare(routed: Routed) -> Prepared:
            name = message.user
            if not message.is_dm:
                name = await self._names.name(api, message.space, message.user)
            sink = SlackSink(
                api,
                target,
                native=self.admission.admit(message.space),
                admission=self.admission,
                status_off=self.status_off,
            )
            self.sessions.want(api, target, PROCESSING)
            return Prepared(sink, author_name=name)

        try:
            outcome = await self.service.answer(accepted, prepare)
        finally:
            self.sessions.want(api, target, ACTIVE)
        if outcome.skipped:
            log.debug("slack message %s skipped: %s", message.event_id, outcome.skipped)

    async def _remember_context(
        self, space: str, channel: str, thread_ts: str, viewed: str | None
    ) -> None:
        key = ConversationKey(PLATFORM, space, channel, thread_ts)
        try:
            await self.service.set_context(key, context_note(viewed))
        except Exception:
            log.exception("could not store the assistant thread context of %s", key)

    # -- clients and identity ----------------------------------------------------------------

    def _client(self, token: str | None) -> AsyncWebClient:
        """A Web API client for `token` (None: app-level calls such as apps.connections.open)."""
        return AsyncWebClient(
            token=token,
            base_url=self.config.api_url,
            session=self._session,
            retry_handlers=[],  # the pacer handles rate limits; a retried write could post twice
            timeout=30,
            logger=_quiet("slack_sdk.web"),
        )

    def _api_for_space(self, space: str) -> SlackApi:
        """The paced API client of a workspace ("" or any: the one configured bot token)."""
        key = space if self.config.bot_token is None else ""
        api = self._apis.get(key)
        if api is None:
            if self.config.bot_token is not None:
                api = SlackApi(self._client(self.config.bot_token), self.pacer)
                api.bot_id = self.bot_id
            else:

                async def token() -> str:
                    return await self._token_for(space)

                api = SlackApi(self._client(None), self.pacer, token=token)
            self._apis[key] = api
        return api

    def _api_for(self, context: AsyncBoltContext) -> SlackApi:
        """The paced API client of the workspace Bolt authorized this request for."""
        team = context.team_id or ""
        space = f"{context.enterprise_id}:{team}" if context.enterprise_id else team
        if context.bot_token:
            self._tokens[space] = context.bot_token
        api = self._api_for_space(space)
        if context.bot_id:
            api.bot_id = context.bot_id
        return api

    async def _token_for(self, space: str) -> str:
        """An installed workspace's bot token: as Bolt last authorized it, else as stored."""
        token = self._tokens.get(space)
        if token is not None:
            return token
        enterprise, _, team = space.rpartition(":")
        bot = None
        if self.installs is not None:
            bot = await self.installs.installation_store.async_find_bot(
                enterprise_id=enterprise or None, team_id=team or None
            )
        if bot is None or not bot.bot_token:
            raise SlackGone("auth", "not_installed")
        self._tokens[space] = str(bot.bot_token)
        return str(bot.bot_token)

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

    def _authorizer(self) -> Callable[..., Awaitable[AuthorizeResult]] | AsyncAuthorize:
        """Bolt's authorize step: the installed workspace's bot (rotated tokens refreshed
        through SLACK_API_URL), or the one configured bot, identified once at start."""
        if self.installs is not None:
            return AsyncInstallationStoreAuthorize(
                logger=bolt_logger(),
                installation_store=self.installs.installation_store,
                client_id=self.installs.client_id,
                client_secret=self.installs.client_secret,
                token_rotation_expiration_minutes=self.installs.token_rotation_expiration_minutes,
                bot_only=True,
                client=self._client(None),
            )

        async def authorize(enterprise_id: str | None, team_id: str | None) -> AuthorizeResult:
            return AuthorizeResult(
                enterprise_id=enterprise_id,
                team_id=team_id,
                bot_user_id=self.bot_user_id,
                bot_id=self.bot_id,
                bot_token=token,
            )

        token = self.config.bot_token
        return authorize

    def _listening(self, port: int) -> None:
        self.http_port = port
        log.info(
            "slack HTTP events listening on %s:%s%s",
            self.config.http_host,
            port,
            self.config.http_path,
        )
        self.ready.set()

    def _revive(self, described: dict[str, Any]) -> SlackSink | None:
        api = self._api_for_space(str(described.get("space") or ""))
        return revive(api, described, admission=self.admission, status_off=self.status_off)


def _space_of_interaction(body: Mapping[str, Any]) -> str:
    """The workspace of a slash command or interaction payload (`enterprise:team` on Grid)."""
    team = body.get("team")
    team_id = str(body.get("team_id") or (team.get("id") if isinstance(team, Mapping) else ""))
    enterprise = body.get("enterprise_id") or (body.get("enterprise") or {}).get("id")
    if body.get("is_enterprise_install") and enterprise and not team_id:
        return str(enterprise)
    return f"{enterprise}:{team_id}" if enterprise else team_id


def _quiet(name: str) -> logging.Logger:
    """A logger for slack_sdk that never logs at DEBUG (its debug lines carry URLs and bodies)."""
    logger = logging.getLogger(name)
    logger.setLevel(max(logging.INFO, logging.getLogger().getEffectiveLevel()))
    return logger
