"""Slack channel: threads as conversations, native streaming with a paced chat.update fallback."""

from adapters.slack.api import SlackApi, SlackGone, SlackRejected
from adapters.slack.format import escape, to_markdown_text, to_mrkdwn
from adapters.slack.inbound import (
    SlackMessage,
    clean_text,
    parse_message,
    to_inbound,
    workspace_of,
)
from adapters.slack.runner import SlackChannel, SlackConfig
from adapters.slack.sink import NativeAdmission, Scopes, SlackSink, SlackTarget

__all__ = [
    "NativeAdmission",
    "Scopes",
    "SlackApi",
    "SlackChannel",
    "SlackConfig",
    "SlackGone",
    "SlackMessage",
    "SlackRejected",
    "SlackSink",
    "SlackTarget",
    "clean_text",
    "escape",
    "parse_message",
    "to_inbound",
    "to_markdown_text",
    "to_mrkdwn",
    "workspace_of",
]
