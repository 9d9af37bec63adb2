"""Discord's rate-limit buckets as its `X-RateLimit-*` headers describe them, for the Pacer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.streaming import Pacer

CREATE = "messages.create"
EDIT = "messages.edit"
MESSAGE_ROUTES = (CREATE, EDIT)

HEADROOM = 0.25
"""Seconds added to a bucket's window when pacing it: L requests per window W are sent one per
(W + HEADROOM) / L seconds, so a request that reaches Discord a little early or late still lands
in the window it was meant for. The `remaining: 0` hold (see `DiscordBuckets.observe`) is what
keeps the L+1-th request out of a window; the headroom only absorbs jitter."""

HOLD_MARGIN = 0.02
"""Seconds added to `X-RateLimit-Reset-After` when a bucket says nothing remains."""


@dataclass(frozen=True, slots=True)
class RateHeaders:
    """What a response's `X-RateLimit-*` headers said (None where a header was missing)."""

    bucket: str | None = None
    limit: int | None = None
    remaining: int | None = None
    reset_after: float | None = None

    @classmethod
    def of(cls, headers: Any) -> RateHeaders:
        """Read the headers of one response (a mapping with `get`)."""
        return cls(
            bucket=headers.get("X-RateLimit-Bucket") or None,
            limit=_int(headers.get("X-RateLimit-Limit")),
            remaining=_int(headers.get("X-RateLimit-Remaining")),
            reset_after=_float(headers.get("X-RateLimit-Reset-After")),
        )


class DiscordBuckets:
    """Which pacing bucket each message route of a channel draws from, and at what rate.

    Discord names a route's bucket in `X-RateLimit-Bucket`: one hash per route, the same in
    every channel, and the bucket itself is that hash in one channel. Creates and edits may
    have separate buckets or one shared bucket; only the headers tell.

    * Until any hash is known, both message routes of a channel draw from one bucket at the
      scopes' conservative default rate (assume shared: never more than the channel allows).
    * A route whose hash is known draws from `discord:bucket:{hash}:{channel}`; a route whose
      hash is not known yet draws from the other route's bucket (still assuming shared), so
      routes that report one hash share one budget and priorities hold across both.
    * Each learned bucket is paced at `limit / (window + HEADROOM)` with burst 1, where window
      is the longest `Reset-After` seen for that hash (a window's first request reports the
      whole window). `Remaining` lowers the bucket's tokens, and `Remaining: 0` holds it
      until `Reset-After` has passed.

    Only knowledge lives here (a few routes and hashes); buckets live in the `Pacer`.
    """

    def __init__(self) -> None:
        self._hashes: dict[str, str] = {}  # route -> X-RateLimit-Bucket
        self._shapes: dict[str, tuple[int, float]] = {}  # hash -> (limit, longest Reset-After)

    def bucket_key(self, route: str, channel_id: str) -> str:
        """The pacing bucket of `route` (`CREATE` or `EDIT`) in `channel_id`, as known now."""
        other = EDIT if route == CREATE else CREATE
        bucket = self._hashes.get(route) or self._hashes.get(other)
        if bucket is None:
            return f"discord:channel:{channel_id}:messages"
        return f"discord:bucket:{bucket}:{channel_id}"

    def bind(self, pacer: Pacer, channel_id: str, scope_keys: dict[str, str]) -> None:
        """Alias the channel's route scopes (`route -> scope key`) to their buckets.

        A bucket whose hash was seen in another channel is paced as learned there at once.
        """
        for route, key in scope_keys.items():
            bucket_key = self.bucket_key(route, channel_id)
            pacer.alias(key, bucket_key)
            bucket = self._hashes.get(route)
            if bucket is not None and bucket in self._shapes:
                limit, window = self._shapes[bucket]
                pacer.learn(bucket_key, rate=limit / (window + HEADROOM), burst=1.0)

    def observe(
        self,
        pacer: Pacer,
        route: str,
        channel_id: str,
        limits: RateHeaders,
        scope_keys: dict[str, str],
    ) -> bool:
        """Learn from one response of `route` in `channel_id`; False when it named no bucket.

        The channel's scopes (`route -> scope key`) are aliased again first, so their waiters
        move to the bucket the headers named before that bucket is paced as they say.
        """
        bucket = limits.bucket
        if bucket is None or route not in MESSAGE_ROUTES:
            return False
        self._hashes[route] = bucket
        self.bind(pacer, channel_id, scope_keys)
        if limits.limit is None or limits.limit < 1 or limits.reset_after is None:
            return True
        window = max(self._shapes.get(bucket, (0, 0.0))[1], limits.reset_after)
        self._shapes[bucket] = (limits.limit, window)
        hold = None if limits.reset_after <= 0 else limits.reset_after + HOLD_MARGIN
        pacer.learn(
            self.bucket_key(route, channel_id),
            rate=limits.limit / (window + HEADROOM),
            burst=1.0,
            remaining=limits.remaining,
            reset_after=hold,
        )
        return True


def _int(value: str | None) -> int | None:
    try:
        return None if value is None else int(value)
    except ValueError:
        return None


def _float(value: str | None) -> float | None:
    try:
        return None if value is None else float(value)
    except ValueError:
        return None
