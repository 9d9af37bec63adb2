"""ChatService: takes messages in (the accept step), then answers or runs the command."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

from core.answer_slots import AnswerSlots, SlotsFull
from core.answering import Answerer
from core.command_replies import CommandReplies
from core.commands import help_text, parse_command
from core.context import TokenCounter
from core.conversation import RUNNING_THREAD, ConversationKey, Inbound
from core.errors import LLMError
from core.llm import ChatCompletionsClient
from core.metrics import QUEUE_DEPTH
from core.outcome import Outcome, ServiceConfig
from core.recovery import Recovery
from core.routing import Accepted, Routed, Router
from core.stopping import STOP_REPLIES, ActiveAnswers, StopResult
from core.store import HistoryStore
from core.streaming import ReplySink, StreamDriver
from core.user_rate import UserRate, rate_reply

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Prepared:
    """What an adapter supplies once a message is routed: where to answer, and who asked."""

    sink: ReplySink
    author_name: str | None = None
    """The author's display name, when the adapter looked it up after routing."""
    key: ConversationKey | None = None
    """A new conversation's new home (a thread the adapter opened for it)."""


Prepare = Callable[[Routed], Awaitable[Prepared | None]]
"""Called once a message is routed (its place reserved): may await the platform; None gives up."""


class ChatService:
    """Turns each accepted `Inbound` into a streamed, stored answer (or a command's reply).

    Adapters call `accept(inbound)` as soon as a platform event arrives, before awaiting
    anything: that holds the event and fixes the message's place in its chat's order. Then
    `answer(accepted, prepare)` (as a task) routes it, lets the adapter prepare the sink,
    waits for the message's turn in its conversation, and answers. Each platform event is
    answered once, in the order the messages of a conversation arrived.
    """

    def __init__(
        self,
        *,
        store: HistoryStore,
        llm: ChatCompletionsClient,
        driver: StreamDriver,
        counter: TokenCounter,
        config: ServiceConfig,
    ) -> None:
        self._driver = driver
        self._config = config
        self._store = store
        self._router = Router(store, history_turns=config.history_turns)
        self._commands = CommandReplies(store, config)
        self._active = ActiveAnswers()
        self._stops: dict[tuple[str, str], StopResult] = {}  # /stop results, until replied
        self._rate = UserRate(config.user_rate)
        self._slots = AnswerSlots(config.max_answers, config.user_answers, config.user_queue)
        self._answerer = Answerer(
            store=store,
            llm=llm,
            driver=driver,
            counter=counter,
            config=config,
            active=self._active,
        )
        self.recovery = Recovery(
            store, driver, owner=config.instance_id, stale_after=config.stale_after
        )
        """Where channels register how to finish answers a dead process left streaming."""

    def accept(self, inbound: Inbound) -> Accepted | None:
        """Take `inbound` in now (no await); None when this process already holds its event.

        An accepted message must then be given to `answer` (which counts it as queued until
        it is answered or dropped)."""
        accepted = self._router.accept(inbound)
        if accepted is None:
            return None
        QUEUE_DEPTH.inc()
        command = parse_command(inbound.text)
        if command is not None and command.name == "stop":
            # Now, not in the conversation's turn: that turn comes after the answer it stops.
            self._stops[accepted.claim] = self._active.stop_for(inbound.key, inbound.author_id)
        return accepted

    async def answer(self, accepted: Accepted, prepare: Prepare) -> Outcome:
        """Route, prepare, wait for the turn and answer; never raises but cancellation."""
        outcome = Outcome()
        try:
            return await self._answer(accepted, prepare, outcome)
        finally:
            QUEUE_DEPTH.dec()
            self._stops.pop(accepted.claim, None)

    async def _answer(self, accepted: Accepted, prepare: Prepare, outcome: Outcome) -> Outcome:
        sink: ReplySink | None = None
        try:
            routed = await accepted.route()
            if routed is None:
                outcome.skipped = "not for the bot or a duplicate"
                return outcome
            async with routed:
                prepared = await prepare(routed)
                if prepared is None:
                    outcome.skipped = "no place to answer"
                    return outcome
                sink = prepared.sink
                if prepared.key is not None and prepared.key != routed.key:
                    routed.move_to(prepared.key)
                await routed.turn()
                outcome.key = routed.key
                await self._run(routed, prepared, outcome)
        except Exception as exc:  # one broad catch per inbound message
            inbound = accepted.inbound
            log.exception("failed to handle message %s in %s", inbound.message_id, inbound.key)
            outcome.error = type(exc).__name__
            if sink is not None:
                await self._apologise(sink, exc)
        return outcome

    async def handle(self, inbound: Inbound, sink: ReplySink) -> Outcome:
        """`accept` and `answer` in one call, answering in `sink` (console, slash commands)."""
        accepted = self.accept(inbound)
        if accepted is None:
            return Outcome(skipped="duplicate")

        async def prepare(routed: Routed) -> Prepared:
            return Prepared(sink)

        return await self.answer(accepted, prepare)

    @property
    def shutdown_grace(self) -> float:
        """Seconds answers get at shutdown: first to finish, then to close with a note."""
        return self._config.shutdown_grace

    def stop(self, key: ConversationKey, *, requested_by: str | None = None) -> bool:
        """Stop the answer streaming in conversation `key` (a running-conversation key: any in
        that chat). It ends with its text so far and a "Stopped" note, stored as partial; the
        model's stream is closed. False when nothing was streaming there."""
        return self._active.stop(key, requested_by)

    async def command(self, text: str, key: ConversationKey | None) -> str | None:
        """The reply to a command given outside a conversation's messages (a slash command).

        None when `text` is not a command; commands other than /help need `key`.
        """
        command = parse_command(text)
        if command is None:
            return None
        if command.name == "help":
            return help_text()
        if key is None:
            raise ValueError(f"/{command.name} needs a conversation")
        return await self._commands.reply(command, key)

    async def set_context(self, key: ConversationKey, note: str | None) -> None:
        """Tell the model `note` in every later answer of `key` (None: nothing any more)."""
        await self._store.update_meta(key, context_note=note)

    async def _run(self, routed: Routed, prepared: Prepared, outcome: Outcome) -> None:
        inbound = routed.inbound
        if prepared.author_name is not None:
            inbound = replace(inbound, author_name=prepared.author_name)
        command = parse_command(inbound.text)
        if command is None and (wait := self._rate.take(routed.key.platform, inbound.author_id)):
            # Over the user's rate: say so (no model call), and claim the event as handled.
            claim = routed.claim_on_store
            if claim is not None and not await self._router.claim(claim):
                outcome.skipped = "duplicate"
                return
            outcome.skipped = "rate limited"
            outcome.text = rate_reply(self._rate.per_minute, wait)
            outcome.results.append(await self._driver.open(prepared.sink).finish(outcome.text))
            return
        if command is None:
            user = (routed.key.platform, inbound.author_id)
            try:
                async with self._slots.slot(user):
                    await self._answerer.answer(
                        inbound, routed.key, prepared.sink, outcome, claim=routed.claim_on_store
                    )
            except SlotsFull as full:
                outcome.skipped = "too many waiting"
                outcome.text = (
                    f"⏳ You already have {full.waiting} questions waiting for an answer, so I "
                    "did not take this one. Send it again once one of them is answered."
                )
                outcome.results.append(
                    await self._driver.open(prepared.sink).finish(outcome.text)
                )
            return
        claim = routed.claim_on_store
        if claim is not None and not await self._router.claim(claim):
            outcome.skipped = "duplicate"
            return
        if command.name == "stop":
            stopped = self._stops.pop(routed.claim, StopResult.NOTHING)
            reply = STOP_REPLIES[stopped]
        else:
            reply = await self._commands.reply(command, routed.key)
        outcome.text = reply
        outcome.results.append(await self._driver.open(prepared.sink).finish(reply))

    async def _apologise(self, sink: ReplySink, exc: BaseException) -> None:
        """Leave the user a short explanation; swallow a second failure."""
        note = exc.user_note if isinstance(exc, LLMError) else "something went wrong on my side"
        retry = "" if isinstance(exc, LLMError) and not exc.retryable else " Please try again."
        try:
            await self._driver.open(sink).finish(f"⚠️ Sorry, {note}.{retry}")
        except Exception:
            log.exception("could not tell the user about the failure")


__all__ = ["RUNNING_THREAD", "ChatService", "Outcome", "Prepare", "Prepared", "ServiceConfig"]
