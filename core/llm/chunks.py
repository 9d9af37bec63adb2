"""Interpret Chat Completions JSON: stream chunks into events, whole answers into a Completion."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from core.errors import LLMError, LLMRateLimited, LLMStreamError
from core.llm.types import ChoiceFinished, ContentDelta, FinishReason, StreamEvent, UsageReport

Redactor = Callable[[str], str]

_THINK_OPEN = "<think>"
_THINK_CLOSE = "</think>"


@dataclass(frozen=True, slots=True)
class Completion:
    """A whole (non-streamed) answer: one text and finish reason per choice, plus usage."""

    texts: tuple[str, ...]
    finish_reasons: tuple[FinishReason | None, ...]
    usage: UsageReport | None = None
    model: str | None = None

    @property
    def text(self) -> str:
        """The first choice's text."""
        return self.texts[0] if self.texts else ""


class ThinkFilter:
    """Removes one `<think>...</think>` block at the start of a choice's text, across chunks.

    Text is held back only while it could still be the opening tag, or while inside the block;
    everything else passes through unchanged. Whitespace right after the block is dropped.
    """

    def __init__(self) -> None:
        self._state = "start"  # start -> thinking -> after -> visible, or start -> visible
        self._buffer = ""

    @property
    def visible(self) -> bool:
        """Whether text now passes through unchanged (no tag possible any more, nothing held)."""
        return self._state == "visible"

    def feed(self, text: str) -> str:
        """Return the visible part of `text` that can be shown now."""
        if self._state == "visible":
            return text
        self._buffer += text
        while True:
            if self._state == "start":
                stripped = self._buffer.lstrip()
                if stripped.startswith(_THINK_OPEN):
                    self._buffer = stripped[len(_THINK_OPEN) :]
                    self._state = "thinking"
                    continue
                if _THINK_OPEN.startswith(stripped):
                    return ""  # still only whitespace or a prefix of the tag
                return self._reveal(self._buffer)
            if self._state == "thinking":
                end = self._buffer.find(_THINK_CLOSE)
                if end < 0:
                    self._buffer = self._buffer[-(len(_THINK_CLOSE) - 1) :]
                    return ""
                self._buffer = self._buffer[end + len(_THINK_CLOSE) :]
                self._state = "after"
                continue
            # after the block: skip the whitespace that separates it from the answer
            stripped = self._buffer.lstrip()
            if not stripped:
                self._buffer = ""
                return ""
            return self._reveal(stripped)

    def flush(self) -> str:
        """The text still held back when the choice ends (an unclosed block is dropped)."""
        held = self._buffer if self._state == "start" else ""
        self._buffer = ""
        self._state = "visible"
        return held

    def _reveal(self, text: str) -> str:
        self._state = "visible"
        self._buffer = ""
        return text


class StreamDecoder:
    """Turns the `data:` payloads of one stream into events and tracks finish reasons.

    Usage is held until `finish()` so that a server sending both the standard usage chunk
    and Groq's `x_groq.usage` is reported once.
    """

    def __init__(self, redact: Redactor) -> None:
        self._redact = redact
        self._filters: dict[int, ThinkFilter] = {}
        self._finished: dict[int, FinishReason] = {}
        self._usage: UsageReport | None = None
        self._fallback_usage: UsageReport | None = None

    @property
    def unfinished_choices(self) -> list[int]:
        """Choices that sent something but no finish reason yet."""
        return sorted(index for index in self._filters if index not in self._finished)

    @property
    def saw_choice(self) -> bool:
        """Whether any chunk carried a choice."""
        return bool(self._filters)

    def feed(self, data: str) -> list[StreamEvent]:
        """Events for one `data:` payload; raises the server's error if it carries one."""
        try:
            chunk = json.loads(data)
        except ValueError:
            raise LLMStreamError(
                self._redact(f"the server sent a chunk that is not JSON: {data[:200]!r}")
            ) from None
        if not isinstance(chunk, dict):
            raise LLMStreamError(
                self._redact(f"the server sent an unexpected chunk: {data[:200]!r}")
            )
        get = chunk.get
        if get("error") is not None or get("object") == "error":
            error = error_from_payload(chunk, self._redact)
            if error is not None:
                raise error
        events: list[StreamEvent] = []
        choices = get("choices")
        if type(choices) is list and len(choices) == 1 and type(choices[0]) is dict:
            # the usual chunk: one choice with only new content, once past any think block
            choice = choices[0]
            index = choice.get("index", 0)
            if type(index) is not int:  # bool, float, str...: what the general path ignores
                index = 0
            think = self._filters.get(index)
            delta = choice.get("delta")
            if (
                think is not None
                and think.visible
                and type(delta) is dict
                and choice.get("finish_reason") is None
                and delta.get("refusal") is None
            ):
                content = delta.get("content")
                if type(content) is str and content:
                    events.append(ContentDelta(index, content))
            else:
                events = self._choice_events(0, choice)
        elif isinstance(choices, list):
            for position, choice in enumerate(choices):
                if isinstance(choice, dict):
                    events.extend(self._choice_events(position, choice))
        usage_value = get("usage")
        if usage_value is not None:
            usage = usage_from(usage_value)
            if usage is not None:
                self._usage = usage
        groq = get("x_groq")
        if isinstance(groq, dict):
            self._fallback_usage = usage_from(groq.get("usage")) or self._fallback_usage
        return events

    def finish(self) -> list[StreamEvent]:
        """Held-back text of unfinished choices, then the usage report if the server sent one."""
        events: list[StreamEvent] = []
        for index in self.unfinished_choices:
            held = self._filters[index].flush()
            if held:
                events.append(ContentDelta(index, held))
        usage = self._usage or self._fallback_usage
        if usage is not None:
            events.append(usage)
        return events

    def _choice_events(self, position: int, choice: Mapping[str, Any]) -> list[StreamEvent]:
        index = _choice_index(choice, position)
        think = self._filters.get(index)
        if think is None:
            think = self._filters[index] = ThinkFilter()
        events: list[StreamEvent] = []
        delta = choice.get("delta")
        if isinstance(delta, dict):
            content = delta.get("content")
            if isinstance(content, str) and content:
                visible = think.feed(content)
                if visible:
                    events.append(ContentDelta(index, visible))
            refusal = delta.get("refusal")
            if isinstance(refusal, str) and refusal:
                events.append(ContentDelta(index, refusal))
        reason = choice.get("finish_reason")
        if isinstance(reason, str) and reason and index not in self._finished:
            held = think.flush()
            if held:
                events.append(ContentDelta(index, held))
            self._finished[index] = reason
            events.append(ChoiceFinished(index, reason))
        return events


