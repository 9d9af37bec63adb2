"""Settings types: every environment variable threadline reads, validated once at start-up."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AliasChoices,
    BaseModel,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_SYSTEM_PROMPT = (
    "You are threadline, a helpful assistant in a team chat. Answer clearly and concisely. "
    "Use Markdown for code and lists."
)

DEFAULT_CONTEXT_WINDOW = 128_000
"""The context size when THREADLINE_CONTEXT_WINDOW is unset and the server publishes none."""

AZURE_HOSTS = (".openai.azure.com", ".cognitiveservices.azure.com")
AZURE_DEFAULT_API_VERSION = "2024-10-21"

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
AuthSetting = Literal["auto", "bearer", "api-key", "none"]


def _env(name: str) -> Any:
    return Field(validation_alias=AliasChoices(name))


class SuggestedPrompt(BaseModel):
    """One suggested prompt of a new Slack assistant thread."""

    title: str = Field(min_length=1, max_length=75)
    message: str = Field(min_length=1)


class Settings(BaseSettings):
    """All of threadline's settings; field aliases are the environment variable names."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=True,
        populate_by_name=False,
        frozen=True,
        env_ignore_empty=True,
    )

    # The LLM server.
    openai_api_key: SecretStr | None = Field(default=None, validation_alias="OPENAI_API_KEY")
    openai_base_url: str = Field(
        default="https://api.openai.com/v1", validation_alias="OPENAI_BASE_URL"
    )
    auth_style: AuthSetting = Field(default="auto", validation_alias="THREADLINE_AUTH_STYLE")
    api_version: str | None = Field(default=None, validation_alias="THREADLINE_API_VERSION")

    # Storage.
    database_url: SecretStr = Field(
        default=SecretStr("sqlite+aiosqlite:///./data/threadline.db"),
        validation_alias="DATABASE_URL",
    )
    redis_url: SecretStr | None = Field(default=None, validation_alias="REDIS_URL")
    db_pool_size: int = Field(default=5, ge=1, le=200, validation_alias="THREADLINE_DB_POOL_SIZE")
    db_max_overflow: int = Field(
        default=10, ge=0, le=500, validation_alias="THREADLINE_DB_MAX_OVERFLOW"
    )

    # Platforms.
    slack_bot_token: SecretStr | None = Field(default=None, validation_alias="SLACK_BOT_TOKEN")
    slack_app_token: SecretStr | None = Field(default=None, validation_alias="SLACK_APP_TOKEN")
    slack_signing_secret: SecretStr | None = Field(
        default=None, validation_alias="SLACK_SIGNING_SECRET"
    )
    slack_api_url: str = Field(default="https://slack.com/api/", validation_alias="SLACK_API_URL")
    slack_client_id: str | None = Field(default=None, validation_alias="SLACK_CLIENT_ID")
    slack_client_secret: SecretStr | None = Field(
        default=None, validation_alias="SLACK_CLIENT_SECRET"
    )
    slack_redirect_uri: str | None = Field(default=None, validation_alias="SLACK_REDIRECT_URI")
    secret_key: SecretStr | None = Field(default=None, validation_alias="THREADLINE_SECRET_KEY")
    telegram_bot_token: SecretStr | None = Field(
        default=None, validation_alias="TELEGRAM_BOT_TOKEN"
    )
    telegram_api_url: str = Field(
        default="https://api.telegram.org/bot", validation_alias="TELEGRAM_API_URL"
    )
    discord_bot_token: SecretStr | None = Field(default=None, validation_alias="DISCORD_BOT_TOKEN")
    discord_api_url: str = Field(
        default="https://discord.com/api/v10", validation_alias="DISCORD_API_URL"
    )

    # Slack behaviour and HTTP events mode.
    slack_require_mention: bool = Field(default=False, validation_alias="SLACK_REQUIRE_MENTION")
    slack_native_streaming: bool = Field(default=True, validation_alias="SLACK_NATIVE_STREAMING")
    slack_http_host: str = Field(default="0.0.0.0", validation_alias="SLACK_HTTP_HOST")
    slack_http_port: int = Field(default=3000, ge=0, le=65535, validation_alias="SLACK_HTTP_PORT")
    slack_http_path: str = Field(default="/slack/events", validation_alias="SLACK_HTTP_PATH")
    slack_assistant_title: str = Field(
        default="Chat with threadline", max_length=200, validation_alias="SLACK_ASSISTANT_TITLE"
    )
    slack_suggested_prompts: Annotated[list[SuggestedPrompt] | None, NoDecode] = Field(
        default=None, max_length=4, validation_alias="SLACK_SUGGESTED_PROMPTS"
    )
    slack_agent_sessions: bool = Field(default=True, validation_alias="SLACK_AGENT_SESSIONS")

    # Telegram webhook mode (long polling when TELEGRAM_WEBHOOK_URL is unset).
    telegram_webhook_url: str | None = Field(default=None, validation_alias="TELEGRAM_WEBHOOK_URL")
    telegram_webhook_secret: SecretStr | None = Field(
        default=None, validation_alias="TELEGRAM_WEBHOOK_SECRET"
    )
    telegram_webhook_host: str = Field(default="0.0.0.0", validation_alias="TELEGRAM_WEBHOOK_HOST")
    telegram_webhook_port: int = Field(
        default=8443, ge=0, le=65535, validation_alias="TELEGRAM_WEBHOOK_PORT"
    )

    # Discord behaviour and sharding.
    discord_require_mention: bool = Field(default=False, validation_alias="DISCORD_REQUIRE_MENTION")
    discord_thread_per_conversation: bool = Field(
        default=False, validation_alias="DISCORD_THREAD_PER_CONVERSATION"
    )
    discord_shard_count: int | None = Field(
        default=None, ge=1, validation_alias="DISCORD_SHARD_COUNT"
    )
    discord_shard_ids: Annotated[tuple[int, ...] | None, NoDecode] = Field(
        default=None, validation_alias="DISCORD_SHARD_IDS"
    )

    # The model and its defaults for every Chat Completions parameter.
    model: str = Field(default="gpt-4o-mini", min_length=1, validation_alias="THREADLINE_MODEL")
    system_prompt: str = Field(
        default=DEFAULT_SYSTEM_PROMPT, validation_alias="THREADLINE_SYSTEM_PROMPT"
    )
    context_window: int | None = Field(
        default=None, ge=256, validation_alias="THREADLINE_CONTEXT_WINDOW"
    )
    """None: what the server publishes for the model at start, else DEFAULT_CONTEXT_WINDOW."""
    reply_tokens: int = Field(default=4_096, ge=16, validation_alias="THREADLINE_REPLY_TOKENS")
    temperature: float | None = Field(default=None, validation_alias="THREADLINE_TEMPERATURE")
    top_p: float | None = Field(default=None, validation_alias="THREADLINE_TOP_P")
    n: int | None = Field(default=None, validation_alias="THREADLINE_N")
    stop: Annotated[tuple[str, ...] | None, NoDecode] = Field(
        default=None, validation_alias="THREADLINE_STOP"
    )
    max_tokens: int | None = Field(default=None, validation_alias="THREADLINE_MAX_TOKENS")
    max_completion_tokens: int | None = Field(
        default=None, validation_alias="THREADLINE_MAX_COMPLETION_TOKENS"
    )
    presence_penalty: float | None = Field(
        default=None, validation_alias="THREADLINE_PRESENCE_PENALTY"
    )
    frequency_penalty: float | None = Field(
        default=None, validation_alias="THREADLINE_FREQUENCY_PENALTY"
    )
    logit_bias: Annotated[dict[str, int] | None, NoDecode] = Field(
        default=None, validation_alias="THREADLINE_LOGIT_BIAS"
    )
    seed: int | None = Field(default=None, validation_alias="THREADLINE_SEED")
    send_user: bool = Field(default=True, validation_alias="THREADLINE_SEND_USER")
    user_hash_key: SecretStr | None = Field(
        default=None, validation_alias="THREADLINE_USER_HASH_KEY"
    )
    include_usage: bool = Field(default=True, validation_alias="THREADLINE_INCLUDE_USAGE")

    # Time limits for the LLM call.
    connect_timeout: float = Field(
        default=10.0, gt=0, validation_alias="THREADLINE_CONNECT_TIMEOUT"
    )
    first_token_timeout: float = Field(
        default=120.0, gt=0, validation_alias="THREADLINE_FIRST_TOKEN_TIMEOUT"
    )
    chunk_timeout: float = Field(default=60.0, gt=0, validation_alias="THREADLINE_CHUNK_TIMEOUT")
    total_timeout: float = Field(default=600.0, gt=0, validation_alias="THREADLINE_TOTAL_TIMEOUT")
    max_retries: int = Field(default=3, ge=0, le=10, validation_alias="THREADLINE_MAX_RETRIES")

    # Behaviour in chats.
    history_turns: int = Field(
        default=200, ge=1, le=5000, validation_alias="THREADLINE_HISTORY_TURNS"
    )
    save_interval: float = Field(
        default=2.0, gt=0, le=60, validation_alias="THREADLINE_SAVE_INTERVAL"
    )
    stale_after: float = Field(
        default=20.0, ge=1, le=3600, validation_alias="THREADLINE_STALE_AFTER"
    )
    user_rate: int = Field(default=20, ge=0, le=10_000, validation_alias="THREADLINE_USER_RATE")
    max_answers: int = Field(
        default=256, ge=1, le=10_000, validation_alias="THREADLINE_MAX_CONCURRENT_ANSWERS"
    )
    user_answers: int = Field(
        default=2, ge=1, le=1_000, validation_alias="THREADLINE_USER_CONCURRENT_ANSWERS"
    )
    user_queue: int = Field(default=10, ge=0, le=10_000, validation_alias="THREADLINE_USER_QUEUE")
    max_n: int = Field(default=4, ge=1, le=128, validation_alias="THREADLINE_MAX_N")
    max_tokens_cap: int | None = Field(
        default=None, ge=1, validation_alias="THREADLINE_MAX_TOKENS_CAP"
    )
    allowed_models: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), validation_alias="THREADLINE_ALLOWED_MODELS"
    )
    max_logit_bias: int = Field(
        default=300, ge=0, le=10_000, validation_alias="THREADLINE_MAX_LOGIT_BIAS"
    )
    log_level: LogLevel = Field(default="INFO", validation_alias="THREADLINE_LOG_LEVEL")
    log_format: Literal["text", "json"] = Field(
        default="text", validation_alias="THREADLINE_LOG_FORMAT"
    )
    http_host: str = Field(default="0.0.0.0", validation_alias="THREADLINE_HTTP_HOST")
    http_port: int | None = Field(
        default=8080, ge=0, le=65535, validation_alias="THREADLINE_HTTP_PORT"
    )
    shutdown_grace: float = Field(
        default=3.0, ge=0.0, le=600.0, validation_alias="THREADLINE_SHUTDOWN_GRACE"
    )

    @field_validator("stop", mode="before")
    @classmethod
    def _parse_stop(cls, value: Any) -> Any:
        return _parse_env_text(value, lambda text: json.loads(text) if text[0] == "[" else (value,))

    @field_validator("logit_bias", mode="before")
    @classmethod
    def _parse_logit_bias(cls, value: Any) -> Any:
        return _parse_env_text(value, _json_object)

    @field_validator("allowed_models", mode="before")
    @classmethod
    def _parse_models(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("max_tokens_cap", mode="before")
    @classmethod
    def _parse_cap(cls, value: Any) -> Any:
        return _parse_env_text(value, int)

    @field_validator("http_port", mode="before")
    @classmethod
    def _parse_http_port(cls, value: Any) -> Any:
        return _parse_env_text(value, int)

    @field_validator("slack_suggested_prompts", mode="before")
    @classmethod
    def _parse_prompts(cls, value: Any) -> Any:
        return _parse_env_text(value, json.loads)

    @field_validator("discord_shard_ids", mode="before")
    @classmethod
    def _parse_shard_ids(cls, value: Any) -> Any:
        return _parse_env_text(value, _shard_numbers)

    @field_validator("slack_http_path", mode="after")
    @classmethod
    def _check_path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with /")
        return value

    @field_validator(
        "openai_base_url",
        "slack_api_url",
        "slack_redirect_uri",
        "telegram_api_url",
        "discord_api_url",
        "telegram_webhook_url",
        mode="after",
    )
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http:// or https:// URL")
        return value

    @model_validator(mode="after")
    def _check_reply_budget(self) -> Settings:
        if self.context_window is None:
            return self  # checked against the discovered window at start (bots.wiring)
        for name, value in (
            ("THREADLINE_REPLY_TOKENS", self.reply_tokens),
            ("THREADLINE_MAX_TOKENS", self.max_tokens),
            ("THREADLINE_MAX_COMPLETION_TOKENS", self.max_completion_tokens),
        ):
            if value is not None and value >= self.context_window:
                raise ValueError(
                    f"{name} ({value}) must be smaller than THREADLINE_CONTEXT_WINDOW "
                    f"({self.context_window}), or no history fits"
                )
        return self

    @model_validator(mode="after")
    def _check_platform_pairs(self) -> Settings:
        if bool(self.slack_client_id) != bool(self.slack_client_secret):
            raise ValueError("SLACK_CLIENT_ID and SLACK_CLIENT_SECRET go together (app installs)")
        if self.slack_client_id:
            if self.slack_bot_token:
                raise ValueError(
                    "set SLACK_BOT_TOKEN for one workspace, or SLACK_CLIENT_ID and "
                    "SLACK_CLIENT_SECRET for installs in many, not both"
                )
            if self.slack_app_token or not self.slack_signing_secret:
                raise ValueError(
                    "SLACK_CLIENT_ID (installs in many workspaces) needs HTTP mode: set "
                    "SLACK_SIGNING_SECRET and leave SLACK_APP_TOKEN unset"
                )
            if self.secret_key is None:
                raise ValueError(
                    "SLACK_CLIENT_ID needs THREADLINE_SECRET_KEY, which encrypts the installed "
                    "workspaces' tokens in the database"
                )
        if self.slack_bot_token and not (self.slack_app_token or self.slack_signing_secret):
            raise ValueError(
                "SLACK_BOT_TOKEN is set but neither SLACK_APP_TOKEN (Socket Mode) nor "
                "SLACK_SIGNING_SECRET (HTTP events) is"
            )
        if self.telegram_webhook_url and not self.telegram_webhook_secret:
            raise ValueError(
                "TELEGRAM_WEBHOOK_URL is set but TELEGRAM_WEBHOOK_SECRET is not; webhook mode "
                "needs a secret token so that forged updates are refused"
            )
        if self.telegram_webhook_secret is not None:
            secret = self.telegram_webhook_secret.get_secret_value()
            if not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", secret):
                raise ValueError(
                    "TELEGRAM_WEBHOOK_SECRET must be 1-256 characters of A-Z, a-z, 0-9, _ and -"
                )
        if self.discord_shard_ids is not None:
            if self.discord_shard_count is None:
                raise ValueError("DISCORD_SHARD_IDS is set but DISCORD_SHARD_COUNT is not")
            bad = [i for i in self.discord_shard_ids if not 0 <= i < self.discord_shard_count]
            if bad or not self.discord_shard_ids:
                raise ValueError(
                    f"DISCORD_SHARD_IDS must be numbers from 0 to {self.discord_shard_count - 1}"
                )
        return self

    def effective_auth_style(self) -> Literal["bearer", "api-key", "none"]:
        """The auth header style: explicit, else api-key for Azure hosts, none without a key."""
        if self.auth_style != "auto":
            return self.auth_style
        if self.openai_api_key is None or not self.openai_api_key.get_secret_value():
            return "none"
        host = urlsplit(self.openai_base_url).hostname or ""
        if host.endswith(AZURE_HOSTS):
            return "api-key"
        return "bearer"

    def effective_api_version(self) -> str | None:
        """The api-version query parameter: the setting, else Azure's GA default on Azure hosts."""
        if self.api_version:
            return self.api_version
        host = urlsplit(self.openai_base_url).hostname or ""
        if host.endswith(AZURE_HOSTS):
            return AZURE_DEFAULT_API_VERSION
        return None

    def enabled_platforms(self) -> list[str]:
        """Platforms whose credentials are set."""
        enabled = []
        if self.slack_bot_token or self.slack_client_id:
            enabled.append("slack")
        if self.telegram_bot_token:
            enabled.append("telegram")
        if self.discord_bot_token:
            enabled.append("discord")
        return enabled


def _parse_env_text(value: Any, parse: Callable[[str], Any]) -> Any:
    """A setting given as text: blank is unset, anything else goes through `parse`."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    return parse(text) if text else None


def _json_object(text: str) -> dict[str, Any]:
    parsed = json.loads(text)
    if not isinstance(parsed, dict):
        raise ValueError('must be a JSON object such as {"50256": -100}')
    return parsed


def _shard_numbers(text: str) -> Any:
    if text.startswith("["):
        return json.loads(text)
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError("must be shard numbers separated by commas, e.g. 0,1") from None


PLATFORM_VARIABLES: dict[str, tuple[str, ...]] = {
    "slack": (
        "SLACK_BOT_TOKEN",
        "SLACK_APP_TOKEN or SLACK_SIGNING_SECRET",
        "(or, for installs in many workspaces, SLACK_CLIENT_ID, SLACK_CLIENT_SECRET, "
        "SLACK_SIGNING_SECRET and THREADLINE_SECRET_KEY)",
    ),
    "telegram": ("TELEGRAM_BOT_TOKEN",),
    "discord": ("DISCORD_BOT_TOKEN",),
}
