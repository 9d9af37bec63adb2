"""Splitting: boundaries, fences, inline markup, UTF-16 measure, previews, random texts, and
incremental previews of growing texts."""

from __future__ import annotations

import random
import re
from collections.abc import Callable

import pytest

from core.streaming import (
    count_chars,
    count_utf16,
    cut_full_part,
    markup,
    split_final,
    split_pieces,
    visible_preview,
)
from core.streaming.markup import ResumableScan, ResumePoint, grapheme_safe, scan
from core.streaming.split import GrowingPreview
from tests.fakes.random_markdown import random_markdown

FENCE_LINE = re.compile(r"^ {0,3}(?:```|~~~)", re.MULTILINE)


def fence_lines(text: str) -> int:
    return len(FENCE_LINE.findall(text))


def outside_code(text: str) -> str:
    """`text` without fenced blocks and inline code spans."""
    kept: list[str] = []
    inside = False
    for line in text.split("\n"):
        if FENCE_LINE.match(line):
            inside = not inside
            continue
        if not inside:
            kept.append(line)
    return re.sub(r"`[^`]*`", "", "\n".join(kept))


# -- boundaries -------------------------------------------------------------------------------


def test_text_that_fits_is_not_cut() -> None:
    assert cut_full_part("short", 10) is None
    assert cut_full_part("short", 5) is None
    assert split_final("short  \n", 10) == ["short"]


def test_prefers_paragraph_then_line_then_sentence_then_word() -> None:
    para = "First paragraph is here.\n\nSecond paragraph is longer than that."
    assert split_final(para, 40) == [
        "First paragraph is here.",
        "Second paragraph is longer than that.",
    ]

    lines = "one line of text\nanother line of text\nthird"
    assert split_final(lines, 40)[0] == "one line of text\nanother line of text"

    sentences = "This is one sentence. This is another one that is long. End"
    assert split_final(sentences, 40) == [
        "This is one sentence.",
        "This is another one that is long. End",
    ]

    words = "alpha beta gamma delta epsilon zeta eta theta"
    parts = split_final(words, 20)
    assert parts == ["alpha beta gamma", "delta epsilon zeta", "eta theta"]


def test_a_far_paragraph_break_loses_to_a_near_line_break() -> None:
    text = "a\n\n" + "word " * 10 + "\n" + "more " * 10
    part = split_final(text, 70)[0]
    assert part.endswith("word")  # the line break at ~55 beats the paragraph break at 2


def test_hard_cut_when_there_is_no_boundary() -> None:
    text = "x" * 25
    assert split_final(text, 10) == ["x" * 10, "x" * 10, "x" * 5]


def test_hard_cut_keeps_graphemes_together() -> None:
    flags = "\U0001f1eb\U0001f1f7" * 6  # six French flags, 12 code points, no spaces
    parts = split_final(flags, 5)
    assert all(len(part) % 2 == 0 for part in parts)
    assert "".join(parts) == flags
    accented = "e\u0301" * 8
    parts = split_final(accented, 5)
    assert all(not part.startswith("\u0301") for part in parts)
    assert "".join(parts) == accented
    thumbs = "\U0001f44d\U0001f3fd" * 5  # thumbs up + skin tone
    assert all(len(part) % 2 == 0 for part in split_final(thumbs, 3))


# -- atomic spans -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "token",
    [
        "<@U123ABC>",
        "<#C0123|general-chat>",
        "<!here>",
        "<!subteam^S123|@oncall team>",
        "[the docs](https://example.com/docs/page)",
        "`some inline code here`",
        "https://example.com/a/very/long/path/name",
    ],
)
def test_never_cuts_inside_tokens(token: str) -> None:
    for offset in range(30):
        text = "w " * offset + token + " tail words follow here"
        parts = split_final(text, 45)
        assert all(len(part) <= 45 for part in parts)
        assert any(token in part for part in parts), (offset, parts)


def test_a_token_longer_than_the_limit_is_cut_anyway() -> None:
    url = "https://example.com/" + "a" * 60
    parts = split_final(f"see {url}", 30)
    assert all(len(part) <= 30 for part in parts)
    assert "".join(parts).replace("see", "", 1) == url


# -- code fences ---------------------------------------------------------------------------------


