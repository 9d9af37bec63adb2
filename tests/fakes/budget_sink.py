"""BudgetSink: a `ReplySink` that behaves like a rate-limited chat platform, for driver tests.

A `Platform` (one Slack workspace, one Telegram bot) owns sliding-window budgets keyed by pacing
scope key and every message; each `BudgetSink` (one per answer) charges the budgets named by its
`SinkLimits` scopes for the write's kind, independently of any pacer. A write over budget is
answered with `SinkRateLimited(retry_after)` and counted in `Platform.rate_limited`; a text longer
than `max_length` gets `SinkRejected("message is too long")`.

    platform = Platform(clock, {"T1:chat.update": Budget(50, 60.0)}, latency=0.05)
    sink = platform.sink(limits)
    ...
    assert platform.rate_limited == 0
    assert sink.texts() == ["first message", "second message"]
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from core.clock import Clock
from core.errors import SinkError, SinkRateLimited, SinkRejected
from core.streaming.sink import SinkLimits, WriteKind

Outcome = Literal["ok", "rate_limited", "rejected", "injected"]


@dataclass(frozen=True, slots=True)
class Budget:
    """At most `limit` writes in any `window` seconds."""

    limit: int
    window: float


@dataclass(frozen=True, slots=True)
class WriteRecord:
    """One write the platform received."""

    sink: str
    kind: WriteKind
    message_id: str | None
    text: str
    received_at: float
    done_at: float
    outcome: Outcome


@dataclass(slots=True)
class Message:
    """One message as users see it."""

    message_id: str
    sink: str
    text: str
    final: bool = False
    versions: list[str] = field(default_factory=list)


class Platform:
    """Budgets and messages shared by every sink of one workspace or bot."""

    def __init__(
        self,
        clock: Clock,
        budgets: Mapping[str, Budget] | None = None,
        *,
        latency: float = 0.0,
        not_modified: Literal["ignore", "reject"] = "ignore",
    ) -> None:
        self.clock = clock
        self.budgets = dict(budgets or {})
        self.latency = latency
        self.not_modified = not_modified
        self.records: list[WriteRecord] = []
        self.messages: dict[str, Message] = {}
        self.rate_limited = 0
        self.rate_limited_by_key: dict[str, int] = defaultdict(int)
        self.not_modified_errors = 0
        self.unchanged_finals = 0  # finalize calls that did not change the message's text
        self.protocol_errors: list[str] = []
        self.typing_calls = 0
        self._windows: dict[str, deque[float]] = defaultdict(deque)
        self._next_id = 0
        self._sinks = 0

    def sink(self, limits: SinkLimits, name: str | None = None) -> BudgetSink:
        """A new sink (one answer's target) drawing on this platform's budgets."""
        self._sinks += 1
        return BudgetSink(self, limits, name or f"sink{self._sinks}")

    def charge(self, keys: list[str], now: float) -> float | None:
        """Count a write against every budget in `keys`; the wait if one is exhausted."""
        retry_after = 0.0
        for key in keys:
            budget = self.budgets.get(key)
            if budget is None:
                continue
            window = self._windows[key]
            while window and window[0] <= now - budget.window + 1e-6:
                window.popleft()
            if len(window) >= budget.limit:
                retry_after = max(retry_after, window[0] + budget.window - now)
        if retry_after > 0:
            for key in keys:
                if key in self.budgets:
                    self.rate_limited_by_key[key] += 1
            self.rate_limited += 1
            return retry_after
        for key in keys:
            if key in self.budgets:
                self._windows[key].append(now)
        return None

    def new_id(self) -> str:
        self._next_id += 1
        return f"m{self._next_id}"


class BudgetSink:
    """One answer's target on a `Platform`; records everything, enforces budgets and length."""

    def __init__(self, platform: Platform, limits: SinkLimits, name: str) -> None:
        self.platform = platform
        self.name = name
        self._limits = limits
        self.message_ids: list[str] = []
        self.latency: float | None = None  # None: the platform's latency
        self.in_flight = 0
        self.max_in_flight = 0
        self._errors: dict[WriteKind, list[SinkError]] = defaultdict(list)

    @property
    def limits(self) -> SinkLimits:
        return self._limits

    def fail_next(self, kind: WriteKind, error: SinkError, times: int = 1) -> None:
        """Answer the next `times` writes of `kind` with `error` (nothing is charged)."""
        self._errors[kind].extend([error] * times)

    def texts(self) -> list[str]:
        """What users see, one text per message, in posting order."""
        return [self.platform.messages[mid].text for mid in self.message_ids]

    def all_final(self) -> bool:
        """Whether every message of this sink received its final write."""
        return all(self.platform.messages[mid].final for mid in self.message_ids)

    def records(self) -> list[WriteRecord]:
        return [record for record in self.platform.records if record.sink == self.name]

    async def show_typing(self) -> None:
        self.platform.typing_calls += 1
        await self._write(WriteKind.TYPING, None, None)

    async def post(self, text: str) -> str:
        message_id = await self._write(WriteKind.POST, None, text)
        assert message_id is not None
        return message_id

    async def edit(self, message_id: str, text: str) -> None:
        await self._write(WriteKind.EDIT, message_id, text)

    async def finalize(self, message_id: str, text: str) -> None:
        await self._write(WriteKind.FINAL, message_id, text)

    async def _write(self, kind: WriteKind, message_id: str | None, text: str | None) -> str | None:
        platform = self.platform
        received = platform.clock.now()
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self._errors[kind]:
                error = self._errors[kind].pop(0)
                self._record(kind, message_id, text, received, "injected")
                raise error
            if text is not None:
                self._check_text(kind, message_id, text, received)
            keys = [scope.key for scope in self._limits.scopes_for(kind)]
            retry_after = platform.charge(keys, received)
            if retry_after is not None:
                self._record(kind, message_id, text, received, "rate_limited")
                raise SinkRateLimited(retry_after)
            latency = platform.latency if self.latency is None else self.latency
            if latency > 0:
                await platform.clock.sleep(latency)
            message_id = self._apply(kind, message_id, text)
            self._record(kind, message_id, text, received, "ok")
            return message_id
        finally:
            self.in_flight -= 1

    def _check_text(self, kind: WriteKind, message_id: str | None, text: str, now: float) -> None:
        platform = self.platform
        reason: str | None = None
        if not text.strip():
            reason = "message text is empty"
        elif self._limits.measure(text) > self._limits.max_length:
            reason = "message is too long"
        elif kind is not WriteKind.POST:
            message = platform.messages.get(message_id or "")
            if message is None or message.sink != self.name:
                reason = "message not found"
            elif message.final:
                reason = "message was already finalized"
                platform.protocol_errors.append(f"{kind.value} after finalize of {message_id}")
            elif (
                kind is WriteKind.EDIT
                and message.text == text
                and platform.not_modified == "reject"
            ):
                platform.not_modified_errors += 1
                reason = "message is not modified"
        if reason is not None:
            self._record(kind, message_id, text, now, "rejected")
            raise SinkRejected(reason)

    def _apply(self, kind: WriteKind, message_id: str | None, text: str | None) -> str | None:
        messages = self.platform.messages
        if kind is WriteKind.POST:
            assert text is not None
            message_id = self.platform.new_id()
            messages[message_id] = Message(message_id, self.name, text, versions=[text])
            self.message_ids.append(message_id)
            if not self._limits.supports_edit:
                messages[message_id].final = True
        elif kind in (WriteKind.EDIT, WriteKind.FINAL):
            assert text is not None and message_id is not None
            message = messages[message_id]
            if kind is WriteKind.FINAL and message.text == text:
                self.platform.unchanged_finals += 1
            message.text = text
            message.versions.append(text)
            message.final = kind is WriteKind.FINAL
        return message_id

    def _record(
        self,
        kind: WriteKind,
        message_id: str | None,
        text: str | None,
        received: float,
        outcome: Outcome,
    ) -> None:
        done = self.platform.clock.now()
        record = WriteRecord(self.name, kind, message_id, text or "", received, done, outcome)
        self.platform.records.append(record)
