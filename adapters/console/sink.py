"""A ReplySink that prints the growing answer to a terminal or pipe."""

from __future__ import annotations

import os
from typing import TextIO

from core.streaming import SinkLimits

_TYPING = "… thinking"


class ConsoleSink:
    """Prints each answer as it grows, appending only new text, so a pipe gets the clean answer."""

    def __init__(self, out: TextIO, *, interactive: bool | None = None) -> None:
        self._out = out
        self._interactive = out.isatty() if interactive is None else interactive
        self._shown: dict[str, str] = {}
        self._latest: dict[str, str] = {}
        self._typing = False
        self._count = 0
        self._limits = SinkLimits(max_length=1_000_000)

    @property
    def limits(self) -> SinkLimits:
        return self._limits

    async def show_typing(self) -> None:
        if self._interactive and not self._typing:
            self._out.write(f"\x1b[2m{_TYPING}\x1b[0m")
            self._out.flush()
            self._typing = True

    async def post(self, text: str) -> str:
        self._count += 1
        message_id = f"console-{os.getpid()}-{self._count}"
        self._shown[message_id] = ""
        self._latest[message_id] = text
        return message_id

    async def edit(self, message_id: str, text: str) -> None:
        # Intermediate texts may end in markup closed only for display (an open code fence);
        # what two successive texts share is settled, so only that part is printed.
        previous = self._latest.get(message_id, "")
        self._latest[message_id] = text
        self._write(message_id, _common_prefix(previous, text))

    async def finalize(self, message_id: str, text: str) -> None:
        self._latest[message_id] = text
        shown = self._shown.get(message_id, "")
        if not text.startswith(shown):
            self._shown[message_id] = _common_prefix(shown, text)
            self._out.write("\n")
        self._write(message_id, text)
        self._out.write("\n")
        self._out.flush()

    def _write(self, message_id: str, settled: str) -> None:
        """Print what `settled` adds to what is already shown of the message."""
        if self._typing:
            self._out.write("\r\x1b[K")
            self._typing = False
        shown = self._shown.get(message_id, "")
        if settled.startswith(shown) and len(settled) > len(shown):
            self._out.write(settled[len(shown) :])
            self._shown[message_id] = settled
        self._out.flush()


def _common_prefix(a: str, b: str) -> str:
    """The longest string both `a` and `b` start with."""
    size = min(len(a), len(b))
    for index in range(size):
        if a[index] != b[index]:
            return a[:index]
    return a[:size]
