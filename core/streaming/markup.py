"""Scan Markdown for what a cut must respect: code fences, atomic spans and emphasis pairs."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field

_FENCE_LINE = re.compile(r"^ {0,3}(?:`{3,}|~{3,})", re.MULTILINE)
_FENCE_OPEN = re.compile(r"( {0,3})(`{3,}|~{3,})([^\n]*)")
_FENCE_CLOSE = re.compile(r" {0,3}(`{3,}|~{3,})[ \t]*")
_BLANK_LINE = re.compile(r"\n[ \t]*\n")
_BACKTICKS = re.compile(r"`+")
_ATOMIC = re.compile(
    r"!?\[[^\[\]\n]*\]\([^()\n]*\)"  # [text](url "title")
    r"|<[@#!][^<>\n]*>"  # <@U123>, <#C1|general>, <!here>
    r"|<(?:https?|mailto|tel):[^<>\n]*>"  # <https://x|label>
    r"|(?:https?|ftp)://[^\s<>()\[\]]+"  # bare URL
)
_OPEN_TAIL = re.compile(
    r"(?:!?\[[^\[\]\n]{0,300}(?:\](?:\([^()\n]{0,2000})?)?"  # a link still arriving
    r"|<[^<>\s]{0,300}"  # a mention or <url> still arriving
    r"|(?:https?|ftp)://[^\s<>()\[\]]*)\Z"  # a URL still arriving
)
_EMPHASIS = re.compile(r"\*+|_+|~+")
_EMPHASIS_MARKERS = frozenset({"*", "**", "***", "_", "__", "~~"})
_GRAPHEME_EXTENDERS = frozenset("\u200c\u200d\u20e3")


@dataclass(frozen=True, slots=True)
class Fence:
    """A fenced code block: ``` or ~~~ lines and what lies between them."""

    start: int  # start of the opening line
    content_start: int  # after the opening line's newline (len(text) while it has none)
    content_end: int  # start of the closing line (len(text) while unclosed)
    end: int  # after the closing line and its newline
    opener: str  # the opening line, e.g. "```python"
    closer: str  # what closes it, e.g. "```"
    closed: bool
    opener_complete: bool  # the opening line has its newline


@dataclass(frozen=True, slots=True)
class Pair:
    """Inline markup that opens and closes: emphasis, strike, or a code span (atomic)."""

    marker: str
    open_start: int
    open_end: int
    close_start: int | None  # None: still open at the end of a streaming text
    close_end: int | None
    atomic: bool  # a code span: never cut inside unless nothing else fits


@dataclass(slots=True)
class Markup:
    """What `scan` found in one text."""

    text: str
    fences: list[Fence] = field(default_factory=list)
    atomics: list[tuple[int, int]] = field(default_factory=list)
    pairs: list[Pair] = field(default_factory=list)
    open_tail: int | None = None  # start of a link/mention/URL still arriving (streaming)

    def fence_at(self, pos: int) -> Fence | None:
        """The fence whose content a cut at `pos` falls into."""
        for fence in self.fences:
            if fence.start < pos and fence.content_start <= pos <= fence.content_end:
                return fence
        return None

    def forbidden(self, strict: bool) -> bytearray:
        """1 for every cut position (0..len) that would break markup; strict keeps spans whole."""
        size = len(self.text) + 1
        marks = bytearray(size)

        def block(lo: int, hi: int) -> None:  # forbid lo..hi inclusive
            lo, hi = max(lo, 1), min(hi, size - 1)
            if lo <= hi:
                marks[lo : hi + 1] = b"\x01" * (hi - lo + 1)

        for fence in self.fences:
            if not fence.opener_complete:
                block(fence.start + 1, size - 1)
            else:
                block(fence.start + 1, fence.content_start)
            if fence.closed:
                block(fence.content_end, fence.end - 1)
        for pair in self.pairs:
            close_start = size - 1 if pair.close_start is None else pair.close_start
            close_end = size if pair.close_end is None else pair.close_end
            if strict and pair.atomic:
                block(pair.open_start + 1, close_end - 1)
            else:
                block(pair.open_start + 1, pair.open_end)
                block(close_start, close_end - 1)
        if strict:
            for start, end in self.atomics:
                block(start + 1, end - 1)
            if self.open_tail is not None:
                block(self.open_tail + 1, size - 1)
        return marks


