"""Scan Markdown for what a cut must respect: code fences, atomic spans and emphasis pairs.

`scan` reads a whole text. `ResumableScan` serves a text that grows by appending (a streaming
answer): it remembers resume points - positions where the scan state is known and nothing before
them can change whatever text follows - and rescans only from the last one, so an update costs
time in proportion to the new text rather than to the whole text.
"""

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
# A link, mention or <url> that has started, contains a space and could still complete: a scan
# resumed after that space could miss the atomic span (see `_resume_point`).
_SPACED_PARTIAL = re.compile(
    r"(?:!?\[[^\[\]\n]*(?:\]\([^()\n]*)?|<(?:[@#!]|(?:https?|mailto|tel):)[^<>\n]*)\Z"
)
_EMPHASIS = re.compile(r"\*+|_+|~+")
_EMPHASIS_MARKERS = frozenset({"*", "**", "***", "_", "__", "~~"})
_GRAPHEME_EXTENDERS = frozenset("\u200c\u200d\u20e3")
# punctuation that may start emphasized text (besides opening brackets and quotes)
_OPENING_PUNCTUATION = frozenset("\"'#@&%_\u00a1\u00bf")


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
    _scan_from(markup, _START, final=final)
    markup.pairs.sort(key=lambda pair: pair.open_start)
    return markup


_Open = tuple[str, int, int]  # emphasis still open: (marker, open_start, open_end)


@dataclass(frozen=True, slots=True)
class ResumePoint:
    """Where a scan can start over: nothing before `pos` changes whatever text follows it.

    A point is a fact about `text[:pos]` alone, so it holds for every text with that prefix.
    """

    pos: int
    last_fence: Fence | None = None  # the last fence that ends at or before `pos`
    stack: tuple[_Open, ...] = ()  # emphasis open at `pos` (prose)
    fence: Fence | None = None  # `pos` starts a line inside this fence's content (unclosed)


_START = ResumePoint(0)


@dataclass(frozen=True, slots=True)
class TailScan:
    """What a preview needs from a streaming (`final=False`) scan of one text."""

    last_fence: Fence | None
    open_tail: int | None
    open_pairs: list[Pair]  # pairs with `close_start is None`, by `open_start`


class ResumableScan:
    """`scan(text, final=False)` of a text that grows by appending, rescanning only its tail.

    Call `sync(text)` with the whole current text, then `tail(prefix)` with that text or any
    prefix of it (a preview trims from the end and scans again). Scanning the synced text itself
    also finds a new resume point near its end. A text that does not start with the previous one
    drops the points it no longer shares (a full rescan in general).
    """

    __slots__ = ("_points", "_text")

    _KEEP = 8  # recent points kept: a trimmed prefix scans from the last one before it

    def __init__(self) -> None:
        self._text = ""
        self._points: list[ResumePoint] = []

    def sync(self, text: str) -> None:
        """Make `text` the current text; keeps the points of the prefix it shares."""
        old = self._text
        if text is old:
            return
        if not text.startswith(old):
            if old.startswith(text):
                self._points = [point for point in self._points if point.pos <= len(text)]
            else:
                self._points = []
        self._text = text

    def tail(self, text: str) -> TailScan:
        """The streaming scan of `text`, which must be the synced text or a prefix of it."""
        size = len(text)
        start = _START
        for point in reversed(self._points):
            if point.pos <= size:
                start = point
                break
        markup = Markup(text)
        advance = size == len(self._text)
        found = _scan_from(markup, start, final=False, probe=advance)
        if found is not None and found.pos > (self._points[-1].pos if self._points else 0):
            self._points.append(found)
            if len(self._points) > self._KEEP:
                del self._points[0]
        open_pairs = [pair for pair in markup.pairs if pair.close_start is None]
        if len(open_pairs) > 1:
            open_pairs.sort(key=lambda pair: pair.open_start)
        last = markup.fences[-1] if markup.fences else start.last_fence
        return TailScan(last, markup.open_tail, open_pairs)


