"""The Discord channel of `threadline run`: points discord.py at DISCORD_API_URL and runs it."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import discord.gateway
import discord.http
import yarl

from adapters.discord import DiscordChannel, DiscordOptions, DiscordRest, DiscordUnauthorized
from bots.wiring import Runtime
from core.channel import Channel
from core.errors import ConfigError, SinkError

log = logging.getLogger(__name__)


@contextmanager
def discord_endpoints(api_url: str, gateway_url: str) -> Iterator[None]:
    """Point discord.py's REST routes at `api_url` and its gateway at `gateway_url`.

    discord.py reads both from class attributes (`Route.BASE`, read whenever a route is
    built, webhooks and interaction follow-ups included; `DiscordWebSocket.DEFAULT_GATEWAY`,
    used to connect and after an invalidated session), so they are set here for the life of
    the channel and restored afterwards. One process runs at most one Discord channel.
    """
    route, socket = discord.http.Route, discord.gateway.DiscordWebSocket
    saved = (route.BASE, socket.DEFAULT_GATEWAY)
    route.BASE = api_url
    socket.DEFAULT_GATEWAY = yarl.URL(gateway_url)
    try:
        yield
    finally:
        route.BASE, socket.DEFAULT_GATEWAY = saved


async def run(runtime: Runtime) -> None:
    """Run the Discord channel until cancelled."""
    settings = runtime.settings
    if settings.discord_bot_token is None:
        raise ConfigError("DISCORD_BOT_TOKEN", "is not set")
    token = settings.discord_bot_token.get_secret_value()
    api_url = settings.discord_api_url.rstrip("/")
    async with DiscordRest(api_url, token) as rest:
        try:
            gateway_url = await rest.gateway_url()
        except DiscordUnauthorized:
            raise ConfigError("DISCORD_BOT_TOKEN", "Discord rejected the bot token") from None
        except SinkError as exc:
            raise ConfigError("DISCORD_API_URL", f"GET /gateway/bot failed: {exc}") from None
        log.info("discord: REST at %s, gateway at %s", api_url, gateway_url)
        options = DiscordOptions(
            require_mention=settings.discord_require_mention,
            thread_per_conversation=settings.discord_thread_per_conversation,
            shard_count=settings.discord_shard_count,
            shard_ids=settings.discord_shard_ids,
        )
        with discord_endpoints(api_url, gateway_url):
            channel: Channel = DiscordChannel(
                service=runtime.service,
                pacer=runtime.pacer,
                rest=rest,
                token=token,
                options=options,
            )
            runtime.ready["discord"] = channel.ready
            await channel.run()
