"""Model Markdown to Slack text: mrkdwn for `text`, escaped Markdown for `markdown_text`."""

from __future__ import annotations

import re

# Code fences (``` or ~~~ at a line start, up to the closing line or the end) and inline code.
_CODE = re.compile(
    r"(?P<fence>^[ ]{0,3}(?P<marker>`{3,}|~{3,})[^\n]*"
    r"(?:\n(?P<body>.*?))??(?:\n[ ]{0,3}(?P<closer>(?P=marker))[ \t]*(?=\n|\Z)|\Z))"
    r"|(?P<span>(?P<ticks>`+)(?!`).+?(?<!`)(?P=ticks)(?!`))",
    re.MULTILINE | re.DOTALL,
)
_LINK = re.compile(r"!?\[(?P<label>[^\[\]\n]*)\]\((?P<url>[^()\s]+)(?:\s+\"[^\"\n]*\")?\)")
_SAFE_URL = re.compile(r"(?:https?://|mailto:)[^\s<>|]+\Z", re.IGNORECASE)
_HEADING = re.compile(r"^[ ]{0,3}#{1,6}[ \t]+(?P<title>.+?)(?:[ \t]+#+)?[ \t]*$", re.MULTILINE)
_BULLET = re.compile(r"^(?P<indent>[ \t]*)[-*+][ \t]+", re.MULTILINE)
_BOLD = re.compile(r"(\*\*|__)(?=\S)(?P<body>.+?)(?<=\S)\1", re.DOTALL)
_ITALIC_STAR = re.compile(r"(?<![\w*])\*(?=[^\s*])(?P<body>[^*\n]+?)(?<=\S)\*(?![\w*])")
_STRIKE = re.compile(r"~~(?=\S)(?P<body>.+?)(?<=\S)~~", re.DOTALL)
_RULE = re.compile(r"^[ ]{0,3}(?:[-*_][ \t]*){3,}$", re.MULTILINE)
_ESCAPED = re.compile(r"\\[!-/:-@\[-`{-~]")  # a Markdown backslash escape: `\*` is a literal `*`
# An `&` that Markdown would read as the start of an entity (or numeric character) reference.
_ENTITY_START = re.compile(
    r"(?<!\\)&(?=#[0-9]{1,7};|#[xX][0-9a-fA-F]{1,6};|[A-Za-z][A-Za-z0-9]{1,31};)"
)
_PLACEHOLDER = "\x00{}\x00"
_PLACEHOLDER_RE = re.compile(r"\x00(\d+)\x00")


def escape(text: str) -> str:
    """Escape Slack's three control characters, so no `<!here>` or `<@U1>` can be produced."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_markdown_text(text: str) -> str:
    """Model Markdown for `markdown_text` (native streams): Markdown kept, `& < >` escaped.

    Slack decodes its three escapes in all message text, then reads `markdown_text` as
    standard Markdown, which decodes entity references in prose (not in code). So in prose an
    `&` that starts an entity reference (`&amp;`, `&#60;`) also gets a Markdown backslash, and
    the model's `&amp;` shows as written. docs/slack.md, "How text is escaped", has the sources.
    A stream appends the difference between the renderings of two texts (`SlackSink`).
    """
    out: list[str] = []
    pos = 0
    for match in _CODE.finditer(text):
        out.append(_ENTITY_START.sub(r"\&", text[pos : match.start()]))
        out.append(match.group(0))
        pos = match.end()
    out.append(_ENTITY_START.sub(r"\&", text[pos:]))
    return escape("".join(out))


def to_mrkdwn(text: str) -> str:
    """Model Markdown to Slack mrkdwn for `text`: code kept verbatim (escaped), prose converted.

    `**bold**` becomes `*bold*`, `*italic*` `_italic_`, `~~strike~~` `~strike~`, headings bold
    lines, `- item` `• item`, `[label](https://x)` `<https://x|label>` (other link targets stay
    plain text). Everything the model wrote is escaped, so it cannot mention anyone.
    """
    out: list[str] = []
    pos = 0
    for match in _CODE.finditer(text):
        out.append(_prose(text, pos, match.start()))
        out.append(_code(match))
        pos = match.end()
    out.append(_prose(text, pos, len(text)))
    return "".join(out)


def _code(match: re.Match[str]) -> str:
    if match.group("fence") is None:
        return escape(match.group(0))
    # mrkdwn has no info string (```python would show "python" as code): drop it
    body = (match.group("body") or "").rstrip("\n")
    return "```\n" + escape(body) + "\n```"


def _prose(source: str, start: int, end: int) -> str:
    """The prose `source[start:end]` in mrkdwn; code may share its first and last line.

    A line is a rule only if all of it lies in this prose (`- **` before a code span on its
    line is not a rule), and a heading or a list item only if it starts in it.
    """
    text = source[start:end]
    if not text:
        return text
    opens_line = start == 0 or source[start - 1] == "\n"
    closes_line = end == len(source) or source[end] == "\n"
    saved: list[str] = []

    def line_start(match: re.Match[str]) -> bool:
        return opens_line or match.start() > 0

    def whole_line(match: re.Match[str]) -> bool:
        return line_start(match) and (closes_line or match.end() < len(text))

    def keep(rendered: str) -> str:
        saved.append(rendered)
        return _PLACEHOLDER.format(len(saved) - 1)

    def link(match: re.Match[str]) -> str:
        url, label = match.group("url"), match.group("label").strip()
        if not _SAFE_URL.match(url):
            return match.group(0)
        label = label.replace("|", "/").replace("*", "").strip()
        rendered = f"<{escape(url)}|{escape(label)}>" if label else f"<{escape(url)}>"
        return keep(rendered)

    text = _ESCAPED.sub(lambda m: keep(escape(m.group(0))), text)  # mrkdwn has no escapes
    text = _LINK.sub(link, text)
    text = escape(text)
    text = _RULE.sub(lambda m: "──────────" if whole_line(m) else m.group(0), text)
    text = _HEADING.sub(
        lambda m: keep(_heading(m)) if line_start(m) else m.group(0),
        text,
    )
    text = _BOLD.sub(lambda m: keep(f"*{_strip_emphasis(m.group('body'))}*"), text)
    text = _STRIKE.sub(lambda m: keep(f"~{m.group('body')}~"), text)
    text = _BULLET.sub(lambda m: f"{m.group('indent')}• " if line_start(m) else m.group(0), text)
    text = _ITALIC_STAR.sub(lambda m: f"_{m.group('body')}_", text)
    while _PLACEHOLDER_RE.search(text):  # a placeholder may hold others (a bold link)
        text = _PLACEHOLDER_RE.sub(lambda m: saved[int(m.group(1))], text)
    return text


def _heading(match: re.Match[str]) -> str:
    """A heading as a bold line; space after it stays (code may follow on the line)."""
    line = match.group(0)
    return f"*{_strip_emphasis(match.group('title'))}*" + line[len(line.rstrip(" \t")) :]


def _strip_emphasis(text: str) -> str:
    return text.replace("**", "").replace("__", "")
