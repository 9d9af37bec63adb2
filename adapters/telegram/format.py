"""Model Markdown rendered as Telegram plain text plus entities, measured in UTF-16 units."""

from __future__ import annotations

import re
from bisect import bisect_right
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import pyromark
from telegramify_markdown import convert
from telegramify_markdown.converter import STANDARD_OPTIONS

from core.streaming import count_utf16

MAX_MESSAGE_LENGTH = 4096
"""Telegram's limit for a message text after entity parsing (counted in UTF-16 units)."""

MAX_ENTITIES = 100
"""Telegram renders at most this many entities per message; the rest are dropped here."""

_CONTAINERS = frozenset({"pre", "code"})
_SHIELDS = frozenset({"pre", "code", "text_link"})

_KEPT_TYPES = frozenset(
    {
        "bold",
        "italic",
        "underline",
        "strikethrough",
        "code",
        "pre",
        "blockquote",
        "expandable_blockquote",
        "text_link",
    }
)
"""Entity types the renderer may send: formatting only, never a mention or a custom emoji."""

_SAFE_URL = re.compile(r"(?:https?://|mailto:)[^\s]+\Z", re.IGNORECASE)
"""Link targets kept as `text_link`; any other (`tg://user?id=`, a mention) stays plain text."""

_LITERAL = re.compile(r"[<&$]|\|(?=\|)")
"""Characters the Markdown parser would not show as written: `<` opens HTML (dropped by the
converter), `&` an entity reference (`&amp;` shown as `&`), `$` math (`$a and b$` loses its
dollars and becomes code), `||` a spoiler (markers dropped)."""

_NEUTRAL = re.compile(r"[<&$]")

_MAY_HOLD_CODE = re.compile(r"`|~~~|(?:^|\n)(?: {0,3}\t| {4})")

_BLOCK_TAGS = (
    "address|article|aside|base|basefont|blockquote|body|caption|center|col|colgroup|dd|"
    "details|dialog|dir|div|dl|dt|fieldset|figcaption|figure|footer|form|frame|frameset|h[1-6]|"
    "head|header|hr|html|iframe|legend|li|link|main|menu|menuitem|nav|noframes|ol|optgroup|"
    "option|p|param|search|section|summary|table|tbody|td|tfoot|th|thead|title|tr|track|ul"
)
_INTERRUPTING_HTML = re.compile(
    rf"(?<=\n)[ ]{{0,3}}(?=<(?:(?:script|pre|style|textarea)(?:[\s>]|$)|!--|\?|![A-Za-z]"
    rf"|!\[CDATA\[|/?(?:{_BLOCK_TAGS})(?:[\s>]|/>|$)))",
    re.IGNORECASE,
)
"""A line inside a code span that starts HTML able to interrupt a paragraph (CommonMark HTML
blocks 1-6): unescaped, it would end the paragraph and the code span with it."""

_USERNAME = re.compile(r"(?<![A-Za-z0-9_])@[A-Za-z0-9_]{3,}")
"""What Telegram turns into a `mention` of a user by itself (`@username`), which notifies them."""


@dataclass(frozen=True, slots=True)
class Rendered:
    """One message as Telegram takes it: `text` and `entities` (Bot API dicts, UTF-16 offsets).

    `plain_entities` is what a plain-text fallback still sends (when Telegram refuses the
    formatting): only the `code` guards that stop `@username` from notifying anyone.
    """

    text: str
    entities: tuple[dict[str, Any], ...]
    plain_entities: tuple[dict[str, Any], ...] = ()

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
        text, raw = convert(literal_markup(markdown))
    except Exception:  # the renderer must never stop an answer: show the source instead
        return _plain(markdown)
    if not text.strip():
        return _plain(markdown.strip() or markdown)
    size = count_utf16(text)
    entities = safe_entities([entity.to_dict() for entity in raw])
    names = _usernames(text)
    entities = _guard_usernames(names, entities) + entities
    plain = clean_entities(_guard_usernames(names, []), size)
    return Rendered(text, tuple(clean_entities(entities, size)), tuple(plain))


def _plain(text: str) -> Rendered:
    """`text` shown as it is, with its `@username` guards."""
    guards = tuple(clean_entities(_guard_usernames(_usernames(text), []), count_utf16(text)))
    return Rendered(text, guards, guards)


