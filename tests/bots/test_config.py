"""Settings: env names, defaults, .env.example, and errors that name the setting."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

from bots.config import load_settings
from bots.logging_setup import MaskingFormatter
from bots.wiring import chat_params, llm_endpoint
from core.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith(("THREADLINE_", "OPENAI_", "SLACK_", "TELEGRAM_", "DISCORD_")):
            monkeypatch.delenv(name)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)


def test_defaults() -> None:
    settings = load_settings(None)
    assert settings.openai_base_url == "https://api.openai.com/v1"
    assert settings.database_url.get_secret_value() == "sqlite+aiosqlite:///./data/threadline.db"
    assert settings.slack_api_url == "https://slack.com/api/"
    assert settings.telegram_api_url == "https://api.telegram.org/bot"
    assert settings.discord_api_url == "https://discord.com/api/v10"
    assert settings.enabled_platforms() == []


def test_env_example_loads_and_documents_every_setting() -> None:
    settings = load_settings(REPO / ".env.example")
    assert settings.temperature is None and settings.model == "gpt-4o-mini"
    text = (REPO / ".env.example").read_text()
    for field in type(settings).model_fields.values():
        alias = field.validation_alias
        assert isinstance(alias, str)
        assert f"\n{alias}=" in text, f"{alias} missing from .env.example"


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("THREADLINE_TEMPERATURE", "3.5", "between 0 and 2"),
        ("THREADLINE_TOP_P", "1.5", "between 0 and 1"),
        ("THREADLINE_N", "0", "between 1 and 128"),
        ("THREADLINE_PRESENCE_PENALTY", "-3", "between -2 and 2"),
        ("THREADLINE_FREQUENCY_PENALTY", "2.5", "between -2 and 2"),
        ("THREADLINE_STOP", '["a","b","c","d","e"]', "between 1 and 4"),
        ("THREADLINE_LOGIT_BIAS", '{"50256": -101}', "-100"),
        ("THREADLINE_MAX_TOKENS", "0", "at least 1"),
    ],
)
def test_bad_parameter_names_its_setting(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, fragment: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        chat_params(load_settings(None))
    assert caught.value.setting == name
    assert fragment in str(caught.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("THREADLINE_TEMPERATURE", "warm"),
        ("OPENAI_BASE_URL", "api.openai.com"),
        ("THREADLINE_LOGIT_BIAS", "[1, 2]"),
        ("THREADLINE_CONTEXT_WINDOW", "-5"),
        ("THREADLINE_LOG_LEVEL", "LOUD"),
    ],
)
def test_malformed_value_stops_start_up_naming_it(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings(None)
    assert caught.value.setting == name
    assert value not in caught.value.message


def test_stop_accepts_a_string_or_a_json_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THREADLINE_STOP", "END")
    assert load_settings(None).stop == ("END",)
    monkeypatch.setenv("THREADLINE_STOP", '["\\n\\nUser:", "END"]')
    assert load_settings(None).stop == ("\n\nUser:", "END")


def test_auth_style_follows_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    assert llm_endpoint(load_settings(None)).auth_style == "none"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-1234")
    assert llm_endpoint(load_settings(None)).auth_style == "bearer"
    monkeypatch.setenv("OPENAI_BASE_URL", "https://acme.openai.azure.com/openai/deployments/gpt4o")
    monkeypatch.setenv("THREADLINE_API_VERSION", "2024-10-21")
    endpoint = llm_endpoint(load_settings(None))
    assert endpoint.auth_style == "api-key" and endpoint.api_version == "2024-10-21"
    assert "sk-test-1234" not in repr(endpoint)


def test_slack_token_needs_a_connection_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-secret-value")
    with pytest.raises(ConfigError) as caught:
        load_settings(None)
    assert "SLACK_APP_TOKEN" in str(caught.value)
    assert "xoxb-secret-value" not in str(caught.value)
    monkeypatch.setenv("SLACK_APP_TOKEN", "xapp-1")
    assert load_settings(None).enabled_platforms() == ["slack"]


def test_slack_installs_need_http_mode_and_a_secret_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_CLIENT_ID", "1111.2222")
    with pytest.raises(ConfigError, match="SLACK_CLIENT_SECRET"):
        load_settings(None)
    monkeypatch.setenv("SLACK_CLIENT_SECRET", "client-secret-value")
    with pytest.raises(ConfigError, match="SLACK_SIGNING_SECRET") as caught:
        load_settings(None)
    assert "client-secret-value" not in str(caught.value)
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "signing")
    with pytest.raises(ConfigError, match="THREADLINE_SECRET_KEY"):
        load_settings(None)
    monkeypatch.setenv("THREADLINE_SECRET_KEY", "k" * 40)
    assert load_settings(None).enabled_platforms() == ["slack"]
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1")
    with pytest.raises(ConfigError, match="not both"):
        load_settings(None)


def test_suggested_prompts_are_checked_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_SUGGESTED_PROMPTS", '[{"title": "Hi", "message": "Say hi"}]')
    [prompt] = load_settings(None).slack_suggested_prompts or []
    assert (prompt.title, prompt.message) == ("Hi", "Say hi")
    monkeypatch.setenv("SLACK_SUGGESTED_PROMPTS", '[{"title": "no message"}]')
    with pytest.raises(ConfigError, match="SLACK_SUGGESTED_PROMPTS"):
        load_settings(None)


def test_secrets_are_masked_in_messages_and_tracebacks() -> None:
    formatter = MaskingFormatter("%(message)s", ["sk-live-abcdef", "p%40ss%2Fword"])
    logger = logging.getLogger("threadline.test.mask")
    try:
        raise RuntimeError("call to https://api/bot sk-live-abcdef failed; dsn p@ss/word")
    except RuntimeError:
        record = logger.makeRecord(
            logger.name, logging.ERROR, __file__, 1, "key %s", ("sk-live-abcdef",), sys.exc_info()
        )
    text = formatter.format(record)
    assert "sk-live-abcdef" not in text and "p@ss/word" not in text
    assert text.startswith("key ***") and "RuntimeError" in text


def test_reply_budget_must_leave_room_for_history(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THREADLINE_CONTEXT_WINDOW", "4096")
    with pytest.raises(ConfigError) as caught:
        load_settings(None)
    assert caught.value.setting == "THREADLINE_REPLY_TOKENS"
    assert "THREADLINE_CONTEXT_WINDOW" in caught.value.message
    monkeypatch.setenv("THREADLINE_REPLY_TOKENS", "1024")
    assert load_settings(None).context_window == 4096


def test_azure_hosts_get_a_default_api_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "https://acme.openai.azure.com/openai/deployments/d")
    assert llm_endpoint(load_settings(None)).api_version == "2024-10-21"
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:11434/v1")
    assert llm_endpoint(load_settings(None)).api_version is None


def test_platform_behaviour_settings_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCORD_SHARD_COUNT", "4")
    monkeypatch.setenv("DISCORD_SHARD_IDS", "1, 3")
    monkeypatch.setenv("SLACK_REQUIRE_MENTION", "true")
    monkeypatch.setenv("TELEGRAM_WEBHOOK_URL", "https://bot.example.com/telegram")
    monkeypatch.setenv("TELEGRAM_WEBHOOK_SECRET", "s3cret_token-1")
    settings = load_settings(None)
    assert settings.discord_shard_ids == (1, 3) and settings.discord_shard_count == 4
    assert settings.slack_require_mention and settings.slack_native_streaming
    assert settings.telegram_webhook_url == "https://bot.example.com/telegram"


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"DISCORD_SHARD_IDS": "0"}, "DISCORD_SHARD_COUNT is not"),
        ({"DISCORD_SHARD_COUNT": "2", "DISCORD_SHARD_IDS": "0,2"}, "from 0 to 1"),
        ({"DISCORD_SHARD_COUNT": "2", "DISCORD_SHARD_IDS": "a"}, "separated by commas"),
        ({"TELEGRAM_WEBHOOK_URL": "https://x.example/hook"}, "TELEGRAM_WEBHOOK_SECRET"),
        (
            {"TELEGRAM_WEBHOOK_URL": "https://x.example/h", "TELEGRAM_WEBHOOK_SECRET": "a b"},
            "A-Z",
        ),
        ({"TELEGRAM_WEBHOOK_URL": "ftp://x"}, "http"),
        ({"SLACK_HTTP_PATH": "events"}, "start with /"),
    ],
)
def test_bad_platform_settings_name_the_setting(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], fragment: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings(None)
    assert fragment in str(caught.value)
    assert any(name in str(caught.value) for name in env) or caught.value.setting in env
