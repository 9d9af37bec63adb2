"""Runs the Slack channel (Socket Mode or HTTP events) on the shared runtime."""

from __future__ import annotations

from adapters.slack import SlackChannel, SlackConfig
from adapters.slack.assistant import AssistantSettings
from bots.wiring import Runtime
from core.channel import Channel


def slack_config(runtime: Runtime) -> SlackConfig:
    """The Slack part of the settings."""
    settings = runtime.settings
    assert settings.slack_bot_token is not None, "the slack channel needs SLACK_BOT_TOKEN"
    app_token = settings.slack_app_token
    secret = settings.slack_signing_secret
    return SlackConfig(
        bot_token=settings.slack_bot_token.get_secret_value(),
        app_token=app_token.get_secret_value() if app_token else None,
        signing_secret=secret.get_secret_value() if secret else None,
        api_url=settings.slack_api_url,
        require_mention=settings.slack_require_mention,
        native_streaming=settings.slack_native_streaming,
        http_host=settings.slack_http_host,
        http_port=settings.slack_http_port,
        http_path=settings.slack_http_path,
        assistant=assistant_settings(runtime),
        agent_sessions=settings.slack_agent_sessions,
    )


def assistant_settings(runtime: Runtime) -> AssistantSettings:
    """The title and suggested prompts of a new assistant thread."""
    settings = runtime.settings
    defaults = AssistantSettings()
    prompts = settings.slack_suggested_prompts
    return AssistantSettings(
        title=settings.slack_assistant_title,
        prompts=defaults.prompts if prompts is None else [(p.title, p.message) for p in prompts],
    )


async def run(runtime: Runtime) -> None:
    """Serve Slack until cancelled."""
    channel: Channel = SlackChannel(slack_config(runtime), runtime.service, runtime.pacer)
    await channel.run()
