"""What a Slack client shows for a bot message: its text, and whom the message notifies.

Two inputs, rendered as Slack does:

* mrkdwn `text` (chat.postMessage / chat.update): `<…>` tokens first, in the wire text:
  `<@U…>`/`<@W…>` (a user), `<!here>`, `<!channel>`, `<!everyone>`, `<!subteam^…>` notify and
  show as `@name`; `<#C…|name>` shows `#name`; `<!date^…|fallback>` its fallback; `<url|label>`
  its label and `<url>` the URL; a token is found inside code as well. Then code (```` ``` ````
  blocks, backquoted spans) is kept as it is, `*bold*`, `_italic_` and `~strike~` lose their
  markers, and the three escapes `&lt;` `&gt;` `&amp;` are decoded (nothing else is: `&quot;`
  stays). With `link_names`, bare `@here`/`@channel`/`@everyone` notify too.
* `markdown_text` (native streams, `markdown` blocks): mention tokens `<@U…>`/`<!here>` in the
  wire text notify; then the three escapes are decoded (Slack's rule for all message text) and
  the result is read as CommonMark (pulldown-cmark), where an entity reference such as `&lt;`
  shows as `<` and code is verbatim. Slack renders no HTML: a tag is shown as text. (Slack does
  not document how the `markdown` block treats its escapes; this is the reading under which
  the escaped code of `to_markdown_text` shows as written.)
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import pyromark

_TOKEN = re.compile(r"<([^<>\n]*)>")
_CODE = re.compile(r"```.*?```|`[^`\n]+`", re.DOTALL)
_EMPHASIS = [
    re.compile(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])"),
    re.compile(r"(?<![\w_])_(?=\S)([^_\n]+?)(?<=\S)_(?![\w_])"),
    re.compile(r"(?<![\w~])~(?=\S)([^~\n]+?)(?<=\S)~(?![\w~])"),
]
_MENTION_TOKEN = re.compile(
    r"<(?:@[UW][A-Z0-9]+|!(?:here|channel|everyone)|!subteam\^[A-Z0-9]+)(?:\|[^<>]*)?>"
)
_BARE = re.compile(r"(?<![\w@])@(here|channel|everyone)\b")
_BLOCK_ENDS = frozenset({"Paragraph", "CodeBlock", "HtmlBlock", "Table", "TableRow"})
_OPTIONS = (
    pyromark.Options.ENABLE_TABLES
    | pyromark.Options.ENABLE_STRIKETHROUGH
    | pyromark.Options.ENABLE_TASKLISTS
)


@dataclass(frozen=True)
class Shown:
    """A message as a reader sees it: the text, and who was notified (`U1`, `here`, …)."""

    text: str
    mentions: tuple[str, ...]


def show_mrkdwn(text: str, *, link_names: bool = False) -> Shown:
    """What a client shows for mrkdwn `text`, and the notifications it causes."""
    mentions: list[str] = []

    def token(match: re.Match[str]) -> str:
        inner = match.group(1)
        target, _, label = inner.partition("|")
        if target.startswith("@"):
            mentions.append(target[1:])
            return "@" + (label or target[1:])
        if target.startswith("!"):
            name = target[1:]
            if name.startswith("date^"):
                return label or name
            mentions.append(name)
            return "@" + (label or name.split("^")[0])
        if target.startswith("#"):
            return "#" + (label or target[1:])
        return label or target

    out: list[str] = []
    pos = 0
    for match in _CODE.finditer(text):
        out.append(_prose(text[pos : match.start()], token))
        code = match.group(0)
        code = code[3:-3].strip("\n") if code.startswith("```") else code[1:-1]
        out.append(_unescape(_TOKEN.sub(token, code)))
        pos = match.end()
    out.append(_prose(text[pos:], token))
    shown = "".join(out)
    if link_names:
        mentions += [m.group(1) for m in _BARE.finditer(shown)]
    return Shown(shown, tuple(mentions))


def show_markdown(text: str) -> Shown:
    """What a client shows for `markdown_text`, and the notifications it causes."""
    mentions = [m.group(0) for m in _MENTION_TOKEN.finditer(text)]
    out: list[str] = []
    for event in pyromark.events(_unescape(text), options=_OPTIONS):
        if isinstance(event, str):
            if event in ("SoftBreak", "HardBreak", "Rule"):
                out.append("\n")
            continue
        if "Text" in event:
            out.append(event["Text"])
        elif "Code" in event:
            out.append(event["Code"])
        elif "InlineHtml" in event or "Html" in event:
            out.append(event.get("InlineHtml") or event["Html"])
        elif "Start" in event and event["Start"] == "Item":
            out.append("\n• ")
        elif "End" in event and (isinstance(event["End"], dict) or event["End"] in _BLOCK_ENDS):
            out.append("\n")  # a block ended (paragraph, heading, list, code, quote)
    return Shown("".join(out).strip("\n"), tuple(mentions))


def _prose(text: str, token: Callable[[re.Match[str]], str]) -> str:
    text = _TOKEN.sub(token, text)
    for pattern in _EMPHASIS:
        text = pattern.sub(r"\1", text)
    return _unescape(text)


def _unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
