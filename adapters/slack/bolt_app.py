"""The Bolt app: every Slack entry point (events, the slash command, shortcuts) as a listener."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from slack_bolt.app.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.authorization.async_authorize import AsyncAuthorize
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_sdk.web.async_client import AsyncWebClient

COMMAND = "/threadline"
ASK_SHORTCUT = "ask_threadline"  # message shortcut: "Ask threadline about this message"
STOP_ACTION = "threadline_stop"  # the Stop button of an answer (block action)

class QuietBoltLog(logging.Filter):
    """Bolt logs a refused request with its body (user text, the verification token): not ours.

    It also warns that SLACK_BOT_TOKEN, which it reads from the environment by itself, is not
    used next to our client: true and intended (threadline authorizes every request).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if str(record.msg).startswith("As you gave `client` as well"):
            return False
        if str(record.msg).startswith("Invalid request signature detected"):
            record.msg = "refused a slack request with a bad signature or timestamp"
            record.args = ()
        return True


def bolt_logger() -> logging.Logger:
    """The logger Bolt's app and middleware write to, with refused bodies kept out."""
    logger = logging.getLogger("slack_bolt")
    if not any(isinstance(f, QuietBoltLog) for f in logger.filters):
        logger.addFilter(QuietBoltLog())
    return logger


EventHandler = Callable[[Mapping[str, Any], AsyncBoltContext], Awaitable[None]]


class SlackEntryPoints(Protocol):
    """What the Slack channel does with each kind of request Bolt hands over."""

    async def on_message(self, body: Mapping[str, Any], context: AsyncBoltContext) -> None: ...

    async def on_thread_started(
        self, body: Mapping[str, Any], context: AsyncBoltContext
    ) -> None: ...

    async def on_context_changed(
        self, body: Mapping[str, Any], context: AsyncBoltContext
    ) -> None: ...

    async def on_session_stopped(
        self, body: Mapping[str, Any], context: AsyncBoltContext
    ) -> None: ...

    async def on_uninstalled(self, body: Mapping[str, Any], context: AsyncBoltContext) -> None: ...

    async def on_command(
        self, body: Mapping[str, Any], respond: AsyncRespond, context: AsyncBoltContext
    ) -> None: ...

    async def on_shortcut(
        self, body: Mapping[str, Any], respond: AsyncRespond, context: AsyncBoltContext
    ) -> None: ...

    async def on_stop_button(
        self, body: Mapping[str, Any], context: AsyncBoltContext
    ) -> None: ...


def build_app(
    entry: SlackEntryPoints,
    client: AsyncWebClient,
    *,
    signing_secret: str | None,
    authorize: Callable[..., Awaitable[AuthorizeResult]] | AsyncAuthorize | None = None,
    oauth_settings: AsyncOAuthSettings | None = None,
    logger: logging.Logger,
) -> AsyncApp:
    """An `AsyncApp` whose listeners run inline (`process_before_response`) and only hand over.

    Listeners do the synchronous accept step and start tracked tasks of their own, so nothing
    Bolt starts outlives the request, and Slack gets its ack once the message is accepted.
    Answer writes never go through Bolt's `say`/`client`: they take threadline's paced path.
    """
    app = AsyncApp(
        client=client,
        signing_secret=signing_secret or "",
        request_verification_enabled=signing_secret is not None,
        authorize=authorize,  # type: ignore[arg-type]  # Bolt takes an AsyncAuthorize too
        oauth_settings=oauth_settings,
        process_before_response=True,
        logger=logger,
    )

    def on_event(name: str, handler: EventHandler) -> None:
        async def listener(body: dict[str, Any], context: AsyncBoltContext) -> None:
            await handler(body, context)

        app.event(name)(listener)

    on_event("message", entry.on_message)
    on_event("app_mention", entry.on_message)
    on_event("assistant_thread_started", entry.on_thread_started)
    on_event("assistant_thread_context_changed", entry.on_context_changed)
    on_event("agent_session_stopped", entry.on_session_stopped)
    on_event("app_uninstalled", entry.on_uninstalled)
    on_event("tokens_revoked", entry.on_uninstalled)

    @app.command(COMMAND)
    async def command(
        ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond, context: AsyncBoltContext
    ) -> None:
        await ack()
        await entry.on_command(body, respond, context)

    @app.shortcut(ASK_SHORTCUT)
    async def shortcut(
        ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond, context: AsyncBoltContext
    ) -> None:
        await ack()
        await entry.on_shortcut(body, respond, context)

    @app.action(STOP_ACTION)
    async def stop_button(ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext) -> None:
        await ack()
        await entry.on_stop_button(body, context)

    return app
