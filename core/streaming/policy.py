"""StreamPolicy: every tunable of pacing and streaming in one value, with sensible defaults."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StreamPolicy:
    """Knobs shared by the `Pacer` and the `StreamDriver`.

    Reserves are in tokens of each bucket and are capped at `burst - 1`, so a bucket of burst 1
    keeps no reserve and relies on priority order alone.
    """

    typing_interval: float = 4.0
    """Seconds between typing indicators until the first text is visible."""

    final_deadline: float = 300.0
    """Seconds a final write (and the parts before it) may keep retrying before giving up."""

    max_final_retries: int = 50
    """Rate-limited attempts allowed per final write before giving up."""

    reserve_tokens: float = 1.0
    """Tokens an intermediate edit must leave in every bucket for finals and first posts."""

    reserve_fraction: float = 0.2
    """The same reserve as a fraction of burst; the larger of the two applies."""

    typing_reserve_tokens: float = 2.0
    """Tokens a typing indicator must leave in every bucket (it only uses spare capacity)."""

    pause_jitter: float = 0.25
    """Up to this many seconds are added at random to every `retry_after` pause."""

    min_pause: float = 0.05
    """Shortest pause applied for a rate limit, even when the platform says 0."""

    def edit_reserve(self, burst: float) -> float:
        """Tokens an intermediate edit must leave in a bucket of `burst`."""
        return min(max(self.reserve_tokens, self.reserve_fraction * burst), max(0.0, burst - 1.0))

    def typing_reserve(self, burst: float) -> float:
        """Tokens a typing indicator must leave in a bucket of `burst`."""
        wanted = max(self.typing_reserve_tokens, self.edit_reserve(burst))
        return min(wanted, max(0.0, burst - 1.0))
