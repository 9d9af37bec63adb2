"""Discord channel: gateway messages to Inbound, and Discord reply sinks."""

from adapters.discord.buckets import DiscordBuckets, RateHeaders
from adapters.discord.inbound import (
    ChannelKind,
    DiscordMessage,
    chain_key,
    dm_key,
    from_message,
    model_text,
    thread_key,
    to_inbound,
)
from adapters.discord.rest import (
    NO_MENTIONS,
    DiscordRateLimited,
    DiscordRest,
    DiscordUnauthorized,
)
from adapters.discord.runner import DiscordChannel, DiscordOptions
from adapters.discord.sink import ChannelSink, InteractionSink, channel_limits, channel_scopes

__all__ = [
    "NO_MENTIONS",
    "ChannelKind",
    "ChannelSink",
    "DiscordBuckets",
    "DiscordChannel",
    "DiscordMessage",
    "DiscordOptions",
    "DiscordRateLimited",
    "DiscordRest",
    "DiscordUnauthorized",
    "InteractionSink",
    "RateHeaders",
    "chain_key",
    "channel_limits",
    "channel_scopes",
    "dm_key",
    "from_message",
    "model_text",
    "thread_key",
    "to_inbound",
]
