"""Model answers for fidelity property tests, the stages a stream shows, and the comparison.

`model_texts()` generates Markdown the way models write it, mixed with what platforms treat
specially: HTML-like tags, `<` `>` `&` and entity references, Slack tokens (`<!channel>`,
`<@U1>`), `@names`, links (web and `tg://user`), `$`, emoji, CJK, emphasis, code, quotes,
rules and unclosed fences. Not generated: backslash escapes (Slack's mrkdwn has none, so a
literal `*` beside emphasis has no faithful form there), tables, images, raw LaTeX.

`stream_stages(text, max_length, measure)` is every text a stream of `text` would show, one
model character at a time: the driver's `GrowingPreview` of each prefix, then `finish_text`.

`without_markdown(text)` is the one comparison all fidelity tests use: applied to the model
text and to what the platform displays, the two must be equal. It removes Markdown syntax and
nothing else, the same way on both sides (so showing syntax literally is allowed, it is what
the model wrote, but losing or changing any other character is not), in this order:

1. every backslash before ASCII punctuation or a line end (escapes, hard breaks);
2. autolink brackets: `<https://x>` -> `https://x`;
3. links: `[label](url)` and `![label](url)` -> `label` (and the 🖼 Telegram draws for images);
4. fence lines (```` ```lang ```` or `~~~`) and thematic breaks (`---`, `***`, `___`, and the
   rule lines platforms draw for them) are removed;
5. at a line start: heading `#`s, quote `>`s, list markers (`-`, `+`, `1.`, `1)`) and the
   markers platforms draw instead (`⦁`, `•`, and Telegram's heading symbols 📌 ✏ 📚 🔖);
6. the emphasis and code characters `*` `_` `~` and backquote, then `||` (spoiler markers);
   5 and 6 repeat until nothing changes (markers nest: `- ## x`, `**#**`);
7. whitespace runs -> one space, and the ends trimmed.

Whitespace is compared only as word separation. Known blind spots, which the generator does
not produce: a code span's padding space, a backslash written inside code, a code span that
spans lines (its line breaks show as spaces, so line-start markers inside it differ).
"""

from __future__ import annotations

import re

from hypothesis import strategies as st

from core.streaming.split import GrowingPreview, Measure, finish_text

_AUTOLINK = re.compile(r"<([A-Za-z][A-Za-z0-9+.-]{1,31}:[^<>\s]*)>")
_LINK = re.compile(r"!?\[([^\[\]\n]*)\]\([^()\s]*\)")
_FENCE_LINE = re.compile(
    r"^[ \t]*(?:`{3,}[^\n]*|~{3,}[^\n]*|(?:[-*_][ \t]*){3,}|[\u2014\u2500]{3,})$", re.MULTILINE
)
_LINE_MARKER = re.compile(
    r"^[ \t]*(?:>|#{1,6}(?=[ \t]|$)|[-+](?=[ \t]|$)|\d{1,9}[.)](?=[ \t]|$)|[\u2981\u2022]"
    r"|\U0001f4cc|\u270f\ufe0f?|\U0001f4da|\U0001f516)",
    re.MULTILINE,
)
_ESCAPE = re.compile(r"\\(?=[!-/:-@\[-`{-~\n]|$)")
_MARKERS = re.compile(r"[*_~`]")
_SPOILER = re.compile(r"\|\|")
_SPACE = re.compile(r"\s+")


def without_markdown(text: str) -> str:
    """`text` with Markdown syntax removed, for comparing model text with what is displayed."""
    text = _ESCAPE.sub("", text)
    text = _AUTOLINK.sub(r"\1", text)
    text = _LINK.sub(r"\1", text).replace("\U0001f5bc", "")
    text = _FENCE_LINE.sub("", text)
    while True:  # `- ## x`, `⦁ 1. x` or `**#**`: markers nest, so repeat until none is left
        stripped = _SPOILER.sub("", _MARKERS.sub("", _LINE_MARKER.sub("", text)))
        if stripped == text:
            break
        text = stripped
    return _SPACE.sub(" ", text).strip()


