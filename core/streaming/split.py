"""Where a long Markdown answer is cut into platform messages, and what a partial one may show.

Cuts prefer a paragraph break, then a line break, a sentence end, a word boundary and only then a
hard cut; they never land inside a link, a mention token (`<@U1>`, `<#C1|x>`, `<!here>`), a URL,
an inline code span or between characters that render as one symbol, unless nothing else fits.
A cut inside a fenced code block closes the fence at the end of the part and reopens it (with the
same info string) at the start of the next; emphasis (`**`, `*`, `_`, `~~`) open across a cut is
closed and reopened the same way. That markup counts toward `max_length`, the closing fence of
the last part too. While the text still grows, an opener with no closer yet is only closed (at a
cut or in a preview) when it reads as emphasis: `2**10` or `*.py` are left alone.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from core.streaming.markup import (
    Markup,
    ResumableScan,
    TailScan,
    grapheme_safe,
    plausible_opener,
    scan,
)
from core.streaming.sink import count_chars, count_utf16

Measure = Callable[[str], int]

_PARAGRAPH = re.compile(r"\n[ \t]*\n\s*")
_LINE = re.compile(r"\n")
_SENTENCE = re.compile(r"[.!?\u2026\u3002\uff01\uff1f][\"'\u201d\u2019)\]]*\s+")
_WORD = re.compile(r"\s+")
_PARTIAL_CLOSER = re.compile(r" {0,3}(?:`+|~+)")
_MARKER_CHARS = "*_~`"
_NON_SPACE = re.compile(r"\S")
_ADDITIVE: tuple[Measure, ...] = (count_chars, count_utf16)  # measure(a + b) == sum of both
_SLACK = 64  # candidates this far past the last fitting position may still fit after stripping


@dataclass(frozen=True, slots=True)
class Cut:
    """One full part taken off the front of a message text.

    `part == head + text[keep:end] + closing`; the next message is `reopen + text[resume:]`.
    """

    part: str
    end: int
    resume: int
    reopen: str
    head: str
    closing: str


@dataclass(frozen=True, slots=True)
class Piece:
    """One message of a split: `text == prefix + original[start:end] + suffix`."""

    text: str
    start: int
    end: int
    prefix: str
    suffix: str


def cut_full_part(
    text: str,
    max_length: int,
    measure: Measure = count_chars,
    *,
    keep: int = 0,
    final: bool = False,
) -> Cut | None:
    """The first full part of `text`, or None while `text` fits in one message.

    `keep` leading characters (markup reopened from the previous part) stay in front of the part;
    `final=False` treats the end of `text` as still growing (open markup there stays open).
    """
    if max_length < 1:
        raise ValueError("max_length must be positive")
    if final:
        markup = scan(text, final=True)
        kept, suffix = _finish(markup)
        if measure(text[:kept] + suffix) <= max_length:
            return None  # the whole text fits as the last part, its closing fence included
    elif measure(text) <= max_length:
        return None
    else:
        markup = scan(text, final=False)
    limit = _limit_pos(text, max_length, measure)
    for strict in (True, False):
        forbidden = markup.forbidden(strict)
        for candidates, fill in _candidate_classes(markup, limit, keep, strict):
            floor = max(keep + 1, int(limit * fill))
            for pos in candidates:
                if pos < floor:
                    break
                if forbidden[pos]:
                    continue
                cut = _render(markup, pos, keep, limit)
                if cut is not None and measure(cut.part) <= max_length:
                    return cut
    return _last_resort(text, max_length, measure, keep, final)


def split_pieces(text: str, max_length: int, measure: Measure = count_chars) -> list[Piece]:
    """Every message of a finished `text`, with where each one's body lies in `text`."""
    pieces: list[Piece] = []
    message, base, reopen = text, 0, ""
    while cut := cut_full_part(message, max_length, measure, keep=len(reopen), final=True):
        start = base
        end = base + cut.end - len(reopen)
        pieces.append(Piece(cut.part, start, end, cut.head, cut.closing))
        base += cut.resume - len(reopen)
        reopen = cut.reopen
        message = reopen + text[base:]
    last = finish_text(message)
    body = text[base:]
    if last.strip() and body.strip():
        prefix = message[: len(reopen)] if last.startswith(reopen) else ""
        suffix_at = len(prefix) + len(body.rstrip())
        pieces.append(Piece(last, base, base + len(body.rstrip()), prefix, last[suffix_at:]))
    return pieces


def split_final(text: str, max_length: int, measure: Measure = count_chars) -> list[str]:
    """All messages of a finished `text`, each measuring at most `max_length`."""
    return [piece.text for piece in split_pieces(text, max_length, measure)]


