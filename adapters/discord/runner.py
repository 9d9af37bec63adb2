"""The Discord channel: discord.py gateway client, message routing and slash commands."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import discord
from discord import app_commands

from adapters.discord.inbound import (
    ChannelKind,
    DiscordMessage,
    chain_key,
    dm_key,
    from_message,
    thread_key,
    to_inbound,
)
from adapters.discord.rest import DiscordRest
from adapters.discord.sink import ChannelSink, InteractionSink, channel_scopes, global_scope
from core.commands import COMMAND_HELP, SETTABLE_PARAMS
from core.conversation import Inbound
from core.errors import ConfigError, SinkError
from core.routing import Routed
from core.service import ChatService, Prepared
from core.streaming import Pacer, Priority
from core.tasks import TaskSet

log = logging.getLogger(__name__)

CHANNEL_COMMAND_HINT = (
    "In a channel every reply chain is its own conversation, so this command needs one: use it "
    "in a thread or a DM, or reply to one of my messages with a mention and the command, "
    "e.g. `@bot /set temperature 0.2`."
)
THREAD_NAME_LENGTH = 80
OPENED_THREADS_KEPT = 10_000  # threads the bot opened, until discord.py's cache knows them


@dataclass(frozen=True, slots=True)
class DiscordOptions:
    """Behaviour settings of the Discord channel."""

    require_mention: bool = False
    thread_per_conversation: bool = False
    shard_count: int | None = None
    shard_ids: tuple[int, ...] | None = None
    guild_ready_timeout: float = 2.0
    sync_commands: bool = True

    @property
    def budget_share(self) -> float:
        """This process's part of the bot-wide request budget: the part of the shards it runs."""
        if self.shard_count is None or not self.shard_ids:
            return 1.0
        return len(self.shard_ids) / self.shard_count