def scan(text: str, *, final: bool) -> Markup:
    """Find fences, atomic spans and emphasis pairs; `final=False` treats the end as unfinished."""
    markup = Markup(text)
    markup.fences = _scan_fences(text)
    prose_start = 0
    for fence in markup.fences:
        _scan_prose(markup, prose_start, fence.start, final=final)
        prose_start = fence.end
    if prose_start < len(text) or not markup.fences:
        _scan_prose(markup, prose_start, len(text), final=final)
    markup.pairs.sort(key=lambda pair: pair.open_start)
    return markup


def grapheme_safe(text: str, pos: int) -> bool:
    """Whether a cut at `pos` keeps characters that render as one symbol together (cheaply)."""
    if pos <= 0 or pos >= len(text):
        return True
    before, after = text[pos - 1], text[pos]
    if before == "\r" and after == "\n":
        return False
    if after in _GRAPHEME_EXTENDERS or before == "\u200d":
        return False
    code = ord(after)
    if 0xFE00 <= code <= 0xFE0F or 0x1F3FB <= code <= 0x1F3FF or 0xE0020 <= code <= 0xE007F:
        return False
    if 0xE0100 <= code <= 0xE01EF or unicodedata.category(after).startswith("M"):
        return False
    if _is_regional(after) and _is_regional(before):
        run = 0
        while pos - run - 1 >= 0 and _is_regional(text[pos - run - 1]):
            run += 1
        return run % 2 == 0
    return True


def _is_regional(char: str) -> bool:
    return 0x1F1E6 <= ord(char) <= 0x1F1FF


def _scan_fences(text: str) -> list[Fence]:
    fences: list[Fence] = []
    size = len(text)
    pos = 0
    while (match := _FENCE_LINE.search(text, pos)) is not None:
        line_start = match.start()
        newline = text.find("\n", line_start)
        line_end = size if newline < 0 else newline
        opened = _FENCE_OPEN.fullmatch(text, line_start, line_end)
        if opened is None or (opened[2][0] == "`" and "`" in opened[3]):
            pos = line_end + 1
            continue
        indent, marker = opened[1], opened[2]
        content_start = size if newline < 0 else newline + 1
        close_line = _find_closer(text, content_start, marker)
        if close_line is None:
            fences.append(
                Fence(
                    start=line_start,
                    content_start=content_start,
                    content_end=size,
                    end=size,
                    opener=text[line_start:line_end],
                    closer=indent + marker,
                    closed=False,
                    opener_complete=newline >= 0,
                )
            )
            break
        close_start, close_end = close_line
        fences.append(
            Fence(
                start=line_start,
                content_start=content_start,
                content_end=close_start,
                end=close_end,
                opener=text[line_start:line_end],
                closer=indent + marker,
                closed=True,
                opener_complete=True,
            )
        )
        pos = close_end
    return fences


def _find_closer(text: str, pos: int, marker: str) -> tuple[int, int] | None:
    """The (start, end) of the line that closes a fence opened with `marker`."""
    size = len(text)
    while (match := _FENCE_LINE.search(text, pos)) is not None:
        line_start = match.start()
        newline = text.find("\n", line_start)
        line_end = size if newline < 0 else newline
        closing = _FENCE_CLOSE.fullmatch(text, line_start, line_end)
        if closing is not None and closing[1][0] == marker[0] and len(closing[1]) >= len(marker):
            return line_start, (size if newline < 0 else newline + 1)
        pos = line_end + 1
    return None


