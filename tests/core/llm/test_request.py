"""ChatRequest: the JSON body sent to /chat/completions."""

from __future__ import annotations

import pytest

from core.llm import ChatMessage, ChatParams, ChatRequest

MESSAGES = (
    ChatMessage("system", "You are terse."),
    ChatMessage("user", "Hi there", name="Zoë Smith"),
    ChatMessage("assistant", "Hello."),
    ChatMessage("user", "再见", name="李雷"),
)


def full_params() -> ChatParams:
    return ChatParams(
        model="gpt-4o-mini",
        temperature=0.2,
        top_p=0.5,
        n=1,
        stop="END",
        max_tokens=100,
        presence_penalty=0.1,
        frequency_penalty=-0.1,
        logit_bias={42: 10},
        user="u_1234",
        seed=9,
    )


def test_payload_holds_messages_every_parameter_and_stream_options() -> None:
    request = ChatRequest(messages=MESSAGES, params=full_params())

    payload = request.to_payload(include_usage=True, use_max_completion_tokens=False)

    assert payload == {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Hi there", "name": "Zoe_Smith"},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": "再见"},  # nothing usable left of the name
        ],
        "temperature": 0.2,
        "top_p": 0.5,
        "n": 1,
        "stop": ["END"],
        "max_tokens": 100,
        "presence_penalty": 0.1,
        "frequency_penalty": -0.1,
        "logit_bias": {"42": 10},
        "user": "u_1234",
        "seed": 9,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def test_no_stream_options_unless_asked() -> None:
    request = ChatRequest(messages=MESSAGES, params=ChatParams(model="m"))

    payload = request.to_payload(include_usage=False, use_max_completion_tokens=False)

    assert "stream_options" not in payload
    assert payload["stream"] is True


def test_non_streaming_request_never_sends_stream_options() -> None:
    request = ChatRequest(messages=MESSAGES, params=ChatParams(model="m"), stream=False)

    payload = request.to_payload(include_usage=True, use_max_completion_tokens=False)

    assert payload["stream"] is False
    assert "stream_options" not in payload


def test_max_tokens_can_be_sent_as_max_completion_tokens() -> None:
    request = ChatRequest(messages=MESSAGES, params=ChatParams(model="m", max_tokens=77))

    payload = request.to_payload(include_usage=False, use_max_completion_tokens=True)

    assert payload["max_completion_tokens"] == 77
    assert "max_tokens" not in payload


def test_explicit_max_completion_tokens_wins_over_a_translated_max_tokens() -> None:
    params = ChatParams(model="m", max_tokens=10, max_completion_tokens=500)
    request = ChatRequest(messages=MESSAGES, params=params)

    as_is = request.to_payload(include_usage=False, use_max_completion_tokens=False)
    translated = request.to_payload(include_usage=False, use_max_completion_tokens=True)

    assert (as_is["max_tokens"], as_is["max_completion_tokens"]) == (10, 500)
    assert translated["max_completion_tokens"] == 500
    assert "max_tokens" not in translated


def test_messages_are_stored_as_a_tuple() -> None:
    request = ChatRequest(messages=list(MESSAGES), params=ChatParams(model="m"))  # type: ignore[arg-type]

    assert request.messages == MESSAGES
    assert request.choice_count == 1
    assert ChatRequest(MESSAGES, ChatParams(model="m", n=3)).choice_count == 3


def test_a_request_needs_messages_with_known_roles() -> None:
    with pytest.raises(ValueError, match="at least one message"):
        ChatRequest(messages=(), params=ChatParams(model="m"))
    with pytest.raises(ValueError, match="role"):
        ChatRequest(messages=(ChatMessage("tool", "x"),), params=ChatParams(model="m"))  # type: ignore[arg-type]
