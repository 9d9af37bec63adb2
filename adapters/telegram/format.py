"""Model Markdown rendered as Telegram plain text plus entities, measured in UTF-16 units."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from telegramify_markdown import convert

from core.streaming import count_utf16

MAX_MESSAGE_LENGTH = 4096
"""Telegram's limit for a message text after entity parsing (counted in UTF-16 units)."""

MAX_ENTITIES = 100
"""Telegram renders at most this many entities per message; the rest are dropped here."""

_CONTAINERS = frozenset({"pre", "code"})


@dataclass(frozen=True, slots=True)
class Rendered:
    """One message as Telegram takes it: `text` and `entities` (Bot API dicts, UTF-16 offsets)."""

    text: str
    entities: tuple[dict[str, Any], ...]

    @property
    def length(self) -> int:
        """Length of `text` in UTF-16 code units (what Telegram limits)."""
        return count_utf16(self.text)


class _Cache:
    """A small LRU of renderings: the driver measures and then sends the same text."""

    def __init__(self, size: int = 512) -> None:
        self._size = size
        self._items: OrderedDict[str, Rendered] = OrderedDict()

    def get(self, markdown: str) -> Rendered:
        found = self._items.get(markdown)
        if found is not None:
            self._items.move_to_end(markdown)
            return found
        rendered = _render(markdown)
        self._items[markdown] = rendered
        if len(self._items) > self._size:
            self._items.popitem(last=False)
        return rendered


_CACHE = _Cache()


def render(markdown: str) -> Rendered:
    """Render model Markdown (complete or mid-stream) as text + entities Telegram accepts.

    An unclosed code fence or emphasis renders as far as it goes (CommonMark rules), so every
    stage of a stream is valid. A rendering left empty (only markup) falls back to the source.
    """
    return _CACHE.get(markdown)


def rendered_length(markdown: str) -> int:
    """UTF-16 length of the rendered text: the `SinkLimits.measure` of Telegram sinks."""
    return render(markdown).length


def _render(markdown: str) -> Rendered:
    try:
        text, raw = convert(markdown)
    except Exception:  # the renderer must never stop an answer: show the source instead
        return Rendered(markdown, ())
    if not text.strip():
        return Rendered(markdown.strip() or markdown, ())
    size = count_utf16(text)
    entities = [entity.to_dict() for entity in raw]
    return Rendered(text, tuple(clean_entities(entities, size)))


def clean_entities(entities: list[dict[str, Any]], size: int) -> list[dict[str, Any]]:
    """Entities Telegram will accept: inside the text, non-empty, properly nested, at most 100.

    Telegram refuses partially overlapping entities and anything inside `pre`/`code`; a
    renderer should not produce them, but one bad entity must not cost the whole message.
    """
    kept: list[dict[str, Any]] = []
    ordered = sorted(
        (e for e in entities if e["length"] > 0 and e["offset"] >= 0),
        key=lambda e: (e["offset"], -e["length"]),
    )
    stack: list[dict[str, Any]] = []
    for entity in ordered:
        start = entity["offset"]
        end = min(start + entity["length"], size)
        if start >= size or end <= start:
            continue
        while stack and stack[-1]["offset"] + stack[-1]["length"] <= start:
            stack.pop()
        if stack:
            parent = stack[-1]
            if parent["type"] in _CONTAINERS or end > parent["offset"] + parent["length"]:
                continue
        entity = {**entity, "length": end - start}
        kept.append(entity)
        stack.append(entity)
        if len(kept) >= MAX_ENTITIES:
            break
    return kept
