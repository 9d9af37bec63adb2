"""HTTP failure translation: status to error type, error body messages, Retry-After parsing."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from core.errors import LLMRateLimited, LLMRejected, LLMTimeout, LLMUnavailable
from core.llm.failures import (
    error_for_status,
    error_for_transport,
    message_from_body,
    retry_after_seconds,
)

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": " 2.5 "}, 2.5),
        ({"retry-after": "Fri, 02 Jan 2026 03:04:35 GMT"}, 30.0),
        ({"retry-after": "Fri, 02 Jan 2026 03:00:00 GMT"}, 0.0),  # in the past
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),
        ({"retry-after-ms": "junk", "retry-after": "9"}, 9.0),
        ({"retry-after": "-1"}, None),
        ({"retry-after": "soon"}, None),
        ({"retry-after": "inf"}, None),
        ({}, None),
    ],
)
def test_retry_after_seconds(headers: dict[str, str], expected: float | None) -> None:
    assert retry_after_seconds(httpx.Headers(headers), now=NOW) == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"error": {"message": "bad model", "type": "invalid_request_error"}}', "bad model"),
        (b'{"error": "plain"}', "plain"),
        (b'{"object": "error", "message": "vllm says no", "code": 400}', "vllm says no"),
        (b'{"detail": [{"loc": ["body"], "msg": "field required"}]}', '[{"loc": ["body"], "msg"'),
        (b"upstream connect error", "upstream connect error"),
        (b"", "Bad Gateway"),
        (b"x" * 1000, "x" * 300),
    ],
)
def test_message_from_body(body: bytes, expected: str) -> None:
    assert message_from_body(body, "Bad Gateway").startswith(expected)
    assert len(message_from_body(body, "Bad Gateway")) <= 300


def test_error_for_status() -> None:
    limited = error_for_status(429, "slow", retry_after=4)
    assert isinstance(limited, LLMRateLimited)
    assert limited.retry_after == 4
    assert isinstance(error_for_status(408, "x"), LLMTimeout)
    assert isinstance(error_for_status(504, "x"), LLMTimeout)
    assert isinstance(error_for_status(500, "x"), LLMUnavailable)
    assert isinstance(error_for_status(599, "x"), LLMUnavailable)
    rejected = error_for_status(413, "too big")
    assert isinstance(rejected, LLMRejected)
    assert (rejected.status, rejected.message, str(rejected)) == (
        413,
        "too big",
        "HTTP 413: too big",
    )


def test_error_for_transport() -> None:
    url = "http://127.0.0.1:9/v1/chat/completions"

    assert isinstance(error_for_transport(httpx.ConnectTimeout("slow"), url), LLMTimeout)
    refused = error_for_transport(httpx.ConnectError("refused"), url)
    assert isinstance(refused, LLMUnavailable)
    assert url in str(refused)