def _scan_prose(markup: Markup, lo: int, hi: int, *, final: bool) -> None:
    """Inline constructs of the text between two fences."""
    text = markup.text
    runs_to_end = hi == len(text) and not final
    breaks = [match.start() for match in _BLANK_LINE.finditer(text, lo, hi)]
    last_paragraph = breaks[-1] + 1 if breaks else lo
    masked = bytearray(hi - lo)

    def mask(start: int, end: int) -> None:
        masked[start - lo : end - lo] = b"\x01" * (end - start)

    _scan_code_spans(markup, lo, hi, breaks, runs_to_end, mask)
    for match in _ATOMIC.finditer(text, lo, hi):
        if not masked[match.start() - lo]:
            markup.atomics.append((match.start(), match.end()))
            mask(match.start(), match.end())
    if runs_to_end:
        tail = _OPEN_TAIL.search(text, max(lo, last_paragraph, hi - 2000), hi)
        if tail is not None and not masked[tail.start() - lo] and tail.start() < hi:
            markup.open_tail = tail.start()
            mask(tail.start(), hi)
    _scan_emphasis(markup, lo, hi, breaks, runs_to_end, masked)


def _scan_code_spans(
    markup: Markup,
    lo: int,
    hi: int,
    breaks: list[int],
    runs_to_end: bool,
    mask: Callable[[int, int], None],
) -> None:
    text = markup.text
    pos = lo
    while (opening := _BACKTICKS.search(text, pos, hi)) is not None:
        ticks = opening.group()
        paragraph_end = next((b for b in breaks if b >= opening.end()), hi)
        closing = _find_run(text, opening.end(), paragraph_end, ticks)
        if closing is not None:
            markup.pairs.append(
                Pair(ticks, opening.start(), opening.end(), closing, closing + len(ticks), True)
            )
            mask(opening.start(), closing + len(ticks))
            pos = closing + len(ticks)
        elif runs_to_end and paragraph_end == hi:
            markup.pairs.append(Pair(ticks, opening.start(), opening.end(), None, None, True))
            mask(opening.start(), hi)
            return
        else:
            pos = opening.end()


def _find_run(text: str, pos: int, end: int, ticks: str) -> int | None:
    """Start of the next backtick run exactly as long as `ticks` before `end`."""
    while (match := _BACKTICKS.search(text, pos, end)) is not None:
        if len(match.group()) == len(ticks):
            return match.start()
        pos = match.end()
    return None


def _scan_emphasis(
    markup: Markup,
    lo: int,
    hi: int,
    breaks: list[int],
    runs_to_end: bool,
    masked: bytearray,
) -> None:
    text = markup.text
    stack: list[tuple[str, int, int]] = []
    next_break = 0
    for match in _EMPHASIS.finditer(text, lo, hi):
        start, end = match.span()
        if masked[start - lo]:
            continue
        while next_break < len(breaks) and breaks[next_break] < start:
            stack.clear()  # a blank line ends every open emphasis: those markers are literal
            next_break += 1
        run = match.group()
        if run not in _EMPHASIS_MARKERS:
            continue
        before = text[start - 1] if start > 0 else " "
        after = text[end] if end < len(text) else " "
        left, right = not after.isspace(), not before.isspace()
        if run[0] == "_":
            can_open = left and not before.isalnum()
            can_close = right and not after.isalnum()
        else:
            can_open, can_close = left, right
        index = next((i for i in range(len(stack) - 1, -1, -1) if stack[i][0] == run), None)
        if can_close and index is not None:
            marker, open_start, open_end = stack[index]
            del stack[index:]
            markup.pairs.append(Pair(marker, open_start, open_end, start, end, False))
        elif can_open and end < hi:
            stack.append((run, start, end))
    if runs_to_end and next_break == len(breaks):
        for marker, open_start, open_end in stack:
            markup.pairs.append(Pair(marker, open_start, open_end, None, None, False))