def test_fence_is_closed_and_reopened_with_its_info_string() -> None:
    code = "\n".join(f"print({i})" for i in range(30))
    text = f"Here:\n\n```python\n{code}\n```\n\nDone."
    parts = split_final(text, 80)
    assert len(parts) > 2
    for part in parts:
        assert len(part) <= 80
        assert fence_lines(part) % 2 == 0
    for part in parts[1:-1]:
        assert part.startswith("```python\n")
        assert part.endswith("\n```")
    body = "\n".join(
        line for part in parts for line in part.split("\n") if line.startswith("print(")
    )
    assert body == code


def test_closing_markup_counts_toward_the_limit_in_utf16() -> None:
    code = "\n".join("\U0001f600" * 5 for _ in range(20))  # each line is 10 UTF-16 units
    text = f"```\n{code}\n```"
    parts = split_final(text, 50, count_utf16)
    assert all(count_utf16(part) <= 50 for part in parts)
    assert any(len(part) < count_utf16(part) for part in parts)
    assert all(fence_lines(part) == 2 for part in parts)


def test_cut_prefers_the_edge_of_a_code_block() -> None:
    text = "Intro text here.\n\n```\nshort code\n```\n\n" + "Tail words. " * 6
    parts = split_final(text, 60)
    assert parts[0] == "Intro text here.\n\n```\nshort code\n```"


def test_tilde_fences_and_longer_backtick_fences_reopen_the_same_way() -> None:
    text = "~~~ruby\n" + "puts 1\n" * 12 + "~~~"
    parts = split_final(text, 40)
    assert all(part.startswith("~~~ruby\n") and part.endswith("\n~~~") for part in parts)
    text = "````md\n" + "```\ninner\n```\n" * 5 + "````"
    parts = split_final(text, 40)
    assert all(part.startswith("````md\n") and part.endswith("````") for part in parts)


def test_streaming_cut_inside_an_unclosed_fence() -> None:
    text = "```js\n" + "let x = 1;\n" * 10
    cut = cut_full_part(text, 50)
    assert cut is not None
    part, rest = cut.part, cut.reopen + text[cut.resume :]
    assert part.startswith("```js\n") and part.endswith("\n```") and len(part) <= 50
    assert rest.startswith("```js\nlet x = 1;")


def test_finished_text_gets_its_unclosed_fence_closed() -> None:
    assert split_final("Code:\n\n```sh\nls -l\n\n", 100) == ["Code:\n\n```sh\nls -l\n```"]
    assert split_final("Code:\n```sh", 100) == ["Code:\n```sh\n```"]
    assert split_final("**not closed", 100) == ["**not closed"]


# -- inline markup -------------------------------------------------------------------------------


def test_bold_across_a_cut_is_closed_and_reopened() -> None:
    text = "Start **" + "bold words " * 8 + "end** after"
    parts = split_final(text, 40)
    assert all(len(part) <= 40 for part in parts)
    for part in parts:
        assert part.count("**") % 2 == 0, parts
    assert parts[0].startswith("Start **") and parts[0].endswith("**")
    assert parts[1].startswith("**") and parts[1][2] != " "


def test_italic_strike_and_code_spans_stay_balanced() -> None:
    text = "A _slanted " + "word " * 10 + "here_ and ~~struck " + "word " * 10 + "out~~."
    for part in split_final(text, 35):
        assert part.count("~~") % 2 == 0
        assert len(re.findall(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])", part)) % 2 == 0, part


def test_intraword_underscores_and_bullets_are_not_markup() -> None:
    text = "* item with snake_case_name\n* another_item here\n" * 4
    for part in split_final(text, 40):
        assert not part.endswith("_") and not part.startswith("_")


def test_streaming_open_bold_at_the_end_is_closed_in_the_part() -> None:
    text = "Words here **then a long bold run that has not closed yet"
    cut = cut_full_part(text, 40)
    assert cut is not None
    assert cut.part.endswith("**") and cut.reopen == "**"


# -- previews --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("partial", "shown"),
    [
        ("Hello **wor", "Hello **wor**"),
        ("Hello **", "Hello"),
        ("Hello *", "Hello"),
        ("Hello `co", "Hello `co`"),
        ("Hello `", "Hello"),
        ("a ~~strike", "a ~~strike~~"),
        ("**bold**", "**bold**"),
        ("x\n```py", "x"),
        ("x\n```py\nprint(1)", "x\n```py\nprint(1)\n```"),
        ("x\n```py\nprint(1)\n``", "x\n```py\nprint(1)\n```"),
        ("x\n```py\nprint(1)\n```", "x\n```py\nprint(1)\n```"),
        ("see [link](http://ex", "see"),
        ("see [link", "see"),
        ("hi <@U12", "hi"),
        ("hi <@U12> there", "hi <@U12> there"),
        ("snake_case_", "snake_case"),
        ("**bold and `code", "**bold and `code`**"),
        ("", ""),
    ],
)
def test_visible_preview(partial: str, shown: str) -> None:
    assert visible_preview(partial) == shown


