"""ChatService: answers one inbound message end to end (history, LLM stream, sink, store)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from core.commands import SETTABLE_PARAMS, Command, help_text, parse_command, parse_param_value
from core.context import TokenCounter, Window, build_window
from core.conversation import ConversationKey, Inbound, Role, Turn, TurnStatus
from core.errors import ConfigError, LLMError, StoreError
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
from core.locks import KeyedLocks
from core.store import HistoryStore
from core.streaming import ReplySink, ReplyStream, StreamDriver, StreamResult, finish_text

log = logging.getLogger(__name__)

RUNNING_THREAD = ""  # Inbound.key.thread for "the chat's running conversation" (DMs)
TRUNCATION_NOTE = (
    "_Older messages of this conversation no longer fit the model's context window, "
    "so I left them out._"
)
EMPTY_NOTE = "_(The model returned an empty answer.)_"
FINISH_NOTES: dict[str, str] = {
    "length": "⚠️ _The answer was cut off: it reached the length limit._",
    "content_filter": "⚠️ _The answer was stopped by the provider's content filter._",
}


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    """What the service needs from the settings, built once at start-up."""

    system_prompt: str
    params: ChatParams
    context_window: int
    reply_tokens: int
    history_turns: int = 200
    user_hash_key: bytes | None = None
    shutdown_grace: float = 3.0
    """Seconds an answer interrupted by shutdown gets to show its text and a note."""


@dataclass(slots=True)
class Outcome:
    """What one handled message led to; returned for callers and tests."""

    key: ConversationKey | None = None
    skipped: str | None = None
    text: str = ""
    status: TurnStatus | None = None
    finish_reason: str | None = None
    error: str | None = None
    stored: bool = True
    results: list[StreamResult] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Route:
    """Where a message goes: its conversation, and the branch to copy when it starts one."""

    key: ConversationKey
    branch_of: ConversationKey | None = None
    upto: int | None = None

    @property
    def claimed(self) -> bool:
        """A branch claims its event before it is routed (it writes before any user turn)."""
        return self.branch_of is not None


@dataclass(slots=True)
class _Answer:
    """The state of one answer while it streams: text, finish reason and stream per choice."""

    choices: int
    streams: dict[int, ReplyStream] = field(default_factory=dict)
    texts: dict[int, str] = field(default_factory=dict)
    finish: dict[int, str] = field(default_factory=dict)
    usage: UsageReport | None = None
    error: BaseException | None = None

    def status(self) -> TurnStatus:
        """Complete when choice 0 finished without error; partial with text; else failed."""
        if self.error is None and self.finish.get(0) is not None:
            return TurnStatus.COMPLETE
        return TurnStatus.PARTIAL if self.texts.get(0) else TurnStatus.FAILED

    def final_text(self, index: int, notes_before: list[str]) -> str:
        """What choice `index` finally shows: its text and any notes on how it ended."""
        text = self.texts.get(index, "")
        notes = list(notes_before)
        reason = self.finish.get(index)
        if reason in FINISH_NOTES:
            notes.append(FINISH_NOTES[reason])
        if self.error is not None:
            notes.append(_error_note(self.error, has_text=bool(text)))
        elif not text.strip():
            notes.append(EMPTY_NOTE)
        # Close an open code block or emphasis first, so the notes are not shown inside it.
        shown = finish_text(_labelled(text, index, self.choices)) if text else ""
        return "\n\n".join(part for part in (shown, *notes) if part)


class ChatService:
    """Turns an `Inbound` into a streamed, stored answer on a `ReplySink`."""

    def __init__(
        self,
        *,
        store: HistoryStore,
        llm: ChatCompletionsClient,
        driver: StreamDriver,
        counter: TokenCounter,
        config: ServiceConfig,
    ) -> None:
        self._store = store
        self._llm = llm
        self._driver = driver
        self._counter = counter
        self._config = config
        self._locks = KeyedLocks()
        self._alias_key = config.user_hash_key or secrets.token_bytes(32)

    async def has_conversation(self, key: ConversationKey) -> bool:
        """Whether `key` has stored turns, i.e. the bot has taken part in that conversation.

        Adapters use it to answer unmentioned messages in a thread the bot is already in.
        """
        return bool(await self._store.recent(key, limit=1, platform_message_ids=False))

    async def conversation_of(
        self,
        platform: str,
        message_id: str,
        *,
        space: str | None = None,
        channel: str | None = None,
    ) -> ConversationKey | None:
        """The conversation a platform message (the user's or the bot's) belongs to, or None.

        Adapters use it to decide whether a reply to `message_id` continues a conversation.
        """
        found = await self._store.find_turn(platform, message_id, space=space, channel=channel)
        return None if found is None else found[0]

    async def handle(self, inbound: Inbound, sink: ReplySink) -> Outcome:
        """Answer `inbound` in `sink`; never raises (one broad catch per inbound message).

        Order: messages of one chat are routed to their conversation one at a time, in arrival
        order, and each takes its place in that conversation's queue before the next is routed;
        so a conversation's messages are answered in the order they arrived. Each platform event
        is answered once: an ordinary message claims its event id in the transaction that stores
        it; commands and branches claim it before they write anything.
        """
        outcome = Outcome()
        try:
            claim = (inbound.key.platform, _event_id(inbound))
            command = parse_command(inbound.text)
            chat = (inbound.key.platform, inbound.key.space, inbound.key.channel)
            async with self._locks.hold(chat):
                route = await self._route(inbound, claim)
                turn = self._locks.reserve(route.key) if route is not None else None
            if route is None or turn is None:
                outcome.skipped = "duplicate"
                return outcome
            async with turn:
                outcome.key = route.key
                if route.branch_of is not None and route.upto is not None:
                    await self._copy_branch(route.branch_of, route.key, route.upto)
                if command is not None:
                    if not route.claimed and not await self._store.claim_event(*claim):
                        outcome.skipped = "duplicate"
                        return outcome
                    await self._run_command(command, route.key, sink, outcome)
                else:
                    await self._answer(
                        inbound, route.key, sink, outcome, claim=None if route.claimed else claim
                    )
        except Exception as exc:  # one broad catch per inbound message
            log.exception("failed to handle message %s in %s", inbound.message_id, inbound.key)
            outcome.error = type(exc).__name__
            await self._apologise(sink, exc)
        return outcome

    async def _route(self, inbound: Inbound, claim: tuple[str, str]) -> _Route | None:
        """Which conversation `inbound` belongs to; None when it is a duplicate branch.

        A reply continues the conversation of the message it replies to; in a direct chat a
        reply to an older message starts a branch from that point, which becomes the chat's
        running conversation at once (so the messages after it follow the branch).
        """
        if inbound.reply_to:
            found = await self._store.find_turn(
                inbound.key.platform,
                inbound.reply_to,
                space=inbound.key.space,
                channel=inbound.key.channel,
            )
            if found is not None:
                key, turn_id = found
                if not inbound.is_direct:
                    return _Route(key)
                latest = await self._store.recent(key, limit=1, platform_message_ids=False)
                if not latest or latest[-1].id == turn_id:
                    return _Route(key)
                if not await self._store.claim_event(*claim):
                    return None
                base = key.thread.split("~", 1)[0]
                branch = replace(key, thread=f"{base}~{turn_id}.{inbound.message_id}")
                if inbound.key.thread == RUNNING_THREAD:
                    await self._store.update_meta(inbound.key, current_thread=branch.thread)
                return _Route(branch, branch_of=key, upto=turn_id)
        key = inbound.key
        if key.thread == RUNNING_THREAD:
            meta = await self._store.get_meta(key)
            key = replace(key, thread=str(meta.get("current_thread", "main")))
        return _Route(key)

    async def _copy_branch(
        self, source: ConversationKey, branch: ConversationKey, upto_turn_id: int
    ) -> None:
        """Fill a new branch with `source`'s turns up to `upto_turn_id`, and its settings."""
        meta = await self._store.get_meta(source)
        since = int(meta.get("since_turn", 0))
        turns = await self._store.recent(
            source, limit=self._config.history_turns, upto_turn_id=upto_turn_id
        )
        for turn in turns:
            if turn.id is not None and turn.id > since:
                await self._store.append(branch, replace(turn, id=None, platform_message_ids=()))
        if meta.get("params"):
            await self._store.update_meta(branch, params=meta["params"])

    async def _answer(
        self,
        inbound: Inbound,
        key: ConversationKey,
        sink: ReplySink,
        outcome: Outcome,
        *,
        claim: tuple[str, str] | None,
    ) -> None:
        """Store the user turn, stream the model's answer into the sink, store the answer."""
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
        params = self._params_for(meta)
        window = self._window(inbound, loaded.turns, meta, params)
        notes_before: list[str] = []
        if window.dropped and not meta.get("truncation_noted"):
            notes_before.append(TRUNCATION_NOTE)
            await self._store.update_meta(key, truncation_noted=True)
        if self._config.user_hash_key is not None:
            params = params.with_overrides(
                user=pseudonymize_user(self._config.user_hash_key, key.platform, inbound.author_id)
            )
        answer = _Answer(choices=params.n or 1)
        try:
            await self._stream(ChatRequest(tuple(window.messages), params), sink, answer)
            for index, stream in answer.streams.items():
                final = answer.final_text(index, notes_before if index == 0 else [])
                outcome.results.append(await stream.finish(final))
        except asyncio.CancelledError:
            # Shutting down: keep what the model said so far, and close what the user sees
            # with a note if that takes no longer than the shutdown grace.
            if answer.finish.get(0) is None:
                answer.error = answer.error or asyncio.CancelledError()
            await asyncio.shield(self._close_on_shutdown(answer, notes_before, outcome))
            await asyncio.shield(self._store_answer(key, answer, outcome, params.model))
            raise
        if answer.usage is not None:
            self._counter.calibrate(params.model, window.prompt_tokens, answer.usage.prompt_tokens)
        try:
            await self._store_answer(key, answer, outcome, params.model)
        except StoreError:
            # The user has the answer; only its copy in the history is missing.
            log.exception("could not store the answer in %s", key)
            outcome.stored = False

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
        self, inbound: Inbound, turns: list[Turn], meta: Mapping[str, Any], params: ChatParams
    ) -> Window:
        """The messages to send: system prompt and the newest turns since /new that fit."""
        since = int(meta.get("since_turn", 0))
        current = turns[-1]
        prior = [t for t in turns[:-1] if t.id is not None and t.id > since]
        return build_window(
            self._config.system_prompt,
            prior,
            current,
            context_tokens=self._config.context_window,
            reply_tokens=self._reply_budget(params),
            counter=self._counter,
            model=params.model,
            name_for=self._name_for(inbound),
        )

    async def _stream(self, request: ChatRequest, sink: ReplySink, answer: _Answer) -> None:
        """Feed the model's deltas to one reply stream per choice; record how it ended."""
        answer.streams[0] = self._driver.open(sink)
        await answer.streams[0].start()
        try:
            async for event in self._llm.stream(request):
                if isinstance(event, ContentDelta):
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

    async def _store_answer(
        self, key: ConversationKey, answer: _Answer, outcome: Outcome, model: str
    ) -> None:
        """Persist choice 0 as the assistant turn (complete, partial or failed)."""
        text, status = answer.texts.get(0, ""), answer.status()
        outcome.text, outcome.status = text, status
        outcome.finish_reason = answer.finish.get(0)
        outcome.error = type(answer.error).__name__ if answer.error else None
        message_ids = tuple(mid for result in outcome.results for mid in result.message_ids)
        await self._store.append(
            key,
            Turn(
                role=Role.ASSISTANT,
                content=text,
                status=status,
                platform_message_ids=message_ids,
                token_count=self._stored_count(text, model),
            ),
        )

    def _stored_count(self, text: str, model: str) -> int | None:
        """A turn's token count worth storing: exact counts only, so estimates stay calibrated."""
        return self._counter.count(text, model) if self._counter.is_exact(model) else None

    def _params_for(self, meta: Mapping[str, Any]) -> ChatParams:
        overrides = meta.get("params") or {}
        if not overrides:
            return self._config.params
        try:
            return self._config.params.with_overrides(**overrides)
        except ConfigError:
            log.warning("ignoring invalid stored parameter overrides")
            return self._config.params

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

    async def _run_command(
        self, command: Command, key: ConversationKey, sink: ReplySink, outcome: Outcome
    ) -> None:
        """Answer a chat command (no LLM call)."""
        reply = await self._command_reply(command, key)
        outcome.text = reply
        outcome.results.append(await self._driver.open(sink).finish(reply))

    async def _command_reply(self, command: Command, key: ConversationKey) -> str:
        """The reply to a command; /new, /set and /unset change the conversation's meta."""
        if command.name == "help":
            return help_text()
        meta = await self._store.get_meta(key)
        if command.name == "new":
            latest = await self._store.recent(key, limit=1)
            since = latest[-1].id if latest and latest[-1].id is not None else 0
            await self._store.update_meta(key, since_turn=since, truncation_noted=False)
            return "Started a new conversation. Earlier messages will not be sent to the model."
        params = dict(meta.get("params") or {})
        if command.name == "params":
            return _describe_params(self._params_for(meta), params)
        name, _, raw = command.argument.partition(" ")
        name = name.strip().lower()
        if name not in SETTABLE_PARAMS:
            return f"Unknown parameter {name!r}. You can set: " + ", ".join(SETTABLE_PARAMS)
        if command.name == "unset":
            params.pop(name, None)
            await self._store.update_meta(key, params=params)
            return f"{name} is back to its default."
        try:
            value = parse_param_value(name, raw)
            params[name] = value
            self._config.params.with_overrides(**params)
        except (ValueError, ConfigError) as exc:
            return f"Could not set {name}: {exc}"
        window = self._config.context_window
        if name in ("max_tokens", "max_completion_tokens") and int(str(value)) >= window:
            return f"Could not set {name}: it must be smaller than the context window ({window})."
        await self._store.update_meta(key, params=_jsonable(params))
        return f"{name} set to {raw.strip()} for this conversation."

    async def _apologise(self, sink: ReplySink, exc: BaseException) -> None:
        """Leave the user a short explanation; swallow a second failure."""
        note = exc.user_note if isinstance(exc, LLMError) else "something went wrong on my side"
        try:
            await self._driver.open(sink).finish(f"⚠️ Sorry, {note}. Please try again.")
        except Exception:
            log.exception("could not tell the user about the failure")