def stream_stages(text: str, max_length: int, measure: Measure) -> list[str]:
    """What a stream of `text` shows: the preview after each character, then the final text."""
    view = GrowingPreview(max_length, measure)
    stages: list[str] = []
    for end in range(1, len(text) + 1):
        shown = view.preview(text[:end])
        if shown.strip() and (not stages or stages[-1] != shown):
            stages.append(shown)
    final = finish_text(text)
    if final.strip():
        stages.append(final)
    return stages


WORDS = [
    "alpha",
    "beta",
    "x",
    "naïve",
    "δέλτα",
    "日本語",
    "中文字符",
    "e\u0301te\u0301",
    "C#",
    "50%",
]
EMOJI = [
    "\U0001f600",
    "\U0001f44d\U0001f3fd",
    "\U0001f1eb\U0001f1f7",
    "\u2764\ufe0f",
    "\U0001f469\u200d\U0001f4bb",
]
SPECIAL = [
    '<div class="x">',
    "</div>",
    "List<String>",
    "a<b",
    "c>d",
    "1 < 2",
    "<b>bold</b>",
    "<br>",
    "<!-- note -->",
    "<script>",
    "<!channel>",
    "<!here>",
    "<!everyone>",
    "<@U12345>",
    "<#C99|random>",
    "<!subteam^S1>",
    "&",
    "&amp;",
    "&lt;",
    "&#60;",
    "AT&T",
    "@alice",
    "@bob_smith",
    "@everyone",
    "@here",
    "a@b.com",
    "||",
    "a || b",
    "2*3",
    "snake_case",
    "<https://ex.com/x>",
    "[docs](https://ex.com/d)",
    "[me](tg://user?id=42)",
    "[chat](tg://openmessage?user_id=42)",
    "[t](https://t.me/alice)",
    "`a<b>`",
    "`@alice`",
    "$5",
    "$x and y$",
]


def _phrase(draw: st.DrawFn) -> str:
    words = draw(
        st.lists(
            st.one_of(st.sampled_from(WORDS), st.sampled_from(EMOJI), st.sampled_from(SPECIAL)),
            min_size=1,
            max_size=6,
        )
    )
    return " ".join(words)


@st.composite
def _inline(draw: st.DrawFn) -> str:
    parts: list[str] = []
    for _ in range(draw(st.integers(1, 4))):
        phrase = _phrase(draw)
        style = draw(st.sampled_from(["", "", "", "**", "*", "~~", "`"]))
        if style == "`":
            phrase = phrase.replace("`", "")
        parts.append(f"{style}{phrase}{style}" if phrase.strip() else phrase)
    return " ".join(parts)


@st.composite
def _block(draw: st.DrawFn) -> str:
    kind = draw(
        st.sampled_from(["para", "para", "list", "heading", "fence", "html", "quote", "rule"])
    )
    if kind == "quote":
        return "> " + draw(_inline())
    if kind == "rule":
        return "---"
    if kind == "list":
        return "\n".join("- " + draw(_inline()) for _ in range(draw(st.integers(1, 3))))
    if kind == "heading":
        return "#" * draw(st.integers(1, 3)) + " " + draw(_inline())
    if kind == "fence":
        info = draw(st.sampled_from(["", "python", "html"]))
        lines = [_phrase(draw).replace("`", "") for _ in range(draw(st.integers(0, 3)))]
        return "```" + info + "\n" + "".join(line + "\n" for line in lines) + "```"
    if kind == "html":
        return draw(st.sampled_from(["<div>", "<details>", "</p>", "<!-- x -->"]))
    return draw(_inline())


@st.composite
def model_texts(draw: st.DrawFn) -> str:
    """One model answer: 1-4 blocks, sometimes ending inside an unclosed code fence."""
    blocks = draw(st.lists(_block(), min_size=1, max_size=4))
    if draw(st.booleans()) and draw(st.booleans()):
        blocks.append("```\n" + _phrase(draw).replace("`", ""))
    return "\n\n".join(blocks)
