"""What a Telegram client shows for a bot message: its text, and whom the message mentions.

Applied like the Bot API and TDLib do it. With `entities` (or no formatting at all) the shown
text is `text` itself; entities only style it, and a `text_link` shows its own text. With
`parse_mode="HTML"` the tags become entities and `&lt;` `&gt;` `&amp;` `&quot;` are decoded; an
unsupported tag or a stray `<` or `&` is refused (`can't parse entities`), as Telegram does.

Mentions (a user is notified): a `text_mention` entity; a `text_link` (or HTML `<a href>`) to
`tg://user?id=N` in any of the spellings TDLib accepts (`tg:user?id=`, any case, extra
parameters), which the server turns into a `text_mention`; and `@username` in the text, which
the server detects by itself unless it lies under an entity that cannot be split (`code`,
`pre`, `text_link`, `text_mention`, `custom_emoji`). Bold, italic and the like do not stop it.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

_UNSPLITTABLE = frozenset({"code", "pre", "text_link", "text_mention", "custom_emoji"})
# Telegram usernames are 5-32 characters; shorter collectible names exist: flag from 3, so the
# fake is never kinder than the platform. A name directly after a word character (an email
# address) is not a mention.
_USERNAME = re.compile(r"(?<![A-Za-z0-9_])@([A-Za-z0-9_]{3,})")
_HTML_TAGS = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
    "a": "text_link",
    "tg-emoji": "custom_emoji",
}
_HTML_TOKEN = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9-]*)((?:\s+[^<>]*)?)>|<|&(?:lt|gt|amp|quot);|&")
_HREF = re.compile(r"""href\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))""", re.IGNORECASE)


class ParseError(ValueError):
    """Telegram refuses the formatting: `Bad Request: can't parse entities`."""


@dataclass(frozen=True)
class Shown:
    """A message as a reader sees it: the text, and who was mentioned (`user:N`, `@name`)."""

    text: str
    mentions: tuple[str, ...]


def show(
    text: str, entities: list[dict[str, Any]] | None = None, parse_mode: str | None = None
) -> Shown:
    """What a client shows for a message sent with `text` plus `entities` or `parse_mode`."""
    if parse_mode is not None:
        if parse_mode.upper() != "HTML":
            raise NotImplementedError(f"parse_mode {parse_mode} is not rendered by this fake")
        text, entities = parse_html(text)
    entities = list(entities or [])
    mentions: list[str] = []
    units = _utf16_starts(text)
    blocked: list[tuple[int, int]] = []
    for entity in entities:
        kind = entity.get("type")
        start, end = entity["offset"], entity["offset"] + entity["length"]
        if kind == "text_mention":
            mentions.append(f"user:{entity.get('user', {}).get('id')}")
        elif kind == "text_link":
            user = tg_user_link(str(entity.get("url", "")))
            if user is not None:
                mentions.append(f"user:{user}")
        if kind in _UNSPLITTABLE:
            blocked.append((start, end))
    for match in _USERNAME.finditer(text):
        start, end = units[match.start()], units[match.end()]
        if not any(s < end and start < e for s, e in blocked):
            mentions.append("@" + match.group(1))
    return Shown(text, tuple(mentions))


def tg_user_link(url: str) -> int | None:
    """The user a link mentions, by TDLib's rule: `tg:` [`//`] `user` [`/`] `?` … `id=N`."""
    lowered = url.strip().lower()
    if not lowered.startswith("tg:"):
        return None
    rest = lowered[3:].removeprefix("//")
    if not rest.startswith("user"):
        return None
    rest = rest[4:].removeprefix("/")
    if not rest.startswith("?"):
        return None
    query = parse_qs(rest[1:].split("#", 1)[0])
    for value in query.get("id", []):
        if value.isdigit():
            return int(value)
    return None


def parse_html(markup: str) -> tuple[str, list[dict[str, Any]]]:
    """Bot API HTML: the plain text and its entities (UTF-16 offsets); ParseError if refused."""
    out: list[str] = []
    size = 0
    stack: list[tuple[str, str, int, dict[str, Any]]] = []
    entities: list[dict[str, Any]] = []
    pos = 0
    for match in _HTML_TOKEN.finditer(markup):
        chunk = markup[pos : match.start()]
        out.append(chunk)
        size += _utf16_len(chunk)
        pos = match.end()
        token = match.group(0)
        if token in ("<", "&"):
            raise ParseError(f"can't parse entities: unexpected {token!r}")
        if token.startswith("&"):
            char = html.unescape(token)
            out.append(char)
            size += _utf16_len(char)
            continue
        closing, tag, attrs = match.group(1), match.group(2).lower(), match.group(3) or ""
        if tag not in _HTML_TAGS and not (tag == "span" and "tg-spoiler" in attrs):
            raise ParseError(f"can't parse entities: unsupported start tag {tag!r}")
        kind = "spoiler" if tag == "span" else _HTML_TAGS[tag]
        if closing:
            if not stack or stack[-1][0] != tag:
                raise ParseError(f"can't parse entities: can't find end tag for {tag}")
            _tag, opened, start, extra = stack.pop()
            if size > start:
                entities.append({"type": opened, "offset": start, "length": size - start, **extra})
            continue
        extra: dict[str, Any] = {}
        if kind == "text_link":
            href = _HREF.search(attrs)
            url = next((g for g in href.groups() if g is not None), "") if href else ""
            url = html.unescape(url)
            user = tg_user_link(url)
            if user is not None:  # the server makes a user link a mention
                kind, extra = "text_mention", {"user": {"id": user}}
            else:
                extra = {"url": url}
        stack.append((tag, kind, size, extra))
    if stack:
        raise ParseError(f"can't parse entities: can't find end tag for {stack[-1][0]}")
    out.append(markup[pos:])
    return "".join(out), entities


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _utf16_starts(text: str) -> list[int]:
    """UTF-16 offset of every character position of `text` (and of its end)."""
    starts = [0]
    for char in text:
        starts.append(starts[-1] + (2 if ord(char) > 0xFFFF else 1))
    return starts