def test_preview_is_trimmed_to_fit_with_its_added_markup() -> None:
    text = "```\n" + "y" * 46
    assert len(text) == 50
    shown = visible_preview(text, 50)
    assert len(shown) <= 50 and shown.endswith("\n```") and shown.startswith("```\nyyy")


# -- properties on random texts -------------------------------------------------------------------


def check_split(text: str, max_length: int, measure: object) -> None:
    assert callable(measure)
    pieces = split_pieces(text, max_length, measure)
    assert pieces or not text.strip()
    position = 0
    for piece in pieces:
        assert measure(piece.text) <= max_length, (max_length, piece.text)
        assert piece.text == piece.prefix + text[piece.start : piece.end] + piece.suffix
        assert not text[position : piece.start].strip(), "text lost between parts"
        assert re.fullmatch(r"(?:(?:```|~~~)[^\n]*\n|[*_~`]*)", piece.prefix), piece.prefix
        assert re.fullmatch(r"\s*(?:```|~~~)?|[*_~`]*", piece.suffix), piece.suffix
        assert fence_lines(piece.text) % 2 == 0, piece.text
        plain = outside_code(piece.text)
        assert plain.count("**") % 2 == 0, piece.text
        assert plain.count("~~") % 2 == 0, piece.text
        assert grapheme_safe(text, piece.start) and grapheme_safe(text, piece.end)
        position = piece.end
    assert not text[position:].strip(), "text lost at the end"


@pytest.mark.parametrize("seed", range(60))
def test_random_texts_split_losslessly(seed: int) -> None:
    rng = random.Random(seed)
    text = random_markdown(rng)
    for max_length in (48, 64, 100, 173, 400, 4096):
        check_split(text, max_length, count_chars)
        check_split(text, max_length, count_utf16)


@pytest.mark.parametrize("seed", range(20))
def test_random_prefixes_preview_within_limits(seed: int) -> None:
    rng = random.Random(1000 + seed)
    text = random_markdown(rng)
    for _ in range(20):
        prefix = text[: rng.randint(0, len(text))]
        shown = visible_preview(prefix, 100, count_utf16)
        assert count_utf16(shown) <= 100
        assert fence_lines(shown) % 2 == 0, shown
        assert outside_code(shown).count("**") % 2 == 0, shown


# -- incremental previews of growing texts ----------------------------------------------------

# Pieces that stress where a resumed scan could go wrong: markup split across updates, links and
# mentions with spaces (complete, partial, or swallowing other tokens), fence-like lines,
# blank lines made of spaces, lone markers.
FRAGMENTS = [
    "**", "*", "_", "__", "~~", "`", "``", "```", "~~~", "```py\n", "\n```\n", "\n   ```\n",
    "````", "```a`b\n", "\n\n", "\n", "\n \n", " ", "  ", "    ", "\t", "[", "]", "(", ")",
    "](", "<", ">", "!", ":", "<@U1", "<#C1|a b>", "<!here>", "<h", "<https://x y>",
    "<mailto:a b", "<@U [a](b) more>", "http://e.x/a", "https://", "![i](u)", "[a b](c d)",
    "`code`", "word", "x", "snake_case", ".", "\u00e9", "\U0001f600", "\u200d",
]  # fmt: skip


def tricky_markdown(rng: random.Random) -> str:
    return "".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(1, 150)))


def random_text(rng: random.Random) -> str:
    return random_markdown(rng) if rng.random() < 0.6 else tricky_markdown(rng)


def assert_same_preview(
    view: GrowingPreview, text: str, max_length: int, measure: Callable[[str], int]
) -> None:
    assert view.preview(text) == visible_preview(text, max_length, measure), repr(text)
    assert view.measure(text) == measure(text)
    assert view.fits(text) == (measure(text) <= max_length)


@pytest.mark.parametrize("seed", range(16))
def test_incremental_preview_equals_the_full_preview_on_every_prefix(seed: int) -> None:
    rng = random.Random(2000 + seed)
    text = random_markdown(rng) if seed % 2 else tricky_markdown(rng) + random_markdown(rng)
    text = text[:1600]
    # a limit the text stays under (the driver cuts before), and one its previews outgrow
    for max_length, measure, upto in ((10**6, count_chars, len(text)), (120, count_utf16, 400)):
        view = GrowingPreview(max_length, measure)
        for end in range(min(upto, len(text)) + 1):
            assert_same_preview(view, text[:end], max_length, measure)