def _scan_from(
    markup: Markup, start: ResumePoint, *, final: bool, probe: bool = False
) -> ResumePoint | None:
    """Scan `markup.text` from `start` into `markup`; with `probe`, the last resume point found.

    From `_START` this is the whole scan. From a later point the lists only hold what starts at
    or after it (plus pairs closed after it whose opener came before).
    """
    text = markup.text
    pos, stack, last_fence = start.pos, start.stack, start.last_fence
    found: ResumePoint | None = None
    resumed = start.fence
    if resumed is not None:
        fence = _finish_fence(text, resumed.start, resumed.content_start, resumed.opener, pos)
        markup.fences.append(fence)
        if not fence.closed:
            return _fence_point(text, fence, last_fence, pos) if probe else None
        if probe and text[fence.end - 1] == "\n":
            found = ResumePoint(fence.end, fence)
        pos, stack, last_fence = fence.end, (), fence
    first = len(markup.fences)
    markup.fences.extend(_scan_fences(text, pos))
    prose_start = pos
    for fence in markup.fences[first:]:
        paragraph, _ = _scan_prose(markup, prose_start, fence.start, final=final, stack=stack)
        stack = ()
        if probe:
            if paragraph is not None:
                found = ResumePoint(paragraph, last_fence)
            if fence.closed:
                if text[fence.end - 1] == "\n":
                    found = ResumePoint(fence.end, fence)
            elif fence.opener_complete:
                found = _fence_point(text, fence, last_fence, fence.start) or found
        last_fence = fence
        prose_start = fence.end
    paragraph, inline = _scan_prose(
        markup, prose_start, len(text), final=final, stack=stack, probe=probe
    )
    if probe:
        if paragraph is not None:
            found = ResumePoint(paragraph, last_fence)
        if inline is not None:
            found = ResumePoint(inline[0], last_fence, inline[1])
    return found


def _fence_point(
    text: str, fence: Fence, last_fence: Fence | None, floor: int
) -> ResumePoint | None:
    """The start of the last line inside an unclosed fence: no line before it can close it."""
    line_start = text.rfind("\n") + 1
    if line_start <= floor or line_start < fence.content_start:
        return None
    return ResumePoint(line_start, last_fence, (), fence)


def plausible_opener(text: str, pair: Pair) -> bool:
    """Whether a pair with no closer yet reads as emphasis to close at a cut or in a preview.

    The scan pairs markers the CommonMark way, which is right once a closer arrives. An opener
    still waiting for its closer is only worth closing (and reopening) when it looks like the
    start of emphasis: not intraword (`2**10`, `3*4`; an opener glued to text in a script
    written without spaces, like `日本語**強調`, still counts), and followed by a word, an
    opening bracket or quote, a symbol or code (`**(note)`, `**"x"`, `` **`f()` ``, `**⚠️`) rather
    than by closing punctuation (`*.py`, `**/`, `*,`). Code spans always count.
    """
    if pair.atomic:
        return True
    before = text[pair.open_start - 1] if pair.open_start > 0 else " "
    after = text[pair.open_end] if pair.open_end < len(text) else " "
    if after.isspace():
        return False
    if before.isalnum() and unicodedata.east_asian_width(before) not in ("W", "F"):
        return False
    if after in _OPENING_PUNCTUATION:
        return True
    category = unicodedata.category(after)
    if category[0] == "P" and category not in ("Ps", "Pi"):
        return False  # closing punctuation: `*.py`, `**/`, `*,`
    return after not in "=|>\\"


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


def _scan_fences(text: str, pos: int = 0) -> list[Fence]:
    fences: list[Fence] = []
    size = len(text)
    while (match := _FENCE_LINE.search(text, pos)) is not None:
        line_start = match.start()
        newline = text.find("\n", line_start)
        line_end = size if newline < 0 else newline
        opened = _FENCE_OPEN.fullmatch(text, line_start, line_end)
        if opened is None or (opened[2][0] == "`" and "`" in opened[3]):
            pos = line_end + 1
            continue
        opener = text[line_start:line_end]
        if newline < 0:
            fences.append(
                Fence(
                    start=line_start,
                    content_start=size,
                    content_end=size,
                    end=size,
                    opener=opener,
                    closer=opened[1] + opened[2],
                    closed=False,
                    opener_complete=False,
                )
            )
            break
        fence = _finish_fence(text, line_start, newline + 1, opener, newline + 1)
        fences.append(fence)
        if not fence.closed:
            break
        pos = fence.end
    return fences


def _finish_fence(text: str, start: int, content_start: int, opener: str, pos: int) -> Fence:
    """The fence opened by the complete line `opener`, its closing line searched from `pos`."""
    opened = _FENCE_OPEN.fullmatch(opener)
    assert opened is not None
    indent, marker = opened[1], opened[2]
    size = len(text)
    close_line = _find_closer(text, pos, marker)
    if close_line is None:
        return Fence(
            start=start,
            content_start=content_start,
            content_end=size,
            end=size,
            opener=opener,
            closer=indent + marker,
            closed=False,
            opener_complete=True,
        )
    close_start, close_end = close_line
    return Fence(
        start=start,
        content_start=content_start,
        content_end=close_start,
        end=close_end,
        opener=opener,
        closer=indent + marker,
        closed=True,
        opener_complete=True,
    )


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


