"""Runs the Slack channel (Socket Mode or HTTP events) on the shared runtime."""

from __future__ import annotations

from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings

from adapters.slack import SlackChannel, SlackConfig
from adapters.slack.assistant import AssistantSettings
from adapters.slack.installations import oauth_settings
from bots.wiring import Runtime
from core.channel import Channel
from core.secret_box import SecretBox
from core.store.installations import InstallationRecords


def slack_config(runtime: Runtime) -> SlackConfig:
    """The Slack part of the settings."""
    settings = runtime.settings
    token = settings.slack_bot_token
    app_token = settings.slack_app_token
    secret = settings.slack_signing_secret
    return SlackConfig(
        bot_token=token.get_secret_value() if token else None,
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


def installs(runtime: Runtime) -> AsyncOAuthSettings | None:
    """Bolt's OAuth settings when the app is installed in many workspaces, else None."""
    settings = runtime.settings
    if not settings.slack_client_id or settings.slack_client_secret is None:
        return None
    assert settings.secret_key is not None, "checked with the settings"
    records = InstallationRecords(runtime.store, SecretBox(settings.secret_key.get_secret_value()))
    return oauth_settings(
        records,
        client_id=settings.slack_client_id,
        client_secret=settings.slack_client_secret.get_secret_value(),
        redirect_uri=settings.slack_redirect_uri,
    )


async def run(runtime: Runtime) -> None:
    """Serve Slack until cancelled."""
    channel: Channel = SlackChannel(
        slack_config(runtime), runtime.service, runtime.pacer, installs=installs(runtime)
    )
    runtime.ready["slack"] = channel.ready
    await channel.run()
