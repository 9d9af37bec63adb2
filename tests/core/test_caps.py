"""Operator caps: /set cannot exceed them, and the refusal names the parameter and the range."""

from __future__ import annotations

from pathlib import Path

import pytest

from bots.config import load_settings
from bots.wiring import service_config
from core.caps import ParamCaps
from core.errors import ConfigError
from tests.core.test_service import make_rig
from tests.fakes.openai_server import FakeOpenAI

CAPS = ParamCaps(max_n=3, max_tokens=500, allowed_models=("fake-model", "small"), max_logit_bias=2)


@pytest.mark.parametrize(
    ("command", "reply"),
    [
        ("/set n 128", "Could not set n: n must be between 1 and 3 (a limit set by the operator)."),
        ("/set n 0", "Could not set n: n: must be between 1 and 128, got 0"),  # the API's range
        (
            "/set max_tokens 100000",
            "Could not set max_tokens: max_tokens must be at most 500 (a limit set by the "
            "operator).",
        ),
        (
            "/set model gpt-expensive",
            "Could not set model: model must be one of: fake-model, small (a limit set by the "
            "operator).",
        ),
        (
            '/set logit_bias {"1": 1, "2": 1, "3": 1}',
            "Could not set logit_bias: logit_bias may hold at most 2 tokens (a limit set by the "
            "operator).",
        ),
        ("/set n 2", "n set to 2 for this conversation."),
        ("/set model small", "model set to small for this conversation."),
    ],
)
async def test_set_respects_the_caps(
    tmp_path: Path, fake_llm: FakeOpenAI, command: str, reply: str
) -> None:
    async with make_rig(tmp_path, fake_llm, caps=CAPS) as rig:
        sink = rig.sink()
        outcome = await rig.service.handle(rig.inbound(command), sink)
        assert sink.texts() == [reply] and outcome.text == reply
        params = await rig.service.handle(rig.inbound("/params"), rig.sink())
        assert ("n: 128" not in params.text) and ("gpt-expensive" not in params.text)
    assert fake_llm.chat_requests == []


def test_a_default_over_a_cap_stops_start_up_naming_its_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("THREADLINE_USER_HASH_KEY", "k" * 16)
    monkeypatch.setenv("THREADLINE_N", "8")
    with pytest.raises(ConfigError) as caught:
        service_config(load_settings(None))
    assert caught.value.setting == "THREADLINE_N" and "between 1 and 4" in str(caught.value)
    monkeypatch.setenv("THREADLINE_N", "2")
    monkeypatch.setenv("THREADLINE_ALLOWED_MODELS", "a, b")
    monkeypatch.setenv("THREADLINE_MODEL", "c")
    with pytest.raises(ConfigError, match="THREADLINE_MODEL"):
        service_config(load_settings(None))
    monkeypatch.setenv("THREADLINE_MODEL", "b")
    assert service_config(load_settings(None)).caps.allowed_models == ("a", "b")