@pytest.mark.parametrize("seed", range(24))
def test_incremental_preview_follows_texts_that_shrink_or_change(seed: int) -> None:
    rng = random.Random(3000 + seed)
    max_length, measure = rng.choice([(10**6, count_chars), (150, count_utf16), (60, count_chars)])
    view = GrowingPreview(max_length, measure)
    source = random_text(rng)
    text = ""
    for _ in range(250):
        roll = rng.random()
        if roll < 0.55:  # grow (mostly along the source, like a model)
            if source.startswith(text) and len(text) < len(source):
                text = source[: len(text) + rng.randint(1, 8)]
            else:
                text += rng.choice(FRAGMENTS)
        elif roll < 0.7:  # shrink to a prefix
            text = text[: rng.randint(0, len(text))]
        elif roll < 0.85 and text:  # change something before the end
            at = rng.randrange(len(text))
            text = text[:at] + rng.choice(FRAGMENTS) + text[at + 1 :]
        elif roll < 0.95:  # the same text again, as a new object
            text = "".join(list(text))
        else:  # something else entirely
            source = random_text(rng)
            text = source[: rng.randint(0, len(source))]
        assert_same_preview(view, text, max_length, measure)


@pytest.mark.parametrize("seed", range(10))
def test_resumed_scan_matches_a_full_scan(seed: int) -> None:
    """What a preview reads from a scan, for the growing text and for prefixes trimmed off it."""
    rng = random.Random(4000 + seed)
    text = (random_text(rng) + random_text(rng))[:1500]
    resumable = ResumableScan()
    for end in range(len(text) + 1):
        current = text[:end]
        resumable.sync(current)
        for size in sorted({end, max(0, end - rng.randint(1, 40))}):
            prefix = current[:size]
            tail = resumable.tail(prefix)
            full = scan(prefix, final=False)
            assert tail.last_fence == (full.fences[-1] if full.fences else None), prefix
            assert tail.open_tail == full.open_tail, prefix
            assert tail.open_pairs == [p for p in full.pairs if p.close_start is None], prefix


def test_incremental_preview_rescans_only_the_end(monkeypatch: pytest.MonkeyPatch) -> None:
    scanned: list[int] = []
    real = markup._scan_from

    def spy(
        found: markup.Markup, start: ResumePoint, *, final: bool, probe: bool = False
    ) -> ResumePoint | None:
        scanned.append(len(found.text) - start.pos)
        return real(found, start, final=final, probe=probe)

    monkeypatch.setattr(markup, "_scan_from", spy)
    rng = random.Random(5)
    text = "\n\n".join(random_markdown(rng) for _ in range(8))
    assert len(text) > 4000
    view = GrowingPreview(10**6, count_utf16)
    for end in range(1, len(text) + 4, 4):
        view.preview(text[:end])
    assert max(scanned) <= 200  # the text since a resume point near the end, not the message
    calls = len(scanned)
    view.preview(text)
    view.preview("".join(list(text)))
    assert len(scanned) == calls  # an unchanged text is not scanned again


# -- the last part counts the fence it is closed with ----------------------------------------


def unclosed_code_answer(size: int) -> str:
    body = "Here is the code:\n\n```python\n" + "\n".join(f"x{i} = {i}  # step" for i in range(200))
    return body[:size]


def test_last_part_that_fits_only_without_its_closing_fence_is_cut() -> None:
    text = unclosed_code_answer(1998)  # ends inside the fence: "\n```" makes it 2002
    assert cut_full_part(text, 2000) is None  # still growing: nothing is closed yet
    parts = split_final(text, 2000)
    assert len(parts) == 2 and all(len(part) <= 2000 for part in parts), [len(p) for p in parts]
    assert parts[0].endswith("\n```") and parts[1].startswith("```python\n")
    assert parts[1].endswith("\n```")
    cut = cut_full_part(text, 2000, final=True)
    assert cut is not None and len(cut.part) <= 2000
    check_split(text, 2000, count_chars)


