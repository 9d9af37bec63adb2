"""Translate HTTP failures of an OpenAI-compatible server into threadline's LLM errors."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

from core.errors import LLMError, LLMRateLimited, LLMRejected, LLMTimeout, LLMUnavailable

_MAX_MESSAGE_CHARS = 300


def error_for_status(status: int, message: str, retry_after: float | None = None) -> LLMError:
    """The error for a non-2xx answer: 429 rate limited, 408/504 timeout, 5xx unavailable."""
    if status == 429:
        return LLMRateLimited(f"HTTP 429: {message}", retry_after=retry_after)
    if status in (408, 504):
        return LLMTimeout(f"HTTP {status}: {message}")
    if status >= 500:
        return LLMUnavailable(f"HTTP {status}: {message}")
    return LLMRejected(status, message)


def error_for_transport(exc: httpx.HTTPError, url: str) -> LLMError:
    """The error for a request that failed below HTTP (connect, read, protocol)."""
    what = type(exc).__name__
    detail = str(exc) or what
    if isinstance(exc, httpx.TimeoutException):
        return LLMTimeout(f"{what} talking to {url}: {detail}")
    return LLMUnavailable(f"cannot reach {url}: {what}: {detail}")


def message_from_body(body: bytes, fallback: str) -> str:
    """The human part of an error body: `error.message`, vLLM's `message`, or the raw text."""
    text = body.decode("utf-8", errors="replace").strip()
    try:
        document = json.loads(text)
    except ValueError:
        document = None
    message: object = None
    if isinstance(document, dict):
        error = document.get("error")
        if isinstance(error, dict):
            message = error.get("message")
        elif isinstance(error, str):
            message = error
        message = message or document.get("message") or document.get("detail")
    if message is None or message == "":
        message = text or fallback
    if not isinstance(message, str):
        message = json.dumps(message)
    return message[:_MAX_MESSAGE_CHARS]


def retry_after_seconds(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms`, or `Retry-After` (seconds or an HTTP date)."""
    milliseconds = _non_negative(headers.get("retry-after-ms"))
    if milliseconds is not None:
        return milliseconds / 1000
    value = headers.get("retry-after")
    if value is None:
        return None
    seconds = _non_negative(value)
    if seconds is not None:
        return seconds
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _non_negative(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None
