"""Each model's context size: configured or published at start, lowered by what servers reject.

A server that rejects a request for its length (`LLMContextTooLong`) teaches the model's limit:
the size it states, else a guess of 3/4 of the prompt it refused. The limit is stored (the
smallest anyone learned wins, across restarts and replicas) and the request is retried once
with a window rebuilt for it; when even the newest message alone does not fit, retrying cannot
help and the user is told so instead.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from core.context.tokens import TokenCounter
from core.context.window import Window
from core.errors import LLMContextTooLong

log = logging.getLogger(__name__)

SHRINK = 0.75
"""Without a stated limit, the next window is this share of the prompt that was refused."""
MIN_CONTEXT = 64
"""No limit learned from a rejection goes below this many tokens."""
REPLY_SHARE = 4
"""Without an explicit max_tokens, at most 1/REPLY_SHARE of the context is kept for the reply."""


class LimitStore(Protocol):
    """Where learned limits live (`HistoryStore` satisfies it)."""

    async def model_limit(self, model: str) -> int | None:
        """The limit learned for `model`, or None."""
        ...

    async def lower_model_limit(self, model: str, tokens: int) -> int:
        """Store `tokens` unless a smaller limit is stored; returns the stored one."""
        ...


@dataclass(frozen=True, slots=True)
class Budget:
    """What a window may use: the context size and the part of it kept for the reply."""

    context_tokens: int
    reply_tokens: int
    reply_fixed: bool = False
    """The reply's reservation is sent as max_tokens, so the server counts it in full."""

    @property
    def prompt_tokens(self) -> int:
        """Tokens left for the prompt."""
        return self.context_tokens - self.reply_tokens


Rebuild = Callable[[Budget], Window]


class ContextLimits:
    """The context size to build each model's windows for, and what to do when it is wrong.

    `context_window` is the configured size, else the one the server published at start, else
    the default; a smaller size learned from a rejection (kept in `store`) wins over it. Learned
    limits are cached per process; a process that has not seen a newer, smaller one learns it
    from its own first rejection (the store answers with the smallest one stored).
    """

    def __init__(self, store: LimitStore, *, context_window: int, counter: TokenCounter) -> None:
        self._store = store
        self._base = context_window
        self._counter = counter
        self._learned: dict[str, int | None] = {}

    async def limit(self, model: str) -> int:
        """The context size to use for `model`."""
        if model not in self._learned:
            self._learned[model] = await self._store.model_limit(model)
        learned = self._learned[model]
        return self._base if learned is None else min(self._base, learned)

    async def budget(self, model: str, reply_tokens: int, *, reply_fixed: bool) -> Budget:
        """The budget of `model`'s next window.

        `reply_tokens` is the reply's reservation; `reply_fixed` says the request sends it as
        max_tokens (then the server counts it against the context and it is kept whole), else
        it is at most 1/REPLY_SHARE of a small context, so a 2,048-token model keeps room for
        the conversation.
        """
        context = await self.limit(model)
        if not reply_fixed:
            reply_tokens = min(reply_tokens, context // REPLY_SHARE)
        return Budget(context, reply_tokens, reply_fixed)

    async def retry_window(
        self,
        model: str,
        error: LLMContextTooLong,
        sent: Window,
        budget: Budget,
        rebuild: Rebuild,
    ) -> Window | LLMContextTooLong:
        """After `sent` was rejected for its length: learn the limit, and the window to retry
        with, or (when a retry cannot help) the error to show, which says what happened.

        The stated limit is in the server's tokens; when the server also counted the prompt and
        counted more than we did, the retry's budget is scaled down by that ratio so the rebuilt
        window fits as the server counts it.
        """
        learned = await self.learn(model, error, sent)
        context = learned
        if error.prompt_tokens and error.prompt_tokens > sent.prompt_tokens > 0:
            context = math.floor(learned * sent.prompt_tokens / error.prompt_tokens)
        reply = budget.reply_tokens
        if not budget.reply_fixed:
            reply = min(reply, context // REPLY_SHARE)
        prompt_room = context - reply
        if prompt_room >= sent.prompt_tokens:
            prompt_room = math.floor(sent.prompt_tokens * SHRINK)  # learned nothing usable
        smaller = Budget(max(prompt_room, 1) + reply, reply, budget.reply_fixed)
        window = rebuild(smaller)
        if error.prompt_tokens:  # after the rebuild, which the scaling above already corrects
            self._counter.calibrate(model, sent.prompt_tokens, error.prompt_tokens)
        if window.prompt_tokens > smaller.prompt_tokens or len(window.messages) >= len(
            sent.messages
        ):
            return _too_long(error)
        log.info(
            "retrying with %d of %d messages for %s (context %d tokens)",
            len(window.messages),
            len(sent.messages),
            model,
            learned,
        )
        return window

    async def learn(self, model: str, error: LLMContextTooLong, sent: Window) -> int:
        """Store what the rejection of `sent` says about `model`'s limit; returns the limit now
        in force."""
        guess = math.floor((error.prompt_tokens or sent.prompt_tokens) * SHRINK)
        tokens = max(error.limit or guess, MIN_CONTEXT)
        stored = await self._store.lower_model_limit(model, tokens)
        if self._learned.get(model) != stored:
            log.warning(
                "%s rejected a request for its length (%s); using a context of %d tokens "
                "for it from now on",
                model,
                error.message,
                min(self._base, stored),
            )
        self._learned[model] = stored
        return min(self._base, stored)


def _too_long(error: LLMContextTooLong) -> LLMContextTooLong:
    """The error to show when the newest message alone does not fit."""
    shown = LLMContextTooLong(
        error.status, error.message, limit=error.limit, prompt_tokens=error.prompt_tokens
    )
    size = f" of {error.limit} tokens" if error.limit else ""
    shown.user_note = (
        f"your message is too long for the model's context window{size}, even without the "
        "earlier messages. Please send a shorter one"
    )
    return shown


__all__ = ["MIN_CONTEXT", "SHRINK", "Budget", "ContextLimits", "LimitStore", "Rebuild"]