def decode_completion(body: bytes, redact: Redactor) -> Completion:
    """Parse a non-streamed answer; raises the server's error if the body carries one."""
    try:
        document = json.loads(body)
    except ValueError:
        raise LLMStreamError(
            redact(f"the server's answer is not JSON: {body[:200].decode(errors='replace')!r}")
        ) from None
    if not isinstance(document, dict):
        raise LLMStreamError(redact("the server's answer is not a JSON object"))
    error = error_from_payload(document, redact)
    if error is not None:
        raise error
    choices = document.get("choices")
    if not isinstance(choices, list) or not choices:
        raise LLMStreamError(redact("the server's answer has no choices"))
    by_index: dict[int, tuple[str, FinishReason | None]] = {}
    for position, choice in enumerate(choices):
        if isinstance(choice, dict):
            by_index[_choice_index(choice, position)] = _choice_text(choice)
    ordered = [by_index[index] for index in sorted(by_index)]
    groq = document.get("x_groq")
    usage = usage_from(document.get("usage")) or (
        usage_from(groq.get("usage")) if isinstance(groq, dict) else None
    )
    model = document.get("model")
    return Completion(
        texts=tuple(text for text, _ in ordered),
        finish_reasons=tuple(reason for _, reason in ordered),
        usage=usage,
        model=model if isinstance(model, str) and model else None,
    )


def error_from_payload(document: Mapping[str, Any], redact: Redactor) -> LLMError | None:
    """The error an OpenAI-style (`{"error": ...}`) or vLLM-style (`object: error`) body carries."""
    error = document.get("error")
    if isinstance(error, dict):
        message = str(error.get("message") or error)
        code, kind = error.get("code"), error.get("type")
    elif isinstance(error, str) and error:
        message, code, kind = error, None, None
    elif document.get("object") == "error":
        message = str(document.get("message") or "unknown error")
        code, kind = document.get("code"), document.get("type")
    else:
        return None
    text = redact(f"the server reported an error: {message}")
    if _is_rate_limit(code, kind, message):
        return LLMRateLimited(text)
    return LLMStreamError(text)


def usage_from(value: object) -> UsageReport | None:
    """A usage report from a `usage` object, or `None` if it holds no token counts."""
    if not isinstance(value, dict):
        return None
    prompt = _count(value.get("prompt_tokens"))
    completion = _count(value.get("completion_tokens"))
    total = _count(value.get("total_tokens"))
    if prompt is None and completion is None and total is None:
        return None
    prompt, completion = prompt or 0, completion or 0
    return UsageReport(prompt, completion, total if total is not None else prompt + completion)


def _choice_index(choice: Mapping[str, Any], position: int) -> int:
    index = choice.get("index")
    return index if isinstance(index, int) and not isinstance(index, bool) else position


def _choice_text(choice: Mapping[str, Any]) -> tuple[str, FinishReason | None]:
    message = choice.get("message")
    text = ""
    if isinstance(message, dict):
        content = message.get("content")
        if isinstance(content, str):
            think = ThinkFilter()
            text = think.feed(content) + think.flush()
        refusal = message.get("refusal")
        if not text and isinstance(refusal, str):
            text = refusal
    reason = choice.get("finish_reason")
    return text, reason if isinstance(reason, str) and reason else None


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _is_rate_limit(code: object, kind: object, message: str) -> bool:
    if code in (429, "429"):
        return True
    labels = f"{code} {kind}".lower()
    lowered = message.lower()
    return (
        "rate_limit" in labels
        or "rate limit" in lowered
        or "rate_limit" in lowered
        or "too many requests" in lowered
    )
