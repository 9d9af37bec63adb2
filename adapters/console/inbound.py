"""Turns a line typed in the terminal into an Inbound."""

from __future__ import annotations

import getpass
import uuid

from core.conversation import ConversationKey, Inbound

PLATFORM = "console"


def console_key(thread: str) -> ConversationKey:
    """The conversation key of a named console thread."""
    return ConversationKey(platform=PLATFORM, space="local", channel="terminal", thread=thread)


def to_inbound(text: str, *, thread: str, user: str | None = None) -> Inbound | None:
    """An Inbound for `text` in console thread `thread`; None for blank input."""
    if not text.strip():
        return None
    author = user or getpass.getuser()
    message_id = uuid.uuid4().hex
    return Inbound(
        key=console_key(thread),
        message_id=message_id,
        author_id=author,
        author_name=author,
        text=text.strip(),
        is_direct=True,
        event_id=message_id,
    )
