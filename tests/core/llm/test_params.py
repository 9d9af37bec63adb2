"""ChatParams: range checks for every parameter, normalisation, payload and overrides."""

from __future__ import annotations

import math
from typing import Any

import pytest

from core.errors import ConfigError
from core.llm import ChatParams

VALID: dict[str, Any] = {
    "temperature": 0.7,
    "top_p": 0.9,
    "n": 2,
    "stop": ["\n\n", "END"],
    "max_tokens": 256,
    "max_completion_tokens": 512,
    "presence_penalty": -0.5,
    "frequency_penalty": 1.5,
    "logit_bias": {50256: -100, "1234": 5},
    "user": "u_abc",
    "seed": 42,
}


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("temperature", 3.5, "temperature: must be between 0 and 2, got 3.5"),
        ("temperature", -0.1, "temperature: must be between 0 and 2, got -0.1"),
        ("temperature", math.nan, "temperature: must be between 0 and 2, got nan"),
        ("temperature", "hot", "temperature: must be a number between 0 and 2, got 'hot'"),
        ("temperature", True, "temperature: must be a number between 0 and 2, got True"),
        ("top_p", 1.01, "top_p: must be between 0 and 1, got 1.01"),
        ("top_p", -1, "top_p: must be between 0 and 1, got -1"),
        ("n", 0, "n: must be between 1 and 128, got 0"),
        ("n", 129, "n: must be between 1 and 128, got 129"),
        ("n", 2.0, "n: must be an integer between 1 and 128, got 2.0"),
        ("max_tokens", 0, "max_tokens: must be at least 1, got 0"),
        ("max_tokens", "10", "max_tokens: must be an integer at least 1, got '10'"),
        ("max_completion_tokens", -5, "max_completion_tokens: must be at least 1, got -5"),
        ("presence_penalty", 2.5, "presence_penalty: must be between -2 and 2, got 2.5"),
        ("presence_penalty", -2.01, "presence_penalty: must be between -2 and 2, got -2.01"),
        ("frequency_penalty", 3, "frequency_penalty: must be between -2 and 2, got 3"),
        ("frequency_penalty", -3, "frequency_penalty: must be between -2 and 2, got -3"),
        ("seed", 2**63, f"seed: must be between {-(2**63)} and {2**63 - 1}, got {2**63}"),
        ("seed", 1.5, "seed: must be an integer between"),
        ("user", "", "user: must be a non-empty string, got ''"),
        ("user", 7, "user: must be a non-empty string, got 7"),
        ("stop", [], "stop: must hold between 1 and 4 sequences, got 0"),
        ("stop", ["a", "b", "c", "d", "e"], "stop: must hold between 1 and 4 sequences, got 5"),
        ("stop", ["ok", ""], "stop: each stop sequence must be a non-empty string, got ''"),
        ("stop", ["ok", 3], "stop: each stop sequence must be a non-empty string, got 3"),
        ("stop", 5, "stop: must be a string or a list of 1 to 4 strings, got 5"),
        ("logit_bias", {1: 101}, "logit_bias: bias for token 1 must be an integer between -100"),
        ("logit_bias", {1: -101}, "logit_bias: bias for token 1 must be an integer between -100"),
        ("logit_bias", {1: 0.5}, "logit_bias: bias for token 1 must be an integer between -100"),
        ("logit_bias", {"abc": 1}, "logit_bias: keys must be token ids"),
        ("logit_bias", {-3: 1}, "logit_bias: token ids must not be negative"),
        ("logit_bias", [1, 2], "logit_bias: must be a mapping of token id to bias"),
    ],
)
def test_out_of_range_parameter_is_named_with_its_range(
    name: str, value: Any, expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        ChatParams(model="m", **{name: value})

    assert caught.value.setting == name
    assert str(caught.value).startswith(expected)


@pytest.mark.parametrize("model", ["", "   "])
def test_model_is_required(model: str) -> None:
    with pytest.raises(ConfigError) as caught:
        ChatParams(model=model)

    assert caught.value.setting == "model"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("temperature", 0),
        ("temperature", 2),
        ("top_p", 0),
        ("top_p", 1),
        ("n", 1),
        ("n", 128),
        ("presence_penalty", -2),
        ("frequency_penalty", 2),
        ("logit_bias", {0: -100, 1: 100}),
        ("stop", ["a", "b", "c", "d"]),
        ("seed", -(2**63)),
        ("max_tokens", 1),
    ],
)
def test_boundaries_are_accepted(name: str, value: Any) -> None:
    params = ChatParams(model="m", **{name: value})

    assert name in params.to_payload()


def test_payload_holds_every_set_parameter_in_wire_form() -> None:
    params = ChatParams(model="gpt-x", **VALID)

    assert params.to_payload() == {
        "model": "gpt-x",
        "temperature": 0.7,
        "top_p": 0.9,
        "n": 2,
        "stop": ["\n\n", "END"],
        "max_tokens": 256,
        "max_completion_tokens": 512,
        "presence_penalty": -0.5,
        "frequency_penalty": 1.5,
        "logit_bias": {"50256": -100, "1234": 5},
        "user": "u_abc",
        "seed": 42,
    }


def test_unset_parameters_are_not_sent() -> None:
    assert ChatParams(model="m").to_payload() == {"model": "m"}
    assert ChatParams(model="m", temperature=0.0).to_payload() == {"model": "m", "temperature": 0.0}


def test_stop_is_normalised_to_a_tuple() -> None:
    assert ChatParams(model="m", stop="END").stop == ("END",)
    assert ChatParams(model="m", stop=["a", "b"]).stop == ("a", "b")
    assert ChatParams(model="m", stop="END").to_payload()["stop"] == ["END"]
    assert ChatParams(model="m").stop_sequences == ()


def test_logit_bias_is_copied_and_read_only() -> None:
    source: dict[str, int] = {"7": 3}
    params = ChatParams(model="m", logit_bias=source)
    source["8"] = 4

    assert dict(params.logit_bias or {}) == {7: 3}
    with pytest.raises(TypeError):
        params.logit_bias[9] = 1  # type: ignore[index]


def test_with_overrides_validates_and_leaves_the_original_alone() -> None:
    params = ChatParams(model="m", temperature=0.5, max_tokens=100)

    changed = params.with_overrides(temperature=1.5, max_tokens=None, seed=3)

    assert changed == ChatParams(model="m", temperature=1.5, seed=3)
    assert params.temperature == 0.5
    with pytest.raises(ConfigError, match=r"^temperature: must be between 0 and 2, got 9"):
        params.with_overrides(temperature=9)


def test_with_overrides_rejects_unknown_parameters() -> None:
    with pytest.raises(ConfigError) as caught:
        ChatParams(model="m").with_overrides(temprature=1)

    assert caught.value.setting == "temprature"
    assert "temperature" in caught.value.message


def test_params_are_frozen() -> None:
    params = ChatParams(model="m")

    with pytest.raises(AttributeError):
        params.temperature = 1.0  # type: ignore[misc]
