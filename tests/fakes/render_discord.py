"""What a Discord client shows for a message `content`, and whom it pings.

Discord markdown as clients render it: fenced code (```` ```lang ```` first line is the language
only when it is one word), inline code (one or two backquotes) shown as written; elsewhere
backslash escapes, `**bold**`, `*italic*`/`_italic_`, `__underline__`, `~~strike~~`,
`||spoiler||` lose their markers; `#`-`###` headings and `-#` subtext at a line start lose
their markers; list markers show as bullets; `>`/`>>>` quotes lose theirs; `[label](http…)`
shows its label and `<http…>` its URL. Tokens show as the client draws them: `<@id>` and
`<@!id>` as `@unknown-user`, `<@&id>` as `@unknown-role`, `<#id>` as `#unknown`, `<:name:id>`
as `:name:`, `<t:…>` as a date (`[time]`), `</name:id>` as `/name`.

Pings follow the server, which reads the raw content (code included): `<@id>`/`<@!id>`,
`<@&id>`, `@everyone`/`@here`, each only when `allowed_mentions` allows it; without
`allowed_mentions` everything pings. A reply pings its author when `replied_user` is set (or
`allowed_mentions` is absent).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_FENCE = re.compile(r"```(?:([^\s`]+)\n|\n?)(.*?)```", re.DOTALL)
_INLINE = re.compile(r"(``?)(?!`)(.+?)(?<!`)\1(?!`)", re.DOTALL)
_USER = re.compile(r"<@!?(\d+)>")
_ROLE = re.compile(r"<@&(\d+)>")
_EVERYONE = re.compile(r"@(everyone|here)")
_TOKENS = [
    (_USER, "@unknown-user"),
    (_ROLE, "@unknown-role"),
    (re.compile(r"<#\d+>"), "#unknown"),
    (re.compile(r"<a?(:\w+:)\d+>"), r"\1"),
    (re.compile(r"<t:-?\d+(?::[tTdDfFR])?>"), "[time]"),
    (re.compile(r"</([\w -]+):\d+>"), r"/\1"),
]
_LINK = re.compile(r"\[([^\[\]\n]+)\]\(<?(https?://[^\s()<>]+)>?\)")
_AUTOLINK = re.compile(r"<(https?://[^\s<>]+)>")
_ESCAPE = re.compile(r"\\([^\sA-Za-z0-9])")
_LINE = re.compile(r"^(?:>>> |> |#{1,3} |-# )", re.MULTILINE)
_BULLET = re.compile(r"^([ \t]*)(?:[-*]) ", re.MULTILINE)
_PAIRS = [
    re.compile(r"\*\*(?=\S)(.+?)\*\*", re.DOTALL),
    re.compile(r"__(?=\S)(.+?)__", re.DOTALL),
    re.compile(r"~~(?=\S)(.+?)~~", re.DOTALL),
    re.compile(r"\|\|(.+?)\|\|", re.DOTALL),
    re.compile(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])"),
    re.compile(r"\b_(?=\S)([^_\n]+?)(?<=\S)_\b"),
]
_HOLD = "\x00{}\x00"
_HELD = re.compile(r"\x00(\d+)\x00")


@dataclass(frozen=True)
class Shown:
    """A message as a reader sees it: the text, and who was pinged (`user:1`, `everyone`, …)."""

    text: str
    pings: tuple[str, ...]


def show(
    content: str, allowed_mentions: dict[str, Any] | None = None, *, reply: bool = False
) -> Shown:
    """What a client shows for `content`, and the pings the server sends for it."""
    return Shown(_display(content), tuple(pings(content, allowed_mentions, reply=reply)))


def pings(content: str, allowed: dict[str, Any] | None, *, reply: bool = False) -> list[str]:
    """Whom a message with `content` and `allowed_mentions` pings, as the server decides."""
    parse = ["everyone", "users", "roles"] if allowed is None else list(allowed.get("parse", []))
    users = [] if allowed is None else [str(u) for u in allowed.get("users", [])]
    roles = [] if allowed is None else [str(r) for r in allowed.get("roles", [])]
    found: list[str] = []
    if "everyone" in parse:
        found += [m.group(1) for m in _EVERYONE.finditer(content)]
    found += [f"user:{u}" for u in _USER.findall(content) if "users" in parse or u in users]
    found += [f"role:{r}" for r in _ROLE.findall(content) if "roles" in parse or r in roles]
    if reply and (allowed is None or allowed.get("replied_user", False)):
        found.append("replied_user")
    return found


def _display(content: str) -> str:
    held: list[str] = []

    def hold(text: str) -> str:
        held.append(text)
        return _HOLD.format(len(held) - 1)

    text = _FENCE.sub(lambda m: hold(m.group(2).removesuffix("\n")), content)
    text = _INLINE.sub(lambda m: hold(m.group(2)), text)
    text = _ESCAPE.sub(lambda m: hold(m.group(1)), text)
    for pattern, shown in _TOKENS:
        text = pattern.sub(shown, text)
    text = _LINK.sub(lambda m: hold(m.group(1)), text)
    text = _AUTOLINK.sub(lambda m: hold(m.group(1)), text)
    text = _LINE.sub("", text)
    text = _BULLET.sub(r"\1• ", text)
    changed = True
    while changed:
        changed = False
        for pattern in _PAIRS:
            text, count = pattern.subn(r"\1", text)
            changed = changed or count > 0
    while _HELD.search(text):
        text = _HELD.sub(lambda m: held[int(m.group(1))], text)
    return text