def literal_markup(markdown: str) -> str:
    """`markdown` with `<`, `&`, `$` and `||` outside code backslash-escaped.

    CommonMark reads `<div>`, `List<String>` or `<!channel>` as inline or block HTML, which the
    converter drops, and `&amp;` as an entity reference; the math extension reads `$a and b$`
    as math, and the converter `||x||` as a spoiler. Escaped, they are shown as written. Code
    spans and blocks are verbatim in Markdown, so they are left alone; a character the model
    already escaped (`\\<`) is not escaped twice. The parse that finds code sees `<`, `&` and
    `$` as plain text, as the escaped result will be read.
    """
    if _LITERAL.search(markdown) is None:
        return markdown
    code = _code_ranges(markdown)
    starts = [start for start, _end, _span in code]
    unshielded = {
        line.end()
        for line in _INTERRUPTING_HTML.finditer(markdown)
        if (found := _range_at(code, starts, line.end())) is not None and found[2]
    }  # escaped: the code span stays one (it shows a backslash there), no text is dropped
    out: list[str] = []
    last = 0
    for match in _LITERAL.finditer(markdown):
        pos = match.start()
        if _range_at(code, starts, pos) is not None and pos not in unshielded:
            continue
        if _escaped(markdown, pos):
            continue
        out.append(markdown[last:pos])
        out.append("\\")
        last = pos
    out.append(markdown[last:])
    return "".join(out)


def safe_entities(entities: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Only formatting entities, and links only to web or mail addresses.

    A `text_link` to `tg://user?id=…` becomes a user mention (`text_mention`) in Telegram, and
    other `tg:` links open chats or act on the reader's account: model output keeps the link's
    text as plain text instead.
    """
    return [
        entity
        for entity in entities
        if entity["type"] in _KEPT_TYPES
        and (entity["type"] != "text_link" or _SAFE_URL.match(str(entity.get("url", ""))))
    ]


def _usernames(text: str) -> list[tuple[int, int]]:
    """Where Telegram would find `@username` in `text`: (start, end) in UTF-16 units."""
    if "@" not in text:
        return []
    found: list[tuple[int, int]] = []
    pos = units = 0
    for match in _USERNAME.finditer(text):
        units += count_utf16(text[pos : match.start()])
        length = count_utf16(match.group())
        found.append((units, units + length))
        units, pos = units + length, match.end()
    return found


def _guard_usernames(
    names: list[tuple[int, int]], entities: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """A `code` entity over each `@username` in prose, so Telegram does not mention anyone.

    Telegram detects `@username` in every message and notifies that user; it skips text under
    a `code`, `pre` or `text_link` entity. The characters stay as the model wrote them (shown
    in monospace). The guard stops where a formatting entity starts or ends, so it nests.
    """
    spans = [(e["offset"], e["offset"] + e["length"], e["type"]) for e in entities]
    guards: list[dict[str, Any]] = []
    for start, end in names:
        if any(s <= start and end <= e and kind in _SHIELDS for s, e, kind in spans):
            continue
        for s, e, _kind in spans:
            if s <= start < e < end:
                end = e  # the entity ends inside the name: the guard ends with it
            elif start < s < end:
                end = s  # one starts inside: the guard ends before it
        guards.append({"type": "code", "offset": start, "length": end - start})
    return guards


def _escaped(text: str, pos: int) -> bool:
    """Whether the character at `pos` follows an odd run of backslashes (already escaped)."""
    count = 0
    while pos > count and text[pos - count - 1] == "\\":
        count += 1
    return count % 2 == 1


def _code_ranges(markdown: str) -> list[tuple[int, int, bool]]:
    """(start, end, is a code span) of every code span and code block, in character offsets."""
    if not _MAY_HOLD_CODE.search(markdown):
        return []  # no backquote, tilde fence or indented line: no code (and no parse)
    probe = _NEUTRAL.sub("%", markdown)  # same UTF-8 length, no HTML, entities or math
    data = probe.encode("utf-8")
    found: list[tuple[int, int, bool]] = []
    for event, span in pyromark.events_with_range(probe, options=STANDARD_OPTIONS):
        if not isinstance(event, dict):
            continue
        start = event.get("Start")
        if (isinstance(start, dict) and "CodeBlock" in start) or "Code" in event:
            found.append((span["start"], span["end"], "Code" in event))
    found.sort()
    ranges: list[tuple[int, int, bool]] = []
    byte, char = 0, 0
    for start, end, is_span in found:  # byte offsets to character offsets, left to right
        if start < byte:
            continue  # inside the previous range
        char += len(data[byte:start].decode("utf-8"))
        length = len(data[start:end].decode("utf-8"))
        ranges.append((char, char + length, is_span))
        byte, char = end, char + length
    return ranges


def _range_at(
    ranges: list[tuple[int, int, bool]], starts: list[int], pos: int
) -> tuple[int, int, bool] | None:
    index = bisect_right(starts, pos) - 1
    if index >= 0 and pos < ranges[index][1]:
        return ranges[index]
    return None


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
