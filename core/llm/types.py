"""Value types of the Chat Completions boundary: messages, stream events and endpoint config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MessageRole = Literal["system", "user", "assistant"]
FinishReason = str  # "stop", "length", "content_filter", "tool_calls", "function_call", ...
AuthStyle = Literal["bearer", "api-key", "none"]


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One message of a Chat Completions request."""

    role: MessageRole
    content: str
    name: str | None = None


@dataclass(frozen=True, slots=True)
class ContentDelta:
    """Visible text appended to choice `choice`."""

    choice: int
    text: str


@dataclass(frozen=True, slots=True)
class ChoiceFinished:
    """Choice `choice` ended with `reason` (stop, length, content_filter, ...)."""

    choice: int
    reason: FinishReason


@dataclass(frozen=True, slots=True)
class UsageReport:
    """Token usage the server reported for the whole request."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


StreamEvent = ContentDelta | ChoiceFinished | UsageReport


@dataclass(frozen=True, slots=True)
class LLMEndpoint:
    """Where and how to reach an OpenAI-compatible server.

    `api_key` is never logged or stored; `repr` hides it.
    """

    base_url: str
    api_key: str | None = None
    auth_style: AuthStyle = "bearer"
    api_version: str | None = None  # Azure: sent as the api-version query parameter
    connect_timeout: float = 10.0
    first_token_timeout: float = 120.0
    chunk_timeout: float = 60.0
    total_timeout: float = 600.0
    max_retries: int = 3
    retry_base_delay: float = 0.5
    retry_max_delay: float = 20.0
    include_usage: bool = True

    def __repr__(self) -> str:
        key = "set" if self.api_key else "none"
        return (
            f"LLMEndpoint(base_url={self.base_url!r}, api_key=<{key}>, "
            f"auth_style={self.auth_style!r}, api_version={self.api_version!r})"
        )