def _event_id(inbound: Inbound) -> str:
    """The id that makes a platform event unique: the adapter's, else the message's."""
    return inbound.event_id or f"message:{inbound.key.channel}:{inbound.message_id}"


def _labelled(text: str, index: int, choices: int) -> str:
    return f"**Answer {index + 1} of {choices}**\n\n{text}" if choices > 1 else text


def _error_note(error: BaseException, *, has_text: bool) -> str:
    if isinstance(error, LLMError):
        note = error.user_note
    elif isinstance(error, asyncio.CancelledError):
        note = "the assistant was restarted"
    else:
        note = "something went wrong on my side"
    if has_text:
        return f"⚠️ _The answer stopped early: {note}._"
    return f"⚠️ Sorry, {note}. Please try again in a moment."


def _describe_params(params: ChatParams, overrides: Mapping[str, Any]) -> str:
    lines = ["Parameters for this conversation:"]
    for spec in dataclasses.fields(params):
        value = getattr(params, spec.name)
        if value is None or spec.name == "user":
            continue
        marker = " (set here)" if spec.name in overrides else ""
        lines.append(f"• {spec.name}: {value}{marker}")
    return "\n".join(lines)


def _jsonable(params: Mapping[str, object]) -> dict[str, object]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}


__all__ = ["ChatService", "Outcome", "ServiceConfig"]
