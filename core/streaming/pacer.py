"""Pacer: token buckets keyed by pacing scope, shared by every stream, with priorities and pauses.

Every write the streaming driver makes first calls `Pacer.acquire(scopes, priority)`. A bucket is
created for each `PaceScope.key` on first use (full, at the scope's burst) and is shared by every
stream that names that key, so one Slack workspace's chat.update budget is split among all of its
concurrent answers.

How a grant is decided (no busy polling, no partial takes):

* A request needs one token from *each* of its buckets and takes them all at once, or none.
* Waiters are ordered by priority (FINAL > FIRST > EDIT > TYPING), then by arrival.
* The first waiter of a bucket (its head) has a claim on one token of it: anyone behind it may
  only use tokens beyond that one. So a request that spans a narrow and a wide bucket (a Telegram
  chat and the bot-wide limit) cannot be starved by requests that only need one of them, while
  the wide bucket's other tokens keep flowing to everybody else.
* Intermediate edits must leave `policy.edit_reserve(burst)` tokens behind and typing indicators
  `policy.typing_reserve(burst)`, so finals and first posts find a token at once.
* A waiter sleeps until the bucket that blocks it longest could serve it; each bucket has at most
  one timer task. Grants and cancellations wake the buckets whose head changed.
* `pause(scopes, retry_after)` stops all grants in those buckets until `retry_after` (plus jitter)
  has passed, then allows one token and refills at the normal rate.

A platform that reports its own buckets can reshape them: `alias(key, bucket_key)` makes scopes
named `key` draw from the bucket `bucket_key` (two routes the platform counts as one bucket then
share one budget, and priorities hold across both), and `learn(bucket_key, rate, burst, ...)`
sets that bucket's rate and burst from what the platform said, overriding the scopes' own, and
can lower its tokens to what the platform says remains (`remaining`), holding it empty until
`reset_after` when nothing remains. Both are remembered (the newest `max_learned` of each) even
while the bucket itself is dropped idle.

Buckets of scopes no longer in use are dropped, so one-off keys (a chat answered once) do not
pile up. While the pacer holds more than `max_idle_buckets` buckets, `acquire` sweeps out those
that are full (idle long enough to refill), have no waiters, no timer and no pause in force,
at most once per `max(max_idle_buckets, buckets left by the last sweep)` calls: O(1) amortised
per call. Dropping changes no grant: a bucket created again starts full, exactly as it was (and
a full bucket whose scope comes back with another burst fills to it, kept or not).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import heapq
import itertools
import math
import random
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from core.clock import Clock
from core.metrics import PACER_WAIT
from core.streaming.policy import StreamPolicy
from core.streaming.sink import PaceScope

_EPS = 1e-9


class Priority(enum.IntEnum):
    """How urgent a write is; higher values are served first within a scope."""

    TYPING = 0
    EDIT = 1
    FIRST = 2
    FINAL = 3


@dataclass(frozen=True, slots=True)
class ScopeStats:
    """What one bucket has done so far (for tests and benchmarks)."""

    key: str
    rate: float
    burst: float
    tokens: float
    grants: int
    grants_by_priority: tuple[tuple[Priority, int], ...]
    pauses: int
    paused_seconds: float
    waiting: int
    total_wait: float
    max_wait: float


class _Waiter:
    """One pending `acquire` call."""

    __slots__ = ("buckets", "done", "future", "keys", "order", "priority", "since")

    def __init__(
        self,
        priority: Priority,
        seq: int,
        buckets: list[_Bucket],
        since: float,
        keys: Sequence[str] = (),
    ) -> None:
        self.priority = priority
        self.order = (-int(priority), seq)
        self.buckets = buckets
        self.keys = keys  # the scope keys asked for (an alias may move the waiter)
        self.since = since
        self.done = False
        self.future: asyncio.Future[None] | None = None


_Entry = tuple[tuple[int, int], _Waiter]


class _Bucket:
    """One token bucket and the waiters that need it."""

    __slots__ = (
        "burst",
        "grants",
        "grants_by_priority",
        "key",
        "max_wait",
        "members",
        "parked",
        "paused_seconds",
        "paused_until",
        "pauses",
        "rate",
        "timer",
        "timer_when",
        "tokens",
        "total_wait",
        "updated",
    )

    def __init__(self, key: str, rate: float, burst: float, now: float) -> None:
        self.key = key
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.updated = now
        self.paused_until = -math.inf
        self.members: list[_Entry] = []  # every waiter that needs this bucket
        self.parked: list[_Entry] = []  # the waiters this bucket is currently blocking
        self.timer: asyncio.Task[None] | None = None
        self.timer_when = math.inf
        self.grants = 0
        self.grants_by_priority = dict.fromkeys(Priority, 0)
        self.pauses = 0
        self.paused_seconds = 0.0
        self.total_wait = 0.0
        self.max_wait = 0.0

    def refill(self, now: float) -> None:
        if now > self.updated:
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
            self.updated = now

    def head(self) -> _Waiter | None:
        """The first waiter in priority order that still waits."""
        while self.members and self.members[0][1].done:
            heapq.heappop(self.members)
        return self.members[0][1] if self.members else None

    def first_parked(self) -> _Waiter | None:
        while self.parked and self.parked[0][1].done:
            heapq.heappop(self.parked)
        return self.parked[0][1] if self.parked else None


class Pacer:
    """Token buckets keyed by `PaceScope.key`, shared by every concurrent stream.

    Up to `max_idle_buckets` buckets are kept without sweeping idle ones out (see the module doc).
    """

    def __init__(
        self,
        clock: Clock,
        policy: StreamPolicy | None = None,
        *,
        rng: random.Random | None = None,
        max_idle_buckets: int = 256,
        max_learned: int = 65_536,
    ) -> None:
        self.clock = clock
        self.policy = policy or StreamPolicy()
        self.max_idle_buckets = max_idle_buckets
        self.max_learned = max_learned
        self._rng = rng or random.Random()
        self._buckets: dict[str, _Bucket] = {}
        self._aliases: OrderedDict[str, str] = OrderedDict()  # scope key -> bucket key
        self._shapes: OrderedDict[str, tuple[float, float]] = OrderedDict()  # learned (rate, burst)
        self._seq = itertools.count()
        self._calls_since_sweep = 0
        self._sweep_every = max(1, max_idle_buckets)

    async def acquire(self, scopes: Sequence[PaceScope], priority: Priority) -> None:
        """Wait until every named bucket can serve `priority`, then take one token from each."""
        self._maybe_sweep()  # before the lookup: a bucket in use here is never dropped
        buckets = self._buckets_for(scopes)
        if not buckets:
            return
        now = self.clock.now()
        waiter = _Waiter(priority, next(self._seq), buckets, now, [s.key for s in scopes])
        blocker = self._blocker(waiter, now)
        platform = scopes[0].key.partition(":")[0]
        if blocker is None:
            self._take(waiter, now)
            PACER_WAIT.labels(platform).observe(0.0)
            return
        waiter.future = asyncio.get_running_loop().create_future()
        entry = (waiter.order, waiter)
        for bucket in buckets:
            heapq.heappush(bucket.members, entry)
        self._park(waiter, blocker, now)
        try:
            await waiter.future
        except asyncio.CancelledError:
            if not waiter.done:
                waiter.done = True
                self._pump(buckets)
            raise
        PACER_WAIT.labels(platform).observe(max(0.0, self.clock.now() - now))

    def refund(self, scopes: Sequence[PaceScope]) -> None:
        """Give back one token to each bucket: a grant whose write was dropped unmade."""
        now = self.clock.now()
        buckets = self._buckets_for(scopes)
        for bucket in buckets:
            bucket.refill(now)
            bucket.tokens = min(bucket.burst, bucket.tokens + 1.0)
        self._pump(buckets)

    def pause(self, scopes: Sequence[PaceScope], retry_after: float) -> float:
        """Grant nothing in these scopes for `retry_after` seconds plus jitter; return the end."""
        buckets = self._buckets_for(scopes)
        now = self.clock.now()
        delay = max(self.policy.min_pause, retry_after)
        until = now + delay + self._rng.uniform(0.0, self.policy.pause_jitter)
        for bucket in buckets:
            bucket.refill(now)
            bucket.pauses += 1
            if until > bucket.paused_until:
                bucket.paused_seconds += until - max(now, bucket.paused_until)
                bucket.paused_until = until
                bucket.tokens = min(bucket.tokens, 1.0)
                bucket.updated = until
            self._schedule(bucket, now)
        return until

    def alias(self, key: str, bucket_key: str) -> None:
        """Scopes named `key` draw from the bucket `bucket_key` from now on (`key`: their own).

        Waiters that asked for `key` move to the new bucket with their place in its order; a
        new bucket made by the move starts with the old one's tokens, not full.
        """
        old_key = self._aliases.get(key, key)
        if bucket_key == key:
            self._aliases.pop(key, None)
        else:
            self._aliases[key] = bucket_key
            self._aliases.move_to_end(key)
            if len(self._aliases) > self.max_learned:
                self._aliases.popitem(last=False)
        old = self._buckets.get(old_key)
        if old_key != bucket_key and old is not None:
            self._move_waiters(old, key, bucket_key)

    def bucket_key(self, key: str) -> str:
        """The bucket a scope named `key` draws from."""
        return self._aliases.get(key, key)

    def learn(
        self,
        bucket_key: str,
        *,
        rate: float,
        burst: float,
        remaining: float | None = None,
        reset_after: float | None = None,
    ) -> None:
        """Pace the bucket `bucket_key` at `rate` and `burst`, whatever its scopes say.

        `remaining`: the platform says at most this many requests are left now, so the bucket
        holds no more tokens than that. When it is 0, `reset_after` seconds (if given) must
        pass before the next grant.
        """
        if rate <= 0 or burst < 1:
            raise ValueError(f"bucket {bucket_key!r} needs rate > 0 and burst >= 1")
        self._shapes[bucket_key] = (rate, burst)
        self._shapes.move_to_end(bucket_key)
        if len(self._shapes) > self.max_learned:
            self._shapes.popitem(last=False)
        bucket = self._buckets.get(bucket_key)
        if bucket is None and remaining is None:
            return  # created from the learned shape on first use
        now = self.clock.now()
        if bucket is None:
            bucket = self._buckets[bucket_key] = _Bucket(bucket_key, rate, burst, now)
        self._reshape(bucket, rate, burst, now)
        if remaining is not None:
            bucket.tokens = min(bucket.tokens, max(0.0, remaining))
            if remaining <= 0 and reset_after is not None and reset_after > 0:
                until = now + reset_after
                if until > bucket.paused_until:
                    bucket.pauses += 1
                    bucket.paused_seconds += until - max(now, bucket.paused_until)
                    bucket.paused_until = until
        self._pump([bucket])

    def stats(self) -> dict[str, ScopeStats]:
        """A snapshot of every bucket, keyed by scope key.

        A bucket dropped while idle (see the module doc) is missing, and its counters start
        from zero when its scope is used again.
        """
        now = self.clock.now()
        result: dict[str, ScopeStats] = {}
        for key, bucket in self._buckets.items():
            bucket.refill(now)
            result[key] = ScopeStats(
                key=key,
                rate=bucket.rate,
                burst=bucket.burst,
                tokens=bucket.tokens,
                grants=bucket.grants,
                grants_by_priority=tuple(bucket.grants_by_priority.items()),
                pauses=bucket.pauses,
                paused_seconds=bucket.paused_seconds,
                waiting=sum(1 for _, waiter in bucket.members if not waiter.done),
                total_wait=bucket.total_wait,
                max_wait=bucket.max_wait,
            )
        return result

    def close(self) -> None:
        """Cancel the wake-up timers (pending `acquire` calls then wait forever)."""
        for bucket in self._buckets.values():
            if bucket.timer is not None:
                bucket.timer.cancel()
                bucket.timer = None

    # -- bucket bookkeeping ------------------------------------------------------------------

    def _maybe_sweep(self) -> None:
        """Drop idle buckets; a sweep of n buckets comes at least n calls after the last one."""
        self._calls_since_sweep += 1
        if (
            self._calls_since_sweep < self._sweep_every
            or len(self._buckets) <= self.max_idle_buckets
        ):
            return
        now = self.clock.now()
        idle = [key for key, bucket in self._buckets.items() if self._idle(bucket, now)]
        for key in idle:
            del self._buckets[key]
        self._calls_since_sweep = 0
        self._sweep_every = max(1, self.max_idle_buckets, len(self._buckets))

    @staticmethod
    def _idle(bucket: _Bucket, now: float) -> bool:
        """Whether dropping `bucket` changes nothing: it is exactly what a new one would be."""
        if bucket.paused_until > now or (bucket.timer is not None and not bucket.timer.done()):
            return False
        bucket.refill(now)
        return (
            bucket.tokens >= bucket.burst
            and bucket.head() is None
            and bucket.first_parked() is None
        )

    def _buckets_for(self, scopes: Iterable[PaceScope]) -> list[_Bucket]:
        buckets: dict[str, _Bucket] = {}
        for scope in scopes:
            if scope.rate <= 0 or scope.burst < 1:
                raise ValueError(f"pace scope {scope.key!r} needs rate > 0 and burst >= 1")
            key = self._aliases.get(scope.key, scope.key)
            rate, burst = self._shapes.get(key, (scope.rate, scope.burst))
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _Bucket(key, rate, burst, self.clock.now())
            elif bucket.rate != rate or bucket.burst != burst:
                self._reshape(bucket, rate, burst, self.clock.now())
            buckets[key] = bucket
        return list(buckets.values())

    def _move_waiters(self, old: _Bucket, key: str, bucket_key: str) -> None:
        """Waiters of `old` that asked for scope `key` now wait in the bucket `bucket_key`."""
        moving = {id(w): w for _, w in old.members if not w.done and key in w.keys}
        if not moving:
            return
        now = self.clock.now()
        new = self._buckets.get(bucket_key)
        if new is None:
            old.refill(now)
            rate, burst = self._shapes.get(bucket_key, (old.rate, old.burst))
            new = self._buckets[bucket_key] = _Bucket(bucket_key, rate, burst, now)
            new.tokens = min(new.burst, old.tokens)
            new.paused_until = old.paused_until
        old.members = [e for e in old.members if id(e[1]) not in moving]
        old.parked = [e for e in old.parked if id(e[1]) not in moving]
        heapq.heapify(old.members)
        heapq.heapify(old.parked)
        for waiter in moving.values():
            if new in waiter.buckets:
                waiter.buckets = [b for b in waiter.buckets if b is not old]
            else:
                waiter.buckets = [new if b is old else b for b in waiter.buckets]
                heapq.heappush(new.members, (waiter.order, waiter))
            heapq.heappush(new.parked, (waiter.order, waiter))
        self._pump([old, new])

    @staticmethod
    def _reshape(bucket: _Bucket, rate: float, burst: float, now: float) -> None:
        bucket.refill(now)
        full = bucket.tokens >= bucket.burst and now >= bucket.paused_until
        bucket.rate, bucket.burst = rate, burst
        # a full bucket stays full, as if new: it could as well have been dropped idle
        bucket.tokens = bucket.burst if full else min(bucket.tokens, bucket.burst)

    def _need(self, bucket: _Bucket, waiter: _Waiter) -> float:
        """Tokens `bucket` must hold before `waiter` may take one."""
        if waiter.priority is Priority.EDIT:
            need = 1.0 + self.policy.edit_reserve(bucket.burst)
        elif waiter.priority is Priority.TYPING:
            need = 1.0 + self.policy.typing_reserve(bucket.burst)
        else:
            need = 1.0
        head = bucket.head()
        if head is not None and head is not waiter and head.order < waiter.order:
            need += 1.0  # the head's claim
        return need

    def _ready_at(self, bucket: _Bucket, waiter: _Waiter, now: float) -> float:
        """When `bucket` alone would let `waiter` through (inf: only a head change can)."""
        need = self._need(bucket, waiter)
        if need > bucket.burst + _EPS:
            return math.inf
        start = max(now, bucket.updated)
        return max(bucket.paused_until, start + max(0.0, need - bucket.tokens) / bucket.rate)

    def _blocker(self, waiter: _Waiter, now: float) -> _Bucket | None:
        """The bucket that blocks `waiter` longest, or None when it can be served now."""
        worst: _Bucket | None = None
        worst_at = now
        for bucket in waiter.buckets:
            bucket.refill(now)
            if now >= bucket.paused_until and bucket.tokens + _EPS >= self._need(bucket, waiter):
                continue
            ready = self._ready_at(bucket, waiter, now)
            if worst is None or ready > worst_at:
                worst, worst_at = bucket, ready
        return worst

    def _take(self, waiter: _Waiter, now: float) -> None:
        waited = now - waiter.since
        for bucket in waiter.buckets:
            bucket.tokens -= 1.0
            bucket.grants += 1
            bucket.grants_by_priority[waiter.priority] += 1
            bucket.total_wait += waited
            bucket.max_wait = max(bucket.max_wait, waited)

    def _grant(self, waiter: _Waiter, now: float) -> list[_Bucket]:
        """Serve a registered waiter; return the buckets whose head it was."""
        headed = [bucket for bucket in waiter.buckets if bucket.head() is waiter]
        self._take(waiter, now)
        waiter.done = True
        if waiter.future is not None and not waiter.future.done():
            waiter.future.set_result(None)
        return headed

    def _park(self, waiter: _Waiter, bucket: _Bucket, now: float) -> None:
        heapq.heappush(bucket.parked, (waiter.order, waiter))
        self._schedule(bucket, now)

    def _pump(self, buckets: Iterable[_Bucket]) -> None:
        """Serve whatever the given buckets (and buckets whose head changed) can serve now."""
        queue = list(dict.fromkeys(buckets))
        queued = set(map(id, queue))
        while queue:
            bucket = queue.pop(0)
            queued.discard(id(bucket))
            now = self.clock.now()
            while (waiter := bucket.first_parked()) is not None:
                blocker = self._blocker(waiter, now)
                if blocker is bucket:
                    break
                heapq.heappop(bucket.parked)
                if blocker is not None:
                    self._park(waiter, blocker, now)
                    continue
                for other in self._grant(waiter, now):
                    if other is not bucket and id(other) not in queued:
                        queue.append(other)
                        queued.add(id(other))
            self._schedule(bucket, now)

    def _schedule(self, bucket: _Bucket, now: float) -> None:
        """Keep one timer per bucket, due when its first parked waiter could be served."""
        waiter = bucket.first_parked()
        when = math.inf if waiter is None else self._ready_at(bucket, waiter, now)
        timer = bucket.timer
        if timer is not None and not timer.done():
            if bucket.timer_when <= when + _EPS:
                return
            timer.cancel()
        bucket.timer = None
        bucket.timer_when = math.inf
        if when == math.inf:
            return
        bucket.timer_when = when
        bucket.timer = asyncio.get_running_loop().create_task(self._wake(bucket, when))

    async def _wake(self, bucket: _Bucket, when: float) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await self.clock.sleep(max(0.0, when - self.clock.now()))
            bucket.timer = None
            bucket.timer_when = math.inf
            self._pump([bucket])
