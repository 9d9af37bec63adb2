"""One Chat Completions request (messages plus parameters) and its JSON body."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from core.llm.names import sanitize_name
from core.llm.params import ChatParams
from core.llm.types import ChatMessage

_ROLES = ("system", "user", "assistant")


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """The messages to send, the parameters, and whether to stream the answer."""

    messages: tuple[ChatMessage, ...]
    params: ChatParams
    stream: bool = True

    def __post_init__(self) -> None:
        messages: Sequence[ChatMessage] = self.messages
        object.__setattr__(self, "messages", tuple(messages))
        if not self.messages:
            raise ValueError("a chat request needs at least one message")
        for message in self.messages:
            if message.role not in _ROLES:
                raise ValueError(f"unknown message role {message.role!r}")

    @property
    def choice_count(self) -> int:
        """How many choices (`n`) the request asks for."""
        return self.params.n or 1

    def to_payload(self, include_usage: bool, use_max_completion_tokens: bool) -> dict[str, Any]:
        """The JSON body for POST /chat/completions.

        `include_usage` adds `stream_options.include_usage` (streaming only);
        `use_max_completion_tokens` sends a `max_tokens` limit as `max_completion_tokens`.
        Message names are sanitised to what the API accepts, or dropped.
        """
        params = self.params.to_payload()
        if use_max_completion_tokens and "max_tokens" in params:
            limit = params.pop("max_tokens")
            params.setdefault("max_completion_tokens", limit)
        payload: dict[str, Any] = {
            "model": params.pop("model"),
            "messages": [_message_payload(message) for message in self.messages],
            **params,
            "stream": self.stream,
        }
        if self.stream and include_usage:
            payload["stream_options"] = {"include_usage": True}
        return payload


def _message_payload(message: ChatMessage) -> dict[str, str]:
    body = {"role": message.role, "content": message.content}
    name = sanitize_name(message.name)
    if name is not None:
        body["name"] = name
    return body
