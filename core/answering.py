"""Answering: store the user turn, stream the model's answer to the sink, store the answer."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from core.answer_report import AnswerTimes, answer_finished, answer_started
from core.context import Budget, ContextLimits, Rebuild, TokenCounter, Window, build_window
from core.conversation import ConversationKey, Inbound, Role, Turn, TurnStatus
from core.conversation_params import effective_params
from core.errors import LLMContextTooLong, LLMError, StoreError
from core.journal import AnswerJournal
from core.llm import (
    ChatCompletionsClient,
    ChatParams,
    ChatRequest,
    ChoiceFinished,
    ContentDelta,
    UsageReport,
    pseudonymize_user,
    sanitize_name,
)
from core.outcome import Outcome, ServiceConfig
from core.stopping import STOPPED_NOTE, ActiveAnswers, StopSignal
from core.store import HistoryStore
from core.streaming import ReplySink, ReplyStream, ResumableSink, StreamDriver, finish_text

log = logging.getLogger(__name__)

TRUNCATION_NOTE = (
    "_Older messages of this conversation no longer fit the model's context window, "
    "so I left them out._"
)
EMPTY_NOTE = "_(The model returned an empty answer.)_"
FINISH_NOTES: dict[str, str] = {
    "length": "⚠️ _The answer was cut off: it reached the length limit._",
    "content_filter": "⚠️ _The answer was stopped by the provider's content filter._",
}


@dataclass(slots=True)
class _Answer:
    """The state of one answer while it streams: text, finish reason and stream per choice."""

    choices: int
    streams: dict[int, ReplyStream] = field(default_factory=dict)
    texts: dict[int, str] = field(default_factory=dict)
    finish: dict[int, str] = field(default_factory=dict)
    usage: UsageReport | None = None
    error: BaseException | None = None
    stop: StopSignal | None = None
    times: AnswerTimes = field(default_factory=lambda: AnswerTimes(time.monotonic()))

    @property
    def stopped(self) -> bool:
        """Someone stopped the answer before the model finished it."""
        return self.stop is not None and self.stop.requested and self.finish.get(0) is None

    def status(self) -> TurnStatus:
        """Complete when choice 0 finished without error; partial with text or when stopped;
        else failed."""
        if self.stopped:
            return TurnStatus.PARTIAL
        if self.error is None and self.finish.get(0) is not None:
            return TurnStatus.COMPLETE
        return TurnStatus.PARTIAL if self.texts.get(0) else TurnStatus.FAILED

    def restart(self) -> None:
        """Forget a failed attempt that showed nothing, to stream again into the same place."""
        self.texts.clear()
        self.finish.clear()
        self.usage = None
        self.error = None

    def final_text(self, index: int, notes_before: list[str]) -> str:
        """What choice `index` finally shows: its text and any notes on how it ended."""
        text = self.texts.get(index, "")
        notes = list(notes_before)
        reason = self.finish.get(index)
        if reason in FINISH_NOTES:
            notes.append(FINISH_NOTES[reason])
        if self.stopped and self.finish.get(index) is None:
            notes.append(STOPPED_NOTE)
        elif self.error is not None:
            notes.append(error_note(self.error, has_text=bool(text)))
        elif not text.strip():
            notes.append(EMPTY_NOTE)
        # Close an open code block or emphasis first, so the notes are not shown inside it.
        shown = finish_text(_labelled(text, index, self.choices)) if text else ""
        return "\n\n".join(part for part in (shown, *notes) if part)


class Answerer:
    """Answers one message in its conversation: the LLM stream shown on a sink, then stored."""

    def __init__(
        self,
        *,
        store: HistoryStore,
        llm: ChatCompletionsClient,
        driver: StreamDriver,
        counter: TokenCounter,
        config: ServiceConfig,
        active: ActiveAnswers | None = None,
    ) -> None:
        self._store = store
        self._active = active if active is not None else ActiveAnswers()
        self._llm = llm
        self._driver = driver
        self._counter = counter
        self._config = config
        self._alias_key = config.user_hash_key or secrets.token_bytes(32)
        self._limits = ContextLimits(store, context_window=config.context_window, counter=counter)

    async def answer(
        self,
        inbound: Inbound,
        key: ConversationKey,
        sink: ReplySink,
        outcome: Outcome,
        *,
        claim: tuple[str, str] | None,
    ) -> None:
        """Store the user turn, stream the model's answer into the sink, store the answer.

        `claim`: the event to claim in the transaction that stores the user turn (None when it
        was claimed before); a duplicate is reported in `outcome.skipped` and not answered.
        """
        user_turn = Turn(
            role=Role.USER,
            content=inbound.text,
            author_id=inbound.author_id,
            author_name=inbound.author_name,
            platform_message_ids=(inbound.message_id,),
            token_count=self._stored_count(inbound.text, self._config.params.model),
        )
        loaded = await self._store.append_and_load(
            key,
            user_turn,
            limit=self._config.history_turns,
            platform_message_ids=False,
            claim=claim,
        )
        if loaded is None:
            outcome.skipped = "duplicate"
            return
        meta = loaded.meta
        params = effective_params(self._config.params, meta)
        budget = await self._limits.budget(
            params.model, self._reply_budget(params), reply_fixed=_sends_max_tokens(params)
        )
        window = self._window(inbound, loaded.turns, meta, params, budget)
        if self._config.user_hash_key is not None:
            params = params.with_overrides(
                user=pseudonymize_user(self._config.user_hash_key, key.platform, inbound.author_id)
            )
        answer = _Answer(choices=params.n or 1)
        journal = self._journal(key, sink)
        answer_started(key)
        try:
            with self._active.running(key, inbound.author_id) as answer.stop:
                await self._stream_and_store(
                    key,
                    meta,
                    params,
                    budget,
                    window,
                    lambda smaller: self._window(inbound, loaded.turns, meta, params, smaller),
                    sink,
                    answer,
                    outcome,
                    journal,
                )
        finally:
            if journal is not None:
                await journal.close()
            usage = answer.usage
            answer_finished(
                key,
                outcome,
                answer.times,
                completion_tokens=(
                    usage.completion_tokens
                    if usage is not None
                    else sum(self._counter.count(t, params.model) for t in answer.texts.values())
                ),
                prompt_tokens=usage.prompt_tokens if usage is not None else None,
                now=time.monotonic(),
            )

    async def _stream_and_store(
        self,
        key: ConversationKey,
        meta: Mapping[str, Any],
        params: ChatParams,
        budget: Budget,
        window: Window,
        rebuild: Rebuild,
        sink: ReplySink,
        answer: _Answer,
        outcome: Outcome,
        journal: AnswerJournal | None,
    ) -> None:
        """Stream every choice into the sink (once more, shorter, after a length rejection),
        finish each, and store choice 0."""
        notes_before: list[str] = []
        try:
            request = ChatRequest(tuple(window.messages), params)
            await self._stream(request, sink, answer, journal)
            if isinstance(answer.error, LLMContextTooLong) and not answer.texts:
                window = await self._retry_shorter(
                    answer.error, window, budget, rebuild, params, sink, answer, journal
                )
            answered = not isinstance(answer.error, LLMContextTooLong)
            if window.dropped and answered and not meta.get("truncation_noted"):
                notes_before.append(TRUNCATION_NOTE)
                await self._store.update_meta(key, truncation_noted=True)
            for index, stream in answer.streams.items():
                final = answer.final_text(index, notes_before if index == 0 else [])
                outcome.results.append(await stream.finish(final))
        except asyncio.CancelledError:
            # Shutting down: keep what the model said so far, and close what the user sees
            # with a note if that takes no longer than the shutdown grace.
            if answer.finish.get(0) is None:
                answer.error = answer.error or asyncio.CancelledError()
            await asyncio.shield(self._close_on_shutdown(answer, notes_before, outcome))
            await asyncio.shield(self._store_answer(key, answer, outcome, params.model, journal))
            raise
        if answer.usage is not None:
            self._counter.calibrate(params.model, window.prompt_tokens, answer.usage.prompt_tokens)
        try:
            await self._store_answer(key, answer, outcome, params.model, journal)
        except StoreError:
            # The user has the answer; only its copy in the history is missing.
            log.exception("could not store the answer in %s", key)
            outcome.stored = False

    async def _retry_shorter(
        self,
        error: LLMContextTooLong,
        window: Window,
        budget: Budget,
        rebuild: Rebuild,
        params: ChatParams,
        sink: ReplySink,
        answer: _Answer,
        journal: AnswerJournal | None,
    ) -> Window:
        """After `window` was rejected for its length (`error`): learn the model's limit and
        retry once with a window rebuilt for it, if that can help; returns the window last sent."""
        retry = await self._limits.retry_window(params.model, error, window, budget, rebuild)
        if not isinstance(retry, Window):
            answer.error = retry  # says what happened instead of "try again"
            return window
        answer.restart()
        await self._stream(ChatRequest(tuple(retry.messages), params), sink, answer, journal)
        if isinstance(answer.error, LLMContextTooLong):
            await self._limits.learn(params.model, answer.error, retry)
        return retry

    async def _close_on_shutdown(
        self, answer: _Answer, notes_before: list[str], outcome: Outcome
    ) -> None:
        """Finish every stream of an interrupted answer within the grace; abort the rest."""

        async def close(index: int, stream: ReplyStream) -> None:
            final = answer.final_text(index, notes_before if index == 0 else [])
            try:
                async with asyncio.timeout(self._config.shutdown_grace):
                    await stream.finish(final)
            except TimeoutError:
                await stream.abort()

        await asyncio.gather(*(close(i, s) for i, s in answer.streams.items()))
        outcome.results = [stream.result() for stream in answer.streams.values()]

    def _window(
        self,
        inbound: Inbound,
        turns: list[Turn],
        meta: Mapping[str, Any],
        params: ChatParams,
        budget: Budget,
    ) -> Window:
        """The messages to send: system prompt and the newest turns since /new that fit."""
        since = int(meta.get("since_turn", 0))
        current = turns[-1]
        prior = [t for t in turns[:-1] if t.id is not None and t.id > since]
        system = self._config.system_prompt
        note = meta.get("context_note")
        if isinstance(note, str) and note:
            system = f"{system}\n\n{note}" if system else note
        return build_window(
            system,
            prior,
            current,
            context_tokens=budget.context_tokens,
            reply_tokens=budget.reply_tokens,
            counter=self._counter,
            model=params.model,
            name_for=self._name_for(inbound),
        )

    async def _stream(
        self,
        request: ChatRequest,
        sink: ReplySink,
        answer: _Answer,
        journal: AnswerJournal | None,
    ) -> None:
        """Feed the model's deltas to one reply stream per choice; record how it ended."""
        if 0 not in answer.streams:
            answer.streams[0] = self._driver.open(sink)
            if journal is not None:
                journal.track(answer.streams[0], lambda: answer.texts.get(0, ""))
            await answer.streams[0].start()
        stop = answer.stop
        if stop is None:
            await self._consume(request, sink, answer)
            return
        if stop.requested:
            return
        consume = asyncio.ensure_future(self._consume(request, sink, answer))
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({consume, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            if not consume.done():
                # Stopped (or shutting down): cancelling closes the model's HTTP stream.
                consume.cancel()
            await asyncio.gather(consume, stopped, return_exceptions=True)
        if stop.requested and answer.finish.get(0) is None:
            log.info("answer in %s stopped by %s", stop.key, stop.by or "a request")

    async def _consume(self, request: ChatRequest, sink: ReplySink, answer: _Answer) -> None:
        """Read the model's stream into the answer's texts and reply streams."""
        times = answer.times
        times.asked = time.monotonic()
        try:
            async for event in self._llm.stream(request):
                if isinstance(event, ContentDelta):
                    if times.first_token is None:
                        times.first_token = time.monotonic()
                    text = answer.texts[event.choice] = answer.texts.get(event.choice, "") + (
                        event.text
                    )
                    stream = answer.streams.get(event.choice)
                    if stream is None:
                        stream = answer.streams[event.choice] = self._driver.open(sink)
                        await stream.start()
                    stream.update(_labelled(text, event.choice, answer.choices))
                elif isinstance(event, ChoiceFinished):
                    answer.finish[event.choice] = event.reason
                elif isinstance(event, UsageReport):
                    answer.usage = event
        except LLMError as exc:
            answer.error = exc
            log.warning("LLM call failed: %s", exc)
        except Exception as exc:
            answer.error = exc
            log.exception("answer stream failed")
        finally:
            times.ended = time.monotonic()

    def _journal(self, key: ConversationKey, sink: ReplySink) -> AnswerJournal | None:
        """A journal for an answer shown on a sink another process could finish, else None."""
        if not isinstance(sink, ResumableSink):
            return None
        config = self._config
        return AnswerJournal(
            self._store,
            key,
            owner=config.instance_id,
            target=sink.describe(),
            interval=config.save_interval,
            heartbeat=config.stale_after / 4,
        )

    async def _store_answer(
        self,
        key: ConversationKey,
        answer: _Answer,
        outcome: Outcome,
        model: str,
        journal: AnswerJournal | None,
    ) -> None:
        """Persist choice 0 as the assistant turn (complete, partial or failed)."""
        text, status = answer.texts.get(0, ""), answer.status()
        outcome.text, outcome.status = text, status
        outcome.finish_reason = answer.finish.get(0)
        outcome.error = type(answer.error).__name__ if answer.error else None
        if answer.stopped and answer.stop is not None:
            outcome.stopped, outcome.stopped_by = True, answer.stop.by
        message_ids = tuple(mid for result in outcome.results for mid in result.message_ids)
        turn = Turn(
            role=Role.ASSISTANT,
            content=text,
            status=status,
            platform_message_ids=message_ids,
            token_count=self._stored_count(text, model),
        )
        if journal is not None:
            await journal.close()
            outcome.saves = journal.saves
            if journal.taken_over:
                return  # another process finished this answer (this one seemed dead)
            if journal.turn_id is not None:
                await self._store.finish_answer(key, journal.turn_id, turn)
                return
        await self._store.append(key, turn)

    def _stored_count(self, text: str, model: str) -> int | None:
        """A turn's token count worth storing: exact counts only, so estimates stay calibrated."""
        return self._counter.count(text, model) if self._counter.is_exact(model) else None

    def _reply_budget(self, params: ChatParams) -> int:
        return params.max_completion_tokens or params.max_tokens or self._config.reply_tokens

    def _name_for(self, inbound: Inbound) -> Callable[[Turn], str | None]:
        """In group chats each user turn is named after its author, so speakers stay apart.

        A display name with nothing usable left (a script we cannot transliterate) falls back
        to a keyed alias of the author id, which only needs to be stable within one request.
        """
        if inbound.is_direct:
            return lambda turn: None
        platform = inbound.key.platform

        def name(turn: Turn) -> str | None:
            if turn.role is not Role.USER:
                return None
            readable = sanitize_name(turn.author_name)
            if readable is not None or turn.author_id is None:
                return readable
            return pseudonymize_user(self._alias_key, platform, turn.author_id)

        return name


def _sends_max_tokens(params: ChatParams) -> bool:
    """Whether the request carries a reply limit, which the server counts against the context."""
    return bool(params.max_completion_tokens or params.max_tokens)


def _labelled(text: str, index: int, choices: int) -> str:
    return f"**Answer {index + 1} of {choices}**\n\n{text}" if choices > 1 else text


def error_note(error: BaseException, *, has_text: bool) -> str:
    if isinstance(error, LLMError):
        note = error.user_note
    elif isinstance(error, asyncio.CancelledError):
        note = "the assistant was restarted"
    else:
        note = "something went wrong on my side"
    if has_text:
        return f"⚠️ _The answer stopped early: {note}._"
    if isinstance(error, LLMError) and not error.retryable:
        return f"⚠️ Sorry, {note}."  # says what happened; sending it again would not help
    return f"⚠️ Sorry, {note}. Please try again in a moment."


__all__ = ["Answerer", "error_note"]