class DiscordChannel:
    """Runs one discord.py client until cancelled and answers through the ChatService.

    Gateway events are only read here; every answer runs in a task this channel tracks, and the
    writes go through `DiscordRest` and the shared `Pacer` (`ChannelSink`), never through
    discord.py's own retrying HTTP client. Slash commands answer as interaction follow-ups.
    """

    def __init__(
        self,
        *,
        service: ChatService,
        pacer: Pacer,
        rest: DiscordRest,
        token: str,
        options: DiscordOptions | None = None,
    ) -> None:
        self._service = service
        self._pacer = pacer
        self._rest = rest
        self._token = token
        self._options = options or DiscordOptions()
        self._bot_wide = global_scope(self._options.budget_share)
        self._tasks = TaskSet("discord")
        self.ready = asyncio.Event()
        self._opened_threads: dict[str, None] = {}  # insertion-ordered, capped
        self._bot_id: str | None = None
        self.client = self._make_client()
        self.tree = app_commands.CommandTree(self.client)
        self._add_commands(self.tree)

    # -- lifecycle ----------------------------------------------------------------------------

    def _make_client(self) -> discord.Client:
        # threadline never joins voice: skip discord.py's "PyNaCl/davey not installed" warnings
        discord.VoiceClient.warn_nacl = False
        discord.VoiceClient.warn_dave = False
        intents = discord.Intents.default()
        intents.message_content = True
        intents.members = False
        intents.presences = False
        kwargs: dict[str, Any] = {
            "intents": intents,
            "allowed_mentions": discord.AllowedMentions.none(),
            "chunk_guilds_at_startup": False,
            "guild_ready_timeout": self._options.guild_ready_timeout,
        }
        options = self._options
        if options.shard_count is not None:
            if options.shard_ids:
                kwargs["shard_ids"] = list(options.shard_ids)
            client: discord.Client = discord.AutoShardedClient(
                shard_count=options.shard_count, **kwargs
            )
        else:
            client = discord.Client(**kwargs)

        async def on_message(message: discord.Message) -> None:
            self._on_message(message)

        async def on_ready() -> None:
            log.info("discord: ready as %s in %d guild(s)", client.user, len(client.guilds))
            self.ready.set()

        client.event(on_message)
        client.event(on_ready)
        return client

    async def run(self) -> None:
        """Log in, register the slash commands, and read the gateway until cancelled."""
        client = self.client
        try:
            await client.login(self._token)
            assert client.user is not None
            self._bot_id = str(client.user.id)
            self._service.recovery.register("discord", self._revive)
            log.info("discord: logged in as %s (id %s)", client.user, self._bot_id)
            if self._options.sync_commands:
                await self._sync_commands()
            await client.connect(reconnect=True)
        except discord.LoginFailure:
            raise ConfigError("DISCORD_BOT_TOKEN", "Discord rejected the bot token") from None
        except discord.PrivilegedIntentsRequired:
            raise ConfigError(
                "DISCORD_BOT_TOKEN",
                "enable the Message Content intent for this bot in the developer portal",
            ) from None
        finally:
            await self._shutdown()

    async def _sync_commands(self) -> None:
        try:
            commands = await self.tree.sync()
            log.info("discord: registered %d slash commands", len(commands))
        except discord.HTTPException as exc:
            log.warning("discord: could not register slash commands: %s", exc.status)

    async def _shutdown(self) -> None:
        """Let answers finish within the grace (the gateway stays up for their interactions:
        Discord would not deliver a message again), stop the rest, then disconnect."""
        try:
            await self._tasks.finish(self._service.shutdown_grace)
        finally:
            await self.client.close()

    # -- messages -----------------------------------------------------------------------------

    def _on_message(self, message: discord.Message) -> None:
        """Hand a new message to the core at once (its place in order is fixed here)."""
        bot_id = self._bot_id
        if bot_id is None or message.author.bot or str(message.author.id) == bot_id:
            return
        facts = from_message(message)
        if facts.kind is ChannelKind.TEXT and facts.channel_id in self._opened_threads:
            facts = _as_thread(facts)
        inbound = to_inbound(facts, bot_id=bot_id, require_mention=self._options.require_mention)
        if inbound is None:
            return
        accepted = self._service.accept(inbound)
        if accepted is None:
            return
        self._tasks.spawn(
            self._service.answer(accepted, partial(self._prepare, facts)),
            name=f"discord:answer:{facts.message_id}",
        )

    def _revive(self, described: dict[str, Any]) -> ChannelSink | None:
        channel = described.get("channel")
        if not isinstance(channel, str):
            return None
        return ChannelSink(self._rest, self._pacer, channel, bot_wide=self._bot_wide)

    async def _prepare(self, facts: DiscordMessage, routed: Routed) -> Prepared:
        """The sink for a routed message; a new conversation may get a thread of its own."""
        if (
            self._options.thread_per_conversation
            and facts.kind is ChannelKind.TEXT
            and routed.key == chain_key(facts.space, facts.channel_id, facts.message_id)
        ):
            thread_id = await self._open_thread(facts, routed.inbound.text)
            if thread_id is not None:
                sink = ChannelSink(self._rest, self._pacer, thread_id, bot_wide=self._bot_wide)
                return Prepared(sink, key=thread_key(facts.space, thread_id))
        sink = ChannelSink(
            self._rest,
            self._pacer,
            facts.channel_id,
            reply_to=facts.message_id,
            bot_wide=self._bot_wide,
        )
        return Prepared(sink)

    async def _open_thread(self, facts: DiscordMessage, text: str) -> str | None:
        """Open a public thread on the message (paced); None when Discord refuses."""
        scopes = channel_scopes(facts.channel_id)
        await self._pacer.acquire((scopes.threads, self._bot_wide), Priority.FIRST)
        name = " ".join(text.split())[:THREAD_NAME_LENGTH] or "Conversation"
        try:
            result = await self._rest.request(
                "POST",
                f"/channels/{facts.channel_id}/messages/{facts.message_id}/threads",
                {"name": name, "auto_archive_duration": 1440},
            )
        except SinkError as exc:
            log.warning("discord: could not open a thread, answering in the channel: %s", exc)
            return None
        data = result.data
        if not isinstance(data, dict) or "id" not in data:
            return None
        thread_id = str(data["id"])
        self._opened_threads[thread_id] = None
        if len(self._opened_threads) > OPENED_THREADS_KEPT:
            del self._opened_threads[next(iter(self._opened_threads))]
        return thread_id

    # -- slash commands -----------------------------------------------------------------------

    def _add_commands(self, tree: app_commands.CommandTree[Any]) -> None:
        choices = [app_commands.Choice(name=name, value=name) for name in SETTABLE_PARAMS]

        async def new(interaction: discord.Interaction[Any]) -> None:
            await self._command(interaction, "/new")

        async def help_(interaction: discord.Interaction[Any]) -> None:
            await self._command(interaction, "/help")

        async def params(interaction: discord.Interaction[Any]) -> None:
            await self._command(interaction, "/params")

        @app_commands.describe(parameter="the parameter to set", value="its value")
        @app_commands.choices(parameter=choices)
        async def set_(interaction: discord.Interaction[Any], parameter: str, value: str) -> None:
            await self._command(interaction, f"/set {parameter} {value}")

        @app_commands.describe(parameter="the parameter to reset")
        @app_commands.choices(parameter=choices)
        async def unset(interaction: discord.Interaction[Any], parameter: str) -> None:
            await self._command(interaction, f"/unset {parameter}")

        async def stop(interaction: discord.Interaction[Any]) -> None:
            await self._command(interaction, "/stop")

        callbacks: dict[str, Any] = {
            "stop": stop,
            "new": new,
            "help": help_,
            "params": params,
            "set": set_,
            "unset": unset,
        }
        for name, callback in callbacks.items():
            description = COMMAND_HELP[name][:100]
            tree.add_command(
                app_commands.Command(name=name, description=description, callback=callback)
            )

    async def _command(self, interaction: discord.Interaction[Any], text: str) -> None:
        """Acknowledge at once, then run the command through the service in a tracked task."""
        channel_id = str(interaction.channel_id)
        guild_id = None if interaction.guild_id is None else str(interaction.guild_id)
        is_thread = isinstance(interaction.channel, discord.Thread) or (
            channel_id in self._opened_threads
        )
        try:
            if guild_id is not None and not is_thread and text not in ("/help", "/stop"):
                await interaction.response.send_message(
                    CHANNEL_COMMAND_HINT,
                    ephemeral=True,
                    allowed_mentions=discord.AllowedMentions.none(),
                )
                return
            await interaction.response.defer(thinking=True)
        except discord.HTTPException as exc:
            log.warning("discord: could not acknowledge a slash command: %s", exc.status)
            return
        if guild_id is None:
            key = dm_key(channel_id)
        elif is_thread:
            key = thread_key(guild_id, channel_id)
        else:
            key = chain_key(guild_id, channel_id, str(interaction.id))
        user = interaction.user
        inbound = Inbound(
            key=key,
            message_id=str(interaction.id),
            author_id=str(user.id),
            author_name=user.display_name,
            text=text,
            is_direct=guild_id is None,
            event_id=f"interaction:{interaction.id}",
        )
        self._tasks.spawn(
            self._service.handle(inbound, InteractionSink(interaction)),
            name=f"discord:command:{interaction.id}",
        )


def _as_thread(facts: DiscordMessage) -> DiscordMessage:
    """A message in a thread the bot opened, before discord.py's cache knew the thread."""
    return replace(facts, kind=ChannelKind.THREAD)