def _scan_prose(
    markup: Markup,
    lo: int,
    hi: int,
    *,
    final: bool,
    stack: tuple[_Open, ...] = (),
    probe: bool = False,
) -> tuple[int | None, tuple[int, tuple[_Open, ...]] | None]:
    """Inline constructs of the text between two fences, `stack` open at `lo`.

    Returns where the last blank line ends (a fresh start) and, with `probe` on the part that
    runs to the end, a later resume point inside the last paragraph with the emphasis open there.
    """
    text = markup.text
    runs_to_end = hi == len(text) and not final
    breaks: list[int] = []
    paragraph: int | None = None
    for match in _BLANK_LINE.finditer(text, lo, hi):
        breaks.append(match.start())
        paragraph = match.end()
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
    resume = None
    if probe and runs_to_end:
        resume = _resume_point(text, lo if paragraph is None else paragraph, hi, masked, lo)
    open_at = _scan_emphasis(markup, lo, hi, breaks, runs_to_end, masked, stack, resume)
    if resume is None or open_at is None:
        return paragraph, None
    return paragraph, (resume, open_at)


def _resume_point(text: str, floor: int, hi: int, masked: bytearray, lo: int) -> int | None:
    """The last position in (floor, hi] a scan of any longer text may start over from.

    It follows a space that follows a character other than a space, tab or newline, so no blank
    line, emphasis run or bare URL spans it; it is not inside a code span, atomic span or open
    tail (those never end with a space, so a masked space means one runs on past it), not on a
    fence line, and no link, mention or <url> that contains a space starts before it on its line
    and could still complete. `floor` is a resume point or a line start, so nothing before it
    can.
    """
    limit = hi
    while (space := text.rfind(" ", floor, limit)) > 0:
        if masked[space - lo]:
            limit = lo + masked.rfind(b"\x00", 0, space - lo) + 1
            continue
        if text[space - 1] in " \t\n":
            limit = space
            continue
        line_start = text.rfind("\n", 0, space) + 1
        if _FENCE_LINE.match(text, line_start) is not None:
            limit = line_start
            continue
        partial = _SPACED_PARTIAL.search(text, max(floor, line_start), space + 1)
        if partial is not None:
            limit = partial.start()
            continue
        return space + 1
    return None


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
    stack_at_lo: tuple[_Open, ...] = (),
    snapshot_at: int | None = None,
) -> tuple[_Open, ...] | None:
    """Emphasis pairs; returns the emphasis open at `snapshot_at` (a scan may resume there)."""
    text = markup.text
    stack: list[_Open] = list(stack_at_lo)
    snapshot: tuple[_Open, ...] | None = None
    next_break = 0
    for match in _EMPHASIS.finditer(text, lo, hi):
        start, end = match.span()
        if snapshot_at is not None and snapshot is None and start >= snapshot_at:
            snapshot = _open_at(stack, breaks, next_break, snapshot_at)
        if masked[start - lo]:
            continue
        while next_break < len(breaks) and breaks[next_break] < start:
            stack.clear()  # a blank line ends every open emphasis: those markers are literal
            next_break += 1
        run = match.group()
        if _escaped(text, start, lo):  # `\*` is a literal `*`: the run starts after it
            start, run = start + 1, run[1:]
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
    if snapshot_at is not None and snapshot is None:
        snapshot = _open_at(stack, breaks, next_break, snapshot_at)
    if runs_to_end and next_break == len(breaks):
        for marker, open_start, open_end in stack:
            markup.pairs.append(Pair(marker, open_start, open_end, None, None, False))
    return snapshot


def _escaped(text: str, pos: int, lo: int) -> bool:
    """Whether `text[pos]` follows an odd run of backslashes (a Markdown escape)."""
    count = 0
    while pos - count > lo and text[pos - count - 1] == "\\":
        count += 1
    return count % 2 == 1


def _open_at(stack: list[_Open], breaks: list[int], next_break: int, pos: int) -> tuple[_Open, ...]:
    """The emphasis open at `pos`: a blank line before it not yet applied closes everything."""
    if next_break < len(breaks) and breaks[next_break] < pos:
        return ()
    return tuple(stack)
