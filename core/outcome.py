"""What the service needs from the settings, and what handling one message led to."""

from __future__ import annotations

from dataclasses import dataclass, field

from core.conversation import ConversationKey, TurnStatus
from core.llm import ChatParams
from core.streaming import StreamResult


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    """What the service needs from the settings, built once at start-up."""

    system_prompt: str
    params: ChatParams
    context_window: int
    reply_tokens: int
    history_turns: int = 200
    user_hash_key: bytes | None = None
    shutdown_grace: float = 3.0
    """Seconds an answer interrupted by shutdown gets to show its text and a note."""


@dataclass(slots=True)
class Outcome:
    """What one handled message led to; returned for callers and tests."""

    key: ConversationKey | None = None
    skipped: str | None = None
    text: str = ""
    status: TurnStatus | None = None
    finish_reason: str | None = None
    error: str | None = None
    stored: bool = True
    results: list[StreamResult] = field(default_factory=list)


__all__ = ["Outcome", "ServiceConfig"]
