"""The stream driver: turns a growing answer into paced post, edit and finalize calls on a sink.

One `ReplyStream` per answer, one writer task per stream. `update(text)` only records the latest
text and wakes the writer (latest wins: intermediate states are dropped, never queued). The writer
posts the first visible text at FIRST priority, then edits it at EDIT priority no more often than
`limits.min_edit_interval`, skipping writes whose text did not change. When the text outgrows
`limits.max_length`, the full part is finalized at a good boundary and the rest continues in a new
message. `finish(text)` writes every remaining part at FINAL priority and retries rate limits until
`policy.final_deadline`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from core.clock import Clock
from core.errors import SinkError, SinkRateLimited, SinkRejected
from core.streaming.pacer import Pacer, Priority
from core.streaming.policy import StreamPolicy
from core.streaming.sink import ReplySink, SinkLimits, WriteKind
from core.streaming.split import Cut, GrowingPreview, cut_full_part, finish_text

log = logging.getLogger(__name__)

_NON_SPACE = re.compile(r"\S")


@dataclass(frozen=True, slots=True)
class StreamResult:
    """How one answer ended; times are on the driver's clock."""

    message_ids: list[str] = field(default_factory=list)
    delivered: bool = False
    error: SinkError | None = None
    writes: int = 0
    first_visible_at: float | None = None
    final_visible_at: float | None = None
    rate_limited: int = 0


class _Stopped(Exception):
    """The answer cannot continue (the sink refused it or a final write gave up)."""


class StreamDriver:
    """Opens one `ReplyStream` per answer; all streams share one `Pacer`."""

    def __init__(
        self, pacer: Pacer, clock: Clock | None = None, policy: StreamPolicy | None = None
    ) -> None:
        self.pacer = pacer
        self.clock = clock or pacer.clock
        self.policy = policy or pacer.policy

    def open(self, sink: ReplySink) -> ReplyStream:
        """A new stream writing to `sink`; nothing is written before `start`/`update`/`finish`."""
        return ReplyStream(sink, self.pacer, self.clock, self.policy)


