"""The Telegram channel: bot lifecycle, long polling or webhook, concurrent update dispatch."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import warnings
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from telegram import Bot, BotCommand, Update
from telegram.error import BadRequest, InvalidToken, TelegramError
from telegram.ext import Updater
from telegram.request import HTTPXRequest
from telegram.warnings import PTBDeprecationWarning

from adapters.telegram.inbound import BotIdentity, to_inbound, topic_of
from adapters.telegram.resend import ResendGuard
from adapters.telegram.sink import DraftSupport, Target, TelegramSink, revive
from core.commands import COMMAND_HELP
from core.errors import ConfigError
from core.routing import Accepted, Routed
from core.service import ChatService, Prepared
from core.tasks import TaskSet

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
ALLOWED_UPDATES = ("message",)
POLL_TIMEOUT = 10
STARTUP_RETRY = (1.0, 30.0)  # first and longest pause between start-up attempts


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """Webhook mode: the public URL Telegram posts to, its secret, and where we listen."""

    url: str
    secret: str
    host: str = "0.0.0.0"
    port: int = 8443

    @property
    def path(self) -> str:
        """The path part of `url`, which the local listener serves."""
        return urlsplit(self.url).path or "/"


class TelegramChannel:
    """Runs one Telegram bot until cancelled: receive updates, answer each chat concurrently.

    Every new message is handed to the core's accept step as it is taken from the update
    queue, before anything is awaited; the core keeps each chat's and conversation's order.
    """

    def __init__(
        self,
        service: ChatService,
        *,
        token: str,
        api_url: str = "https://api.telegram.org/bot",
        webhook: WebhookConfig | None = None,
    ) -> None:
        self._service = service
        self._token = token
        self._api_url = api_url
        self._webhook = webhook
        self._bot = Bot(
            token,
            base_url=api_url,
            request=HTTPXRequest(
                connection_pool_size=256,
                read_timeout=20.0,
                write_timeout=20.0,
                connect_timeout=10.0,
                pool_timeout=30.0,
            ),
            get_updates_request=HTTPXRequest(
                connection_pool_size=2,
                read_timeout=POLL_TIMEOUT + 10.0,
                connect_timeout=10.0,
                pool_timeout=30.0,
            ),
        )
        self._identity: BotIdentity | None = None
        self._drafts = DraftSupport()
        self._resends = ResendGuard()
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._tasks = TaskSet("telegram")
        self._site_port: int | None = None
        self.ready = asyncio.Event()

    @property
    def identity(self) -> BotIdentity | None:
        """The bot's id and username once started."""
        return self._identity

    @property
    def webhook_port(self) -> int | None:
        """The port the webhook listener is bound to (webhook mode, once started)."""
        return self._site_port

    async def run(self) -> None:
        """Start, receive and answer until cancelled; then stop cleanly."""
        # PTB 22 warns on every RetryAfter that its retry_after becomes a timedelta; the sink
        # reads both forms.
        warnings.filterwarnings("ignore", message=".*retry_after.*", category=PTBDeprecationWarning)
        updater: Updater | None = None
        runner: web.AppRunner | None = None
        try:
            await self._start_bot()
            if self._webhook is None:
                updater = Updater(self._bot, self._queue)
                await updater.initialize()
                await updater.start_polling(
                    timeout=POLL_TIMEOUT,
                    allowed_updates=list(ALLOWED_UPDATES),
                    drop_pending_updates=False,
                    bootstrap_retries=-1,  # deleteWebhook, retried until Telegram answers
                )
                log.info("Telegram bot @%s is polling for updates", self._username)
            else:
                runner = await self._start_webhook(self._webhook)
            self.ready.set()
            await self._consume()
        finally:
            await self._shutdown(updater, runner)

    # -- start-up ------------------------------------------------------------------------

    @property
    def _username(self) -> str:
        return self._identity.username if self._identity else "?"

    async def _start_bot(self) -> None:
        """getMe (retried while Telegram cannot be reached), then register the commands."""
        pause = STARTUP_RETRY[0]
        while True:
            try:
                await self._bot.initialize()
                break
            except InvalidToken:
                raise ConfigError(
                    "TELEGRAM_BOT_TOKEN", "Telegram refused the bot token (getMe: Unauthorized)"
                ) from None
            except TelegramError as exc:
                log.warning("cannot reach the Telegram Bot API (%s); retrying in %.0fs", exc, pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, STARTUP_RETRY[1])
        me = self._bot.bot
        self._identity = BotIdentity(id=me.id, username=me.username or "")
        self._service.recovery.register("telegram", self._revive)
        commands = [BotCommand(name, text[:256]) for name, text in COMMAND_HELP.items()]
        try:
            await self._bot.set_my_commands(commands)
        except TelegramError as exc:
            log.warning("could not register the bot commands: %s", exc)

    async def _start_webhook(self, config: WebhookConfig) -> web.AppRunner:
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_post(config.path, self._on_webhook)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, config.host, config.port)
        try:
            await site.start()
            addresses = runner.addresses
            self._site_port = int(addresses[0][1]) if addresses else config.port
            await self._set_webhook(config)
        except BaseException:
            await runner.cleanup()
            raise
        log.info(
            "Telegram bot @%s receives updates by webhook on %s:%s%s",
            self._username,
            config.host,
            self._site_port,
            config.path,
        )
        return runner

    async def _set_webhook(self, config: WebhookConfig) -> None:
        """setWebhook, retried while Telegram cannot be reached; a refused URL stops here."""
        pause = STARTUP_RETRY[0]
        while True:
            try:
                await self._bot.set_webhook(
                    url=config.url,
                    secret_token=config.secret,
                    allowed_updates=list(ALLOWED_UPDATES),
                )
                return
            except BadRequest as exc:
                raise ConfigError(
                    "TELEGRAM_WEBHOOK_URL", f"Telegram refused the webhook: {exc.message}"
                ) from None
            except TelegramError as exc:
                log.warning("setWebhook failed (%s); retrying in %.0fs", exc, pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, STARTUP_RETRY[1])

    async def _on_webhook(self, request: web.Request) -> web.Response:
        """One update from Telegram: refused (401) unless it carries the secret token."""
        assert self._webhook is not None
        given = request.headers.get(SECRET_HEADER, "")
        if not hmac.compare_digest(given.encode(), self._webhook.secret.encode()):
            log.warning("refused a webhook request without the right secret token")
            return web.Response(status=401, text="Unauthorized")
        try:
            data = await request.json()
            update = Update.de_json(data, self._bot)
        except Exception:
            log.warning("refused a webhook request that is not an update")
            return web.Response(status=400, text="Bad Request")
        await self._queue.put(update)
        return web.Response(status=200)

    # -- updates -------------------------------------------------------------------------

    async def _consume(self) -> None:
        while True:
            update = await self._queue.get()
            if isinstance(update, Update):
                self._dispatch(update)

    def _revive(self, described: dict[str, Any]) -> TelegramSink | None:
        identity = self._identity
        if identity is None:
            return None
        return revive(self._bot, described, identity.id, self._drafts, self._resends)

    def _dispatch(self, update: Update) -> None:
        """Hand a new message to the core at once (its place in order is fixed here)."""
        message = update.message
        identity = self._identity
        if message is None or identity is None:
            return  # edits and other updates are ignored
        inbound = to_inbound(message, identity)
        if inbound is None:
            return
        accepted = self._service.accept(inbound)
        if accepted is None:
            return
        target = Target(
            chat_id=message.chat.id,
            private=inbound.is_direct,
            thread_id=topic_of(message),
            reply_to=None if inbound.is_direct else message.message_id,
        )
        sink = TelegramSink(self._bot, target, identity.id, self._drafts, self._resends)
        self._tasks.spawn(self._answer(accepted, sink), name=f"telegram:{message.message_id}")

    async def _answer(self, accepted: Accepted, sink: TelegramSink) -> None:
        async def prepare(routed: Routed) -> Prepared:
            return Prepared(sink)

        outcome = await self._service.answer(accepted, prepare)
        for result in outcome.results:
            if result.error is not None:
                log.info("answer in chat %s ended early: %s", sink.target.chat_id, result.error)

    # -- shutdown ------------------------------------------------------------------------

    async def _shutdown(self, updater: Updater | None, runner: web.AppRunner | None) -> None:
        """Stop receiving, let answers finish within the grace, stop the rest (the service keeps
        their partial text), close the bot."""
        if runner is not None:
            with contextlib.suppress(Exception):
                await runner.cleanup()
        if updater is not None and updater.running:
            with contextlib.suppress(Exception):
                await updater.stop()  # no more polling; the bot still writes
        await self._tasks.finish(self._service.shutdown_grace)  # answers finish, then stop
        if updater is not None:
            with contextlib.suppress(Exception):
                await updater.shutdown()  # closes the bot's connections too
        with contextlib.suppress(Exception):
            await self._bot.shutdown()