def finish_text(text: str) -> str:
    """The last part of a finished answer: trailing space dropped, an unclosed fence closed."""
    kept, suffix = _finish(scan(text, final=True))
    return text[:kept] + suffix


def _finish(markup: Markup) -> tuple[int, str]:
    """`finish_text` of a `final=True` scan as (length of the text kept, markup appended)."""
    text = markup.text
    last = markup.fences[-1] if markup.fences else None
    if last is not None and not last.closed:
        if not last.opener_complete:
            return len(text.rstrip()), "\n" + last.closer
        return last.content_start + len(text[last.content_start :].rstrip("\n")), "\n" + last.closer
    return len(text.rstrip()), ""


def visible_preview(
    text: str, max_length: int | None = None, measure: Measure = count_chars
) -> str:
    """What a still-growing `text` may show: unclosed markup closed, dangling markup hidden.

    With `max_length`, the tail is trimmed until the preview (with its added markup) fits.
    """
    body, added = _preview(text, _full_scan)
    shown = body + added
    if max_length is None or measure(shown) <= max_length:
        return shown
    return _trimmed_preview(text, max_length, measure, _full_scan)


class GrowingPreview:
    """`visible_preview` and the fit check of one message whose text grows by appending.

    The streaming driver asks after every model delta; each call costs time in proportion to
    the text added since the previous one (the markup scan resumes near the end, an additive
    `measure` is kept as a running total), not to the whole text. Any other text works too: one
    that does not extend the previous text is measured and scanned again from the start.
    """

    __slots__ = (
        "_additive",
        "_max_length",
        "_measure",
        "_scan",
        "_shown",
        "_shown_for",
        "_size",
        "_text",
    )

    def __init__(self, max_length: int, measure: Measure = count_chars) -> None:
        self._max_length = max_length
        self._measure = measure
        self._additive = measure in _ADDITIVE
        self._scan = ResumableScan()
        self._text = ""
        self._size = measure("")
        self._shown_for: str | None = None
        self._shown = ""

    def measure(self, text: str) -> int:
        """`measure(text)`."""
        self._sync(text)
        return self._size

    def fits(self, text: str) -> bool:
        """`measure(text) <= max_length`: whether `text` needs no cut yet."""
        self._sync(text)
        return self._size <= self._max_length

    def preview(self, text: str) -> str:
        """`visible_preview(text, max_length, measure)`; an unchanged text is not redone."""
        if text == self._shown_for:
            return self._shown
        self._sync(text)
        scan = self._scan
        body, added = _preview(text, scan.tail)
        if self._additive:
            measure = self._measure
            size = self._size - measure(text[len(body) :]) + measure(added)
        else:
            size = self._measure(body + added)
        if size <= self._max_length:
            shown = body + added
        else:
            shown = _trimmed_preview(text, self._max_length, self._measure, scan.tail)
        self._shown_for, self._shown = text, shown
        return shown

    def _sync(self, text: str) -> None:
        old = self._text
        if text is old:
            return
        if self._additive and text.startswith(old):
            self._size += self._measure(text[len(old) :])
        else:
            self._size = self._measure(text)
        self._scan.sync(text)
        self._text = text


def _trimmed_preview(
    text: str, max_length: int, measure: Measure, summarize: Callable[[str], TailScan]
) -> str:
    """The preview of the longest prefix of `text` whose preview fits in `max_length`."""
    pos = _limit_pos(text, max_length, measure)
    while pos > 0:
        while pos > 0 and not grapheme_safe(text, pos):
            pos -= 1
        body, added = _preview(text[:pos], summarize)
        shown = body + added
        if measure(shown) <= max_length:
            return shown
        pos -= 8
    return ""


def _full_scan(text: str) -> TailScan:
    markup = scan(text, final=False)
    last = markup.fences[-1] if markup.fences else None
    open_pairs = [pair for pair in markup.pairs if pair.close_start is None]
    return TailScan(last, markup.open_tail, open_pairs)


