"""Each user's message rate: at most N answered messages a minute, and when the next one is due."""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable

WINDOW = 60.0
USERS_KEPT = 100_000  # the least recently seen users are forgotten past this many


class UserRate:
    """A sliding one-minute window per (platform, user); `per_minute` 0 turns it off."""

    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._seen: OrderedDict[tuple[str, str], deque[float]] = OrderedDict()

    def take(self, platform: str, user: str | None) -> float | None:
        """Count one message; None when allowed, else the seconds until the user may send again."""
        if self.per_minute <= 0 or not user:
            return None
        now = self._clock()
        key = (platform, user)
        times = self._seen.get(key)
        if times is None:
            times = self._seen[key] = deque()
        self._seen.move_to_end(key)
        while times and now - times[0] >= WINDOW:
            times.popleft()
        if len(times) >= self.per_minute:
            return WINDOW - (now - times[0])
        times.append(now)
        if len(self._seen) > USERS_KEPT:
            self._seen.popitem(last=False)
        return None


def rate_reply(per_minute: int, wait: float) -> str:
    """What a user over the limit is told: the limit, and when to send again."""
    seconds = max(1, round(wait))
    return (
        f"⏳ You are sending more than {per_minute} messages a minute, so I did not answer this "
        f"one. Send it again in {seconds} s."
    )
