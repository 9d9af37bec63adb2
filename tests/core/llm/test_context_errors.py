"""Length rejections in each server's wording become LLMContextTooLong with what they say."""

from __future__ import annotations

import json

import pytest

from core.errors import LLMContextTooLong
from core.llm.context_errors import context_error
from core.llm.failures import message_from_body

OPENAI = {
    "error": {
        "message": "This model's maximum context length is 128000 tokens. However, your messages "
        "resulted in 204308 tokens. Please reduce the length of the messages.",
        "type": "invalid_request_error",
        "param": "messages",
        "code": "context_length_exceeded",
    }
}
VLLM = {
    "object": "error",
    "message": "This model's maximum context length is 2048 tokens. However, you requested 3100 "
    "tokens (2900 in the messages, 200 in the completion). Please reduce the length of the "
    "messages or completion.",
    "type": "BadRequestError",
    "param": None,
    "code": 400,
}
VLLM_NEW = {
    "object": "error",
    "message": "This model's maximum context length is 4096 tokens. However, your request has "
    "5000 input tokens. Please reduce the length of the input messages.",
    "type": "BadRequestError",
    "param": None,
    "code": 400,
}
LLAMA_CPP = {
    "error": {
        "code": 400,
        "message": "request (4476 tokens) exceeds the available context size (4096 tokens)",
        "type": "exceed_context_size_error",
        "n_prompt_tokens": 4476,
        "n_ctx": 4096,
    }
}
OPENROUTER = {
    "error": {
        "message": "This endpoint's maximum context length is 65536 tokens. However, you "
        "requested about 92208 tokens (60833 of text input, 10042 of tool input, 21333 in the "
        'output). Please reduce the length of either one, or use the "middle-out" transform.',
        "code": 400,
        "metadata": {"provider_name": None},
    }
}
GROQ = {
    "error": {
        "message": "Please reduce the length of the messages or completion.",
        "type": "invalid_request_error",
        "param": "messages",
        "code": "context_length_exceeded",
    }
}
LM_STUDIO = {
    "error": "The number of tokens to keep from the initial prompt is greater than the context "
    "length (n_keep: 13055>= n_ctx: 4096). Try to load the model with a larger context length, "
    "or provide a shorter input."
}
OLLAMA = {
    "error": {
        "message": "the input length exceeds the context length",
        "type": "api_error",
        "param": None,
        "code": None,
    }
}


@pytest.mark.parametrize(
    ("body", "limit", "prompt"),
    [
        (OPENAI, 128000, 204308),
        (VLLM, 2048, 2900),
        (VLLM_NEW, 4096, 5000),
        (LLAMA_CPP, 4096, 4476),
        (OPENROUTER, 65536, 60833),
        (GROQ, None, None),
        (LM_STUDIO, 4096, 13055),
        (OLLAMA, None, None),
    ],
    ids=["openai", "vllm", "vllm-new", "llama.cpp", "openrouter", "groq", "lm-studio", "ollama"],
)
def test_each_wording_is_recognised_with_its_numbers(
    body: dict[str, object], limit: int | None, prompt: int | None
) -> None:
    raw = json.dumps(body).encode()
    error = context_error(400, raw, message_from_body(raw, "Bad Request"))
    assert isinstance(error, LLMContextTooLong)
    assert (error.limit, error.prompt_tokens) == (limit, prompt)
    assert error.status == 400 and not error.retryable


@pytest.mark.parametrize(
    "body",
    [
        {"error": {"message": "Invalid value for 'temperature'", "code": "invalid_value"}},
        {"error": {"message": "Unsupported parameter: 'max_tokens'", "code": None}},
        {"object": "error", "message": "The model `x` does not exist.", "code": 404},
    ],
)
def test_other_rejections_are_not_length_errors(body: dict[str, object]) -> None:
    raw = json.dumps(body).encode()
    assert context_error(400, raw, "whatever") is None


def test_a_server_error_is_never_a_length_error() -> None:
    raw = json.dumps(OPENAI).encode()
    assert context_error(500, raw, "x") is None
    assert context_error(429, raw, "x") is None
