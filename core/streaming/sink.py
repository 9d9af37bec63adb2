"""The ReplySink Protocol the adapters satisfy, and the limits and pacing scopes it declares."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable


class WriteKind(enum.Enum):
    """What a write does; decides its pacing scopes and its priority."""

    POST = "post"
    EDIT = "edit"
    FINAL = "final"
    TYPING = "typing"


@dataclass(frozen=True, slots=True)
class PaceScope:
    """One token bucket: `key` names it globally; `rate` tokens per second, `burst` at most."""

    key: str
    rate: float
    burst: float = 1.0


def count_chars(text: str) -> int:
    """Length in Unicode code points (Slack, Discord)."""
    return len(text)


def count_utf16(text: str) -> int:
    """Length in UTF-16 code units (Telegram): 2 for a character beyond U+FFFF, else 1."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le", "surrogatepass")) // 2  # a lone surrogate counts 1


@dataclass(frozen=True, slots=True)
class SinkLimits:
    """What one platform target accepts: length per message and the pacing scopes per write."""

    max_length: int
    measure: Callable[[str], int] = count_chars
    post_scopes: tuple[PaceScope, ...] = ()
    edit_scopes: tuple[PaceScope, ...] = ()
    final_scopes: tuple[PaceScope, ...] | None = None
    typing_scopes: tuple[PaceScope, ...] = ()
    min_edit_interval: float = 0.0
    supports_edit: bool = True
    finalize_unchanged: bool = True
    """True: the sink needs `finalize` even when the text equals what it last wrote to that
    message (a draft or native stream that must be committed or stopped). False: a plain edit
    platform, where finalizing with unchanged text would be a no-op edit; the driver then skips
    that call (saving a write from the shared budget) and counts the message as final."""

    def scopes_for(self, kind: WriteKind) -> tuple[PaceScope, ...]:
        """The buckets a write of `kind` draws from."""
        if kind is WriteKind.POST:
            return self.post_scopes
        if kind is WriteKind.EDIT:
            return self.edit_scopes
        if kind is WriteKind.FINAL:
            return self.edit_scopes if self.final_scopes is None else self.final_scopes
        return self.typing_scopes


class ReplySink(Protocol):
    """Where one answer is shown: a thread, chat or channel on one platform.

    Texts are the model's Markdown; the sink renders them for its platform. Every method raises
    only `core.errors.SinkError` subclasses. A native-streaming sink implements the same calls
    with its append-style API underneath.
    """

    @property
    def limits(self) -> SinkLimits:
        """Length limit and pacing scopes of this target."""
        ...

    async def show_typing(self) -> None:
        """Show a typing indicator or placeholder until the first text arrives."""
        ...

    async def post(self, text: str) -> str:
        """Create a new message with `text`; return its platform message id."""
        ...

    async def edit(self, message_id: str, text: str) -> None:
        """Replace the text of a message this sink posted (an intermediate state)."""
        ...

    async def finalize(self, message_id: str, text: str) -> str | None:
        """Write the final text of a message; it will not change again.

        Skipped when `limits.finalize_unchanged` is False and `text` is what was last written.

        Returns the id of the message that now holds the text when that differs from
        `message_id` (a draft or preview replaced by a real message), else None.
        """
        ...


@runtime_checkable
class ResumableSink(Protocol):
    """A sink that can say where it writes, so another process can finish its answer.

    `describe()` returns JSON-serialisable facts (chat, thread, mode) that the platform's
    `Reviver` turns back into a sink able to finalize the messages this one posted.
    """

    def describe(self) -> dict[str, Any]:
        """Where this sink writes, as stored with a streaming answer."""
        ...


Reviver = Callable[[dict[str, Any]], "ReplySink | None"]
"""Builds a sink from a stored `ResumableSink.describe()`; None when it cannot any more."""
