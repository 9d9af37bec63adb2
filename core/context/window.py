"""Choose the newest history that fits the model's context next to the system prompt and reply."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from core.context.tokens import REPLY_PRIMING, TokenCounter
from core.conversation import Role, Turn
from core.llm.types import ChatMessage, MessageRole

NameFor = Callable[[Turn], str | None]

_ROLES: dict[Role, MessageRole] = {
    Role.SYSTEM: "system",
    Role.USER: "user",
    Role.ASSISTANT: "assistant",
}


@dataclass(frozen=True, slots=True)
class Window:
    """The messages to send, how many older turns did not fit, and their token count."""

    messages: list[ChatMessage]
    dropped: int
    prompt_tokens: int


def build_window(
    system_prompt: str,
    history: Sequence[Turn],
    current: Turn,
    *,
    context_tokens: int,
    reply_tokens: int,
    counter: TokenCounter,
    model: str,
    name_for: NameFor | None = None,
) -> Window:
    """System prompt, then the newest `history` that fits, then `current`.

    The budget for the prompt is `context_tokens - reply_tokens`. The system prompt (when not
    empty) and `current` are always included, even if they alone exceed it; history is taken
    newest first and stops at the first turn that does not fit, so what is kept is always a
    contiguous, most recent stretch. Turns without content (e.g. failed replies) are skipped;
    partial replies go in as they were stored. If older turns were left out, an assistant
    turn that would open the window without its question goes too. `dropped` counts the
    turns left out for lack of room. User turns carry `name_for(turn)` when it gives one.

    A turn's stored `token_count` (its content's tokens, as `TokenCounter.count` gave them) is
    used instead of tokenizing its content again; framing and name are counted as usual.
    """
    if context_tokens <= 0:
        raise ValueError("context_tokens must be positive")
    if reply_tokens < 0:
        raise ValueError("reply_tokens must not be negative")
    budget = context_tokens - reply_tokens

    head = [ChatMessage(role="system", content=system_prompt)] if system_prompt else []
    last = _message(current, name_for)
    used = REPLY_PRIMING + sum(counter.count_message(message, model) for message in head)
    used += counter.count_message(last, model, content_tokens=_stored_tokens(current))

    candidates = [
        turn
        for turn in history
        if turn.content.strip() and (current.id is None or turn.id != current.id)
    ]
    kept: list[tuple[ChatMessage, int]] = []  # newest first
    for turn in reversed(candidates):
        message = _message(turn, name_for)
        cost = counter.count_message(message, model, content_tokens=_stored_tokens(turn))
        if used + cost > budget:
            break
        kept.append((message, cost))
        used += cost
    dropped = len(candidates) - len(kept)
    while dropped and kept and kept[-1][0].role == "assistant":
        used -= kept.pop()[1]
        dropped += 1
    messages = [*head, *(message for message, _ in reversed(kept)), last]
    return Window(messages=messages, dropped=dropped, prompt_tokens=used)


def _stored_tokens(turn: Turn) -> int | None:
    """The turn's stored content token count, if it has a plausible one (0 is not)."""
    count = turn.token_count
    return count if count is not None and count > 0 else None


def _message(turn: Turn, name_for: NameFor | None) -> ChatMessage:
    name = name_for(turn) if name_for is not None and turn.role is Role.USER else None
    return ChatMessage(role=_ROLES[turn.role], content=turn.content, name=name or None)
