"""Threadline's error tree; adapters and clients translate foreign errors into these.

ThreadlineError
├── ConfigError(setting, message)
├── LLMError
│   ├── LLMTimeout
│   ├── LLMUnavailable
│   ├── LLMRateLimited(retry_after)
│   ├── LLMRejected(status, message)
│   │   └── LLMContextTooLong(limit, prompt_tokens)   the request does not fit the context
│   └── LLMStreamError(message)          a stream that broke, errored or ended early
├── SinkError
│   ├── SinkRateLimited(retry_after)
│   ├── SinkGone                         message/chat deleted, bot blocked or removed
│   └── SinkRejected(message)            the platform refused the write (permissions, format)
└── StoreError
"""

from __future__ import annotations


class ThreadlineError(Exception):
    """Base of every error threadline raises on purpose."""


class ConfigError(ThreadlineError):
    """A setting is missing or malformed; names the setting."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(f"{setting}: {message}")
        self.setting = setting
        self.message = message


class LLMError(ThreadlineError):
    """The Chat Completions call failed.

    `user_note` says what happened in words for the chat; `retryable` says whether sending the
    same message again later can help (timeouts, server errors, rate limits, broken streams).
    """

    user_note = "the language model failed"
    retryable = True


class LLMTimeout(LLMError):
    """The server did not answer, or stopped streaming, within the configured time."""

    user_note = "the language model took too long to answer"


class LLMUnavailable(LLMError):
    """The server could not be reached or answered with a server error."""

    user_note = "the language model is unavailable right now"


class LLMRateLimited(LLMError):
    """The server answered 429; `retry_after` is in seconds when it said."""

    user_note = "the language model is rate limited right now"

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class LLMRejected(LLMError):
    """The server refused the request (4xx other than 429)."""

    user_note = "the language model rejected the request"
    retryable = False

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message
        self.user_note = f"the language model rejected the request (HTTP {status})"


class LLMContextTooLong(LLMRejected):
    """The server refused the request for its length: it does not fit the model's context.

    `limit` is the context size in tokens when the server said it, `prompt_tokens` how many
    tokens the server counted in the request when it said that.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        limit: int | None = None,
        prompt_tokens: int | None = None,
    ) -> None:
        super().__init__(status, message)
        self.limit = limit
        self.prompt_tokens = prompt_tokens
        size = f" of {limit} tokens" if limit else ""
        self.user_note = f"the conversation is too long for the model's context window{size}"


class LLMStreamError(LLMError):
    """The stream broke, carried an error payload, or ended without a finish reason."""

    user_note = "the answer was cut off"


class SinkError(ThreadlineError):
    """A write to the chat platform failed."""


class SinkRateLimited(SinkError):
    """The platform answered 429; the pacing scope must wait `retry_after` seconds.

    `scopes` names the keys of the write's pacing scopes that the limit belongs to (one
    channel's bucket, not the bot-wide one); None means every scope of the write.
    """

    def __init__(
        self,
        retry_after: float,
        message: str = "rate limited",
        *,
        scopes: tuple[str, ...] | None = None,
    ) -> None:
        super().__init__(f"{message} (retry after {retry_after:.2f}s)")
        self.retry_after = retry_after
        self.scopes = scopes


class SinkGone(SinkError):
    """The target message or chat no longer accepts writes (deleted, blocked, removed)."""


class SinkRejected(SinkError):
    """The platform refused the write for a reason retrying will not fix."""


class StoreError(ThreadlineError):
    """The history store failed."""
