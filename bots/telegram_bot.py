"""The Telegram channel entry point: `run(runtime)` until cancelled."""

from __future__ import annotations

from adapters.telegram import TelegramChannel, WebhookConfig
from bots.wiring import Runtime
from core.channel import Channel


async def run(runtime: Runtime) -> None:
    """Run the Telegram bot configured in `runtime.settings` (long polling or webhook)."""
    settings = runtime.settings
    token = settings.telegram_bot_token
    assert token is not None, "the Telegram channel runs only when TELEGRAM_BOT_TOKEN is set"
    webhook = None
    if settings.telegram_webhook_url:
        secret = settings.telegram_webhook_secret
        assert secret is not None  # the settings refuse a webhook URL without a secret
        webhook = WebhookConfig(
            url=settings.telegram_webhook_url,
            secret=secret.get_secret_value(),
            host=settings.telegram_webhook_host,
            port=settings.telegram_webhook_port,
        )
    channel: Channel = TelegramChannel(
        runtime.service,
        token=token.get_secret_value(),
        api_url=settings.telegram_api_url,
        webhook=webhook,
    )
    runtime.ready["telegram"] = channel.ready
    await channel.run()