@pytest.mark.parametrize("size", [1995, 1996, 1997, 1998, 1999, 2000])
def test_finished_text_at_the_limit_keeps_every_part_within_it(size: int) -> None:
    text = unclosed_code_answer(size)
    for measure in (count_chars, count_utf16):
        parts = split_final(text, 2000, measure)
        assert all(measure(part) <= 2000 for part in parts)
        assert parts[-1].endswith("```")


def unfinished_markdown(rng: random.Random) -> str:
    """A random answer cut off anywhere: often inside a fence, an emphasis run or a token."""
    text = random_markdown(rng)
    roll = rng.random()
    if roll < 0.3:
        text += "\n\n```" + rng.choice(["", "python", "text title=x"]) + "\n"
        text += "\n".join("    code = line" for _ in range(rng.randint(0, 8)))
    elif roll < 0.5:
        text += " **" + " ".join(["open", "bold", "words"][: rng.randint(1, 3)])
    elif roll < 0.6:
        text += " _open italic"
    return text[: rng.randint(len(text) // 2, len(text))]


def check_final_lengths(text: str, max_length: int, measure: Callable[[str], int]) -> None:
    """Every message of the split fits, and no text is lost between or after them."""
    pieces = split_pieces(text, max_length, measure)
    assert [piece.text for piece in pieces] == split_final(text, max_length, measure)
    position = 0
    for piece in pieces:
        assert measure(piece.text) <= max_length, (max_length, piece.text)
        assert piece.text == piece.prefix + text[piece.start : piece.end] + piece.suffix
        assert not text[position : piece.start].strip(), "text lost between parts"
        position = piece.end
    assert not text[position:].strip(), "text lost at the end"


@pytest.mark.parametrize("seed", range(80))
def test_every_final_part_fits_even_when_the_text_ends_inside_markup(seed: int) -> None:
    rng = random.Random(6000 + seed)
    text = unfinished_markdown(rng)
    for measure in (count_chars, count_utf16):
        size = measure(text)
        near = [size + delta for delta in range(-6, 3) if size + delta >= 40]
        limits = [*near, *(rng.randint(40, 600) for _ in range(6))]
        for max_length in limits:
            check_final_lengths(text, max_length, measure)


# -- openers still waiting for their closer ---------------------------------------------------


@pytest.mark.parametrize(
    "opening",
    ["Compute 3*4 first. ", "In Python 2**10 is 1024. ", "Delete all *.py files first. "],
)
def test_streaming_cut_does_not_close_an_opener_that_is_not_emphasis(opening: str) -> None:
    text = opening + " ".join(["word"] * 60) + " and then more text follows here"
    growing = cut_full_part(text, 200, final=False)
    finished = cut_full_part(text, 200, final=True)
    assert growing is not None and finished is not None
    assert growing.reopen == "" and not growing.part.endswith("*"), growing.part[-20:]
    assert growing.part == finished.part and growing.resume == finished.resume


@pytest.mark.parametrize(
    ("opening", "marker"),
    [("Words here **", "**"), ("Some *", "*"), ("A (**", "**"), ("日本語**", "**"), ("x ~~", "~~")],
)
def test_streaming_cut_still_closes_a_real_opener(opening: str, marker: str) -> None:
    text = opening + "then a long run " * 5 + "that has not closed yet"
    cut = cut_full_part(text, 60)
    assert cut is not None
    assert cut.part.endswith(marker) and cut.reopen == marker
    assert cut.part.count(marker) == 2


@pytest.mark.parametrize(
    ("partial", "shown"),
    [
        ("Delete all *.py files first. and then", "Delete all *.py files first. and then"),
        ("In Python 2**10 is", "In Python 2**10 is"),
        ("Compute 3*4 and", "Compute 3*4 and"),
        ("glob **/*.md and", "glob **/*.md and"),
        ("a *, b", "a *, b"),
        ("Hello **wor", "Hello **wor**"),
        ("Note *this", "Note *this*"),
        ("**(optional) part", "**(optional) part**"),
        ('**"quoted" part', '**"quoted" part**'),
        ("**`f()` call", "**`f()` call**"),
        ("**\u26a0\ufe0f warning", "**\u26a0\ufe0f warning**"),
        ("**5 items", "**5 items**"),
        ("日本語**強調", "日本語**強調**"),
        ("**bold with *.py inside", "**bold with *.py inside**"),
    ],
)
def test_preview_closes_only_openers_that_read_as_emphasis(partial: str, shown: str) -> None:
    assert visible_preview(partial) == shown
    view = GrowingPreview(10**6)
    for end in range(len(partial) + 1):
        view.preview(partial[:end])
    assert view.preview(partial) == shown
