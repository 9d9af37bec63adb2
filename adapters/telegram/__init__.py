"""Telegram channel: private chats, groups and forum topics over the Bot API."""

from adapters.telegram.format import MAX_MESSAGE_LENGTH, Rendered, render, rendered_length
from adapters.telegram.inbound import BotIdentity, addressed_to, to_inbound
from adapters.telegram.runner import TelegramChannel, WebhookConfig
from adapters.telegram.sink import DraftSupport, Target, TelegramSink, limits_for

__all__ = [
    "MAX_MESSAGE_LENGTH",
    "BotIdentity",
    "DraftSupport",
    "Rendered",
    "Target",
    "TelegramChannel",
    "TelegramSink",
    "WebhookConfig",
    "addressed_to",
    "limits_for",
    "render",
    "rendered_length",
    "to_inbound",
]