def _preview(text: str, summarize: Callable[[str], TailScan]) -> tuple[str, str]:
    """(a prefix of `text`, markup to add after it): the preview of a still-growing `text`.

    `summarize` scans `text` or a prefix of it (the loop trims from the end and scans again).
    """
    for _ in range(16):  # every round hides something, so this ends quickly
        scanned = summarize(text)
        last = scanned.last_fence
        if last is not None and not last.closed:
            if not last.opener_complete:
                text = text[: last.start].rstrip()
                continue
            body = text
            line_start = body.rfind("\n") + 1
            if line_start >= last.content_start and _PARTIAL_CLOSER.fullmatch(body, line_start):
                body = body[:line_start]
            return body, ("" if body.endswith("\n") else "\n") + last.closer
        prose_start = last.end if last is not None else 0
        trimmed = text.rstrip()
        if len(trimmed) > prose_start:
            # hide markers dangling at the end of the prose (the fence line itself is kept)
            keep = max(prose_start, len(trimmed.rstrip(_MARKER_CHARS)))
            if keep < len(trimmed):
                trimmed = trimmed[:keep].rstrip()
        if scanned.open_tail is not None and scanned.open_tail < len(trimmed):
            trimmed = trimmed[: scanned.open_tail].rstrip()
        if trimmed != text:
            text = trimmed
            continue
        still_open = [pair for pair in scanned.open_pairs if plausible_opener(text, pair)]
        empty = next(
            (pair for pair in still_open if _NON_SPACE.search(text, pair.open_end) is None), None
        )
        if empty is not None:
            text = text[: empty.open_start].rstrip()
            continue
        return text, "".join(pair.marker for pair in reversed(still_open))
    return text, ""


def _limit_pos(text: str, max_length: int, measure: Measure) -> int:
    """The longest prefix length whose measure fits in `max_length`."""
    low, high = 0, len(text)
    while low < high:
        mid = (low + high + 1) // 2
        if measure(text[:mid]) <= max_length:
            low = mid
        else:
            high = mid - 1
    return low


def _candidate_classes(
    markup: Markup, limit: int, keep: int, strict: bool
) -> Iterator[tuple[Iterator[int], float]]:
    """Candidate cut positions, best kind first, each kind from the end backwards."""
    text = markup.text
    upper = min(len(text) - 1, limit + _SLACK)
    if strict:
        fence_edges = [edge for fence in markup.fences for edge in (fence.start, fence.end)]
        yield _descending(_PARAGRAPH, text, keep, upper, fence_edges), 0.5
        yield _descending(_LINE, text, keep, upper), 0.5
        yield _descending(_SENTENCE, text, keep, upper), 0.3
    yield _descending(_WORD, text, keep, upper), 0.0
    yield _hard_positions(text, keep, min(limit, upper)), 0.0


def _descending(
    pattern: re.Pattern[str], text: str, keep: int, upper: int, extra: list[int] | None = None
) -> Iterator[int]:
    ends = {match.end() for match in pattern.finditer(text, keep, upper + 1)}
    ends.update(extra or ())
    return iter(sorted((pos for pos in ends if keep < pos <= upper), reverse=True))


def _hard_positions(text: str, keep: int, upper: int) -> Iterator[int]:
    for pos in range(upper, keep, -1):
        if grapheme_safe(text, pos):
            yield pos


def _render(markup: Markup, pos: int, keep: int, limit: int) -> Cut | None:
    """The part and continuation for a cut at `pos`, or None if the part would be empty."""
    text = markup.text
    fence = markup.fence_at(pos)
    if fence is not None:
        end = pos - 1 if pos > fence.content_start and text[pos - 1] == "\n" else pos
        closing = fence.closer if end > 0 and text[end - 1] == "\n" else "\n" + fence.closer
        reopen, resume = fence.opener + "\n", pos
    else:
        end = pos
        while end > keep and text[end - 1].isspace():
            end -= 1
        resume = pos
        while resume < len(text) and text[resume].isspace():
            resume += 1
        still_open = [
            pair
            for pair in markup.pairs
            if pair.open_end <= end
            and (
                plausible_opener(text, pair)  # no closer yet (streaming): `2**10` is not bold
                if pair.close_start is None
                else pair.close_start >= resume
            )
        ]
        closing = "".join(pair.marker for pair in reversed(still_open))
        reopen = "".join(pair.marker for pair in still_open)
    if end <= keep or end > limit or not text[keep:end].strip():
        return None
    return Cut(text[:end] + closing, end, resume, reopen, text[:keep], closing)


def _last_resort(text: str, max_length: int, measure: Measure, keep: int, final: bool) -> Cut:
    """Nothing fits with its markup: cut the plain text (dropping reopened markup if needed)."""
    limit = _limit_pos(text, max_length, measure)
    if limit > keep:
        pos = next(_hard_positions(text, keep, limit), limit)
        return Cut(text[:pos], pos, pos, "", text[:keep], "")
    body = text[keep:]
    inner = cut_full_part(body, max_length, measure, final=final)
    if inner is None:
        if final:  # the body is the last part: it closes an unclosed fence like `finish_text`
            kept, suffix = _finish(scan(body, final=True))
            return Cut(body[:kept] + suffix, keep + kept, len(text), "", "", suffix)
        return Cut(body, len(text), len(text), "", "", "")
    return Cut(inner.part, keep + inner.end, keep + inner.resume, inner.reopen, "", inner.closing)
