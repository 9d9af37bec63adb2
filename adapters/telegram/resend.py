"""How often a sendMessage whose response was lost may be sent again (no idempotency key)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

import httpx

# A lost response leaves two choices: send again (the user may see the message twice, the
# first copy frozen) or not (the user may see nothing more of the answer). Sending again is
# kept, but at most once per message and at most PER_CHAT times per chat in WINDOW seconds.
PER_MESSAGE = 1
PER_CHAT = 3
WINDOW = 600.0

# httpx errors raised before any byte of the request reached Telegram: safe to send again.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def maybe_applied(exc: BaseException) -> bool:
    """Whether a failed call may have reached Telegram (its response lost, not its request)."""
    cause = exc.__cause__
    while cause is not None:
        if isinstance(cause, _NOT_SENT):
            return False
        cause = cause.__cause__
    return True


class ResendGuard:
    """Counts blind re-sends per chat in a sliding window; shared by every sink of one bot."""

    def __init__(
        self,
        *,
        per_chat: int = PER_CHAT,
        window: float = WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_chat = per_chat
        self.window = window
        self._clock = clock
        self._sent: dict[int, deque[float]] = {}
        self.resent = 0
        self.refused = 0

    def allow(self, chat_id: int) -> bool:
        """Take one re-send for `chat_id` if its window has room (False: do not send again)."""
        now = self._clock()
        sent = self._sent.setdefault(chat_id, deque())
        while sent and now - sent[0] > self.window:
            sent.popleft()
        if len(sent) >= self.per_chat:
            self.refused += 1
            return False
        sent.append(now)
        self.resent += 1
        return True