class ReplyStream:
    """One answer growing in place on one sink.

    Call `await start()` when the question arrives (typing indicator), `update(text)` with the
    whole text after every model delta, and `await finish(text)` exactly once at the end, even
    after a model error (pass the text plus any note). `finish` returns a `StreamResult` and never
    raises sink errors: a refused or vanished target ends the answer quietly, rate limits are
    retried until `policy.final_deadline`. Under a tight shared budget `finish` can take minutes.
    `await abort()` stops at once without writing (shutdown). `finish("")` writes nothing.
    """

    def __init__(self, sink: ReplySink, pacer: Pacer, clock: Clock, policy: StreamPolicy) -> None:
        self._sink = sink
        self._limits: SinkLimits = sink.limits
        self._pacer = pacer
        self._clock = clock
        self._policy = policy
        self._text = ""
        self._base = 0  # where the open message's body starts in the full text
        self._reopen = ""  # markup the open message starts with (a reopened fence, ...)
        self._message_id: str | None = None  # the open message, not finalized yet
        self._shown: str | None = None  # last text written to the open message
        self._last_write_at = -math.inf
        self._message_ids: list[str] = []
        self._writes = 0
        self._rate_limited = 0
        self._error: SinkError | None = None
        self._delivered = False
        self._first_visible_at: float | None = None
        self._final_visible_at: float | None = None
        self._deadline = math.inf
        self._finish_requested = False
        self._aborted = False
        self._wake = asyncio.Event()
        self._finishing: asyncio.Future[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._typing: asyncio.Task[None] | None = None
        self._typing_in_call = False
        self._view = GrowingPreview(self._limits.max_length, self._limits.measure)
        self._message: tuple[str, int, str, str] | None = None  # (text, base, reopen, message)
        self._watchers: list[Callable[[], None]] = []

    # -- public API --------------------------------------------------------------------------

    async def start(self) -> None:
        """Begin: show typing (paced, repeated) until the first text is visible; returns at once."""
        self._ensure_writer()
        if self._typing is None and self._typing_wanted():
            self._typing = asyncio.get_running_loop().create_task(self._typing_loop())

    def update(self, text: str) -> None:
        """The whole answer so far (not a delta); returns at once, the writer catches up."""
        if self._finish_requested or self._aborted or self._error is not None:
            return
        self._text = text
        self._ensure_writer()
        self._wake.set()

    async def finish(self, text: str) -> StreamResult:
        """Deliver the final `text` completely (all parts, FINAL priority) and report."""
        if not (self._finish_requested or self._aborted):
            self._finish_requested = True
            self._text = text
            self._deadline = self._clock.now() + self._policy.final_deadline
            self._ensure_writer()
            assert self._finishing is not None
            self._finishing.set_result(None)
            self._wake.set()
        writer = self._writer
        if writer is not None:
            try:
                await asyncio.wait({writer})
            except asyncio.CancelledError:
                writer.cancel()
                raise
        await self._stop_typing()
        return self.result()

    async def abort(self) -> None:
        """Stop at once: no further writes (shutdown); the answer is reported undelivered."""
        self._aborted = True
        for task in (self._writer, self._typing):
            if task is not None and not task.done():
                task.cancel()
        for task in (self._writer, self._typing):
            if task is not None:
                await asyncio.wait({task})

    def adopt(self, message_id: str) -> None:
        """Continue in a message posted earlier (by a process that died): `finish` finalizes
        it with the first part instead of posting one. Call before anything else.
        """
        if self._writer is not None or self._message_ids:
            raise RuntimeError("adopt() must come before any write")
        self._message_id = message_id
        self._message_ids.append(message_id)
        self._first_visible_at = self._clock.now()

    def watch(self, callback: Callable[[], None]) -> None:
        """Call `callback` (synchronously) after every write that changed what the user sees."""
        self._watchers.append(callback)

    def open_part(self) -> tuple[str | None, str]:
        """The message still open (None before the first post) and the whole text it is to
        hold so far (the answer's text from where that message starts).
        """
        return self._message_id, self._message_text()

    def result(self) -> StreamResult:
        """What has happened so far."""
        return StreamResult(
            message_ids=list(self._message_ids),
            delivered=self._delivered,
            error=self._error,
            writes=self._writes,
            first_visible_at=self._first_visible_at,
            final_visible_at=self._final_visible_at,
            rate_limited=self._rate_limited,
        )

    # -- the writer ------------------------------------------------------------------------

    def _ensure_writer(self) -> asyncio.Task[None]:
        if self._writer is None:
            loop = asyncio.get_running_loop()
            self._finishing = loop.create_future()
            self._writer = loop.create_task(self._run())
        return self._writer

    async def _run(self) -> None:
        try:
            await self._stream()
            if self._finish_requested:
                await self._deliver()
        except _Stopped:
            pass
        except Exception as exc:  # a bug must not take the service down
            log.exception("stream writer failed")
            self._fail(SinkRejected(f"stream writer failed: {exc!r}"))
        finally:
            self._cancel_typing_if_idle()

    async def _stream(self) -> None:
        """Intermediate writes until finish is requested."""
        while not self._finish_requested:
            await self._wake.wait()
            self._wake.clear()
            if self._finish_requested:
                return
            await self._step()

    async def _step(self) -> None:
        while (cut := self._next_cut(final=False)) is not None:
            await self._freeze(cut)
        if not self._limits.supports_edit:
            return
        preview = self._preview()
        if not preview or preview == self._shown:
            return
        kind = WriteKind.POST if self._message_id is None else WriteKind.EDIT
        priority = Priority.FIRST if kind is WriteKind.POST else Priority.EDIT
        if not await self._wait_turn(kind, priority):
            return
        preview = self._preview()  # the text may have grown while we waited: latest wins
        if not preview or preview == self._shown:
            return
        try:
            await self._call(kind, preview)
        except SinkRateLimited:
            self._wake.set()  # keep the latest text; the paused scope delays the retry

    async def _wait_turn(self, kind: WriteKind, priority: Priority) -> bool:
        """Wait for the edit interval and a token; False if finish came first."""
        turn = asyncio.ensure_future(self._turn(kind, priority))
        assert self._finishing is not None
        try:
            await asyncio.wait({turn, self._finishing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not turn.done():
                turn.cancel()
                await asyncio.wait({turn})
        if turn.cancelled():
            return False
        turn.result()
        if self._finish_requested:
            # Granted just as the answer finished: the final write takes over, so the token
            # goes back rather than being lost to a write that will not happen.
            self._pacer.refund(self._limits.scopes_for(kind))
            return False
        return True

    async def _turn(self, kind: WriteKind, priority: Priority) -> None:
        if kind is WriteKind.EDIT:
            delay = self._last_write_at + self._limits.min_edit_interval - self._clock.now()
            if delay > 0:
                await self._clock.sleep(delay)
        await self._pacer.acquire(self._limits.scopes_for(kind), priority)

    async def _deliver(self) -> None:
        """Every remaining part at FINAL priority."""
        while (cut := self._next_cut(final=True)) is not None:
            await self._freeze(cut)
        message = self._message_text()
        last = finish_text(message)
        if message[len(self._reopen) :].strip():
            await self._write_final(last)
        elif self._message_id is not None:
            await self._write_final(self._shown or last)
        self._delivered = True
        self._final_visible_at = self._clock.now()

    async def _freeze(self, cut: Cut) -> None:
        await self._write_final(cut.part)
        self._base += cut.resume - len(self._reopen)
        self._reopen = cut.reopen

    async def _write_final(self, text: str) -> None:
        """Close the open message with `text`, or post `text` as a whole message.

        A sink with `finalize_unchanged=False` gets no finalize call when `text` is exactly what
        the message already shows (a short answer then costs one post, not a post and an edit).
        """
        deadline = min(self._deadline, self._clock.now() + self._policy.final_deadline)
        if self._message_id is None:
            await self._final_call(WriteKind.POST, text, deadline)
            if not self._limits.supports_edit:
                self._close_message()
                return
        if self._limits.finalize_unchanged or text != self._shown:
            await self._final_call(WriteKind.FINAL, text, deadline)
        self._close_message()  # final either way: no write changes this message again

    async def _final_call(self, kind: WriteKind, text: str, deadline: float) -> None:
        """One write at FINAL priority, retried after rate limits until `deadline`."""
        attempts = 0
        last_error: SinkError | None = None
        while True:
            if self._clock.now() >= deadline or attempts > self._policy.max_final_retries:
                self._fail(last_error or SinkRejected("final write deadline passed"))
                raise _Stopped
            if not await self._acquire_until(kind, deadline):
                continue
            try:
                await self._call(kind, text)
                return
            except SinkRateLimited as exc:
                attempts += 1
                last_error = exc

    async def _acquire_until(self, kind: WriteKind, deadline: float) -> bool:
        scopes = self._limits.scopes_for(kind)
        grant = asyncio.ensure_future(self._pacer.acquire(scopes, Priority.FINAL))
        timer = asyncio.ensure_future(self._clock.sleep(deadline - self._clock.now()))
        try:
            await asyncio.wait({grant, timer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (grant, timer):
                if not task.done():
                    task.cancel()
            await asyncio.wait({grant, timer})
        if grant.cancelled():
            return False
        grant.result()
        return True

    async def _call(self, kind: WriteKind, text: str) -> None:
        """One sink call; records success, pauses the scope on 429, stops the answer on refusal."""
        try:
            if kind is WriteKind.POST:
                message_id = await self._sink.post(text)
                self._message_id = message_id
                self._message_ids.append(message_id)
                if self._first_visible_at is None:
                    self._first_visible_at = self._clock.now()
                    self._cancel_typing_if_idle()
            else:
                assert self._message_id is not None
                if kind is WriteKind.EDIT:
                    await self._sink.edit(self._message_id, text)
                else:
                    replaced = await self._sink.finalize(self._message_id, text)
                    if replaced is not None and replaced != self._message_id:
                        self._message_ids[self._message_ids.index(self._message_id)] = replaced
                        self._message_id = replaced
        except SinkRateLimited as exc:
            self._rate_limited += 1
            scopes = self._limits.scopes_for(kind)
            if exc.scopes is not None:
                scopes = tuple(scope for scope in scopes if scope.key in exc.scopes)
            self._pacer.pause(scopes, exc.retry_after)
            raise
        except SinkError as exc:
            log.info("sink refused a %s write: %s", kind.value, exc)
            self._fail(exc)
            raise _Stopped from exc
        except Exception as exc:
            log.exception("sink raised an unexpected error on %s", kind.value)
            self._fail(SinkRejected(f"unexpected sink error: {exc!r}"))
            raise _Stopped from exc
        self._writes += 1
        self._shown = text
        self._last_write_at = self._clock.now()
        for watcher in self._watchers:
            watcher()

    # -- text state ------------------------------------------------------------------------

    def _message_text(self) -> str:
        cached = self._message
        if (
            cached is not None
            and cached[0] is self._text
            and cached[1] == self._base
            and cached[2] is self._reopen
        ):
            return cached[3]
        message = self._reopen + self._text[self._base :]
        self._message = (self._text, self._base, self._reopen, message)
        return message

    def _next_cut(self, *, final: bool) -> Cut | None:
        limits = self._limits
        message = self._message_text()
        if not final and limits.max_length >= 1 and self._view.fits(message):
            return None  # the common case, without measuring the whole message again
        # a final cut also counts the fence `finish_text` closes the last part with
        return cut_full_part(
            message,
            limits.max_length,
            limits.measure,
            keep=len(self._reopen),
            final=final,
        )

    def _preview(self) -> str:
        """`visible_preview` of the open message; work in proportion to the text added."""
        message = self._message_text()
        if _NON_SPACE.search(message, len(self._reopen)) is None:
            return ""
        return self._view.preview(message)

    def _close_message(self) -> None:
        self._message_id = None
        self._shown = None
        self._last_write_at = -math.inf

    def _fail(self, error: SinkError) -> None:
        if self._error is None:
            self._error = error

    # -- typing ------------------------------------------------------------------------------

    def _typing_wanted(self) -> bool:
        return (
            self._first_visible_at is None
            and not self._aborted
            and self._error is None
            and not self._delivered
        )

    async def _typing_loop(self) -> None:
        scopes = self._limits.typing_scopes
        while self._typing_wanted():
            await self._pacer.acquire(scopes, Priority.TYPING)
            if not self._typing_wanted():
                return
            self._typing_in_call = True
            try:
                await self._sink.show_typing()
            except SinkRateLimited as exc:
                self._pacer.pause(scopes, exc.retry_after)
            except Exception as exc:
                log.info("typing indicator failed, not showing it again: %r", exc)
                return
            finally:
                self._typing_in_call = False
            if not self._typing_wanted():
                return
            await self._clock.sleep(self._policy.typing_interval)

    def _cancel_typing_if_idle(self) -> None:
        task = self._typing
        if task is not None and not task.done() and not self._typing_in_call:
            task.cancel()

    async def _stop_typing(self) -> None:
        task = self._typing
        if task is not None:
            if not task.done() and not self._typing_in_call:
                task.cancel()
            await _settle(task)


async def _settle(task: Awaitable[None]) -> None:
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
