"""What the service needs from the settings, and what handling one message led to."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from core.caps import ParamCaps
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
    instance_id: str = field(default_factory=lambda: secrets.token_hex(8))
    """This process, as the writer of its streaming answers."""
    save_interval: float = 2.0
    """A streaming answer's stored text is at most this many seconds behind the screen."""
    stale_after: float = 20.0
    """An answer whose writer saved nothing for this long is taken over (its writer died)."""
    user_rate: int = 20
    """Messages a minute each user may have answered (0: no limit)."""
    max_answers: int = 256
    """Answers streaming at once in this process; more wait, users served round robin."""
    user_answers: int = 2
    """Answers streaming at once for one user."""
    user_queue: int = 10
    """Answers one user may have waiting for a slot; beyond that they are refused with a note."""
    caps: ParamCaps = field(default_factory=ParamCaps)
    """What users may not exceed with /set (n, max tokens, models, logit_bias size)."""


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
    saves: int = 0
    """How often the answer was saved while it streamed (besides storing it at the end)."""
    stopped: bool = False
    """Someone stopped the answer before the model finished it (stored as partial)."""
    stopped_by: str | None = None
    results: list[StreamResult] = field(default_factory=list)


__all__ = ["Outcome", "ServiceConfig"]
