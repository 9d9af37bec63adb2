"""A ReplySink that prints the growing answer to a terminal or pipe."""

from __future__ import annotations

import os
from typing import TextIO

from core.streaming import SinkLimits

_TYPING = "… thinking"


class ConsoleSink:
    """Prints answers as they grow, appending only new text, so a pipe gets the clean answer.

    One message prints live at a time; others (the further choices of n > 1) are kept and
    printed whole, in the order they were posted, once the live one is final.
    """

    def __init__(self, out: TextIO, *, interactive: bool | None = None) -> None:
        self._out = out
        self._interactive = out.isatty() if interactive is None else interactive
        self._limits = SinkLimits(max_length=1_000_000)
        self._typing = False
        self._count = 0
        self._order: list[str] = []
        self._latest: dict[str, str] = {}
        self._shown: dict[str, str] = {}
        self._final: set[str] = set()
        self._printed: set[str] = set()
        self._live: str | None = None

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
        self._order.append(message_id)
        self._latest[message_id] = text
        self._shown[message_id] = ""
        if self._live is None:
            self._live = message_id
        return message_id

    async def edit(self, message_id: str, text: str) -> None:
        # Intermediate texts may end in markup closed only for display (an open code fence);
        # what two successive texts share is settled, so only that part is printed.
        previous = self._latest.get(message_id, "")
        self._latest[message_id] = text
        if message_id == self._live:
            settled = _common_prefix(previous, text, known=len(self._shown.get(message_id, "")))
            self._print(message_id, settled)

    async def finalize(self, message_id: str, text: str) -> None:
        self._latest[message_id] = text
        self._final.add(message_id)
        if message_id == self._live:
            self._print_final(message_id)
            self._advance()

    def _advance(self) -> None:
        """Print the messages that finished while another was live; the next open one goes live."""
        self._live = None
        for message_id in self._order:
            if message_id in self._printed:
                continue
            if message_id in self._final:
                self._print_final(message_id)
                continue
            self._live = message_id
            return

    def _print_final(self, message_id: str) -> None:
        text = self._latest[message_id]
        shown = self._shown.get(message_id, "")
        if not text.startswith(shown):
            self._shown[message_id] = _common_prefix(shown, text)
            self._out.write("\n")
        self._print(message_id, text)
        self._out.write("\n")
        self._out.flush()
        self._printed.add(message_id)

    def _print(self, message_id: str, settled: str) -> None:
        """Print what `settled` adds to what is already shown of the message."""
        if self._typing:
            self._out.write("\r\x1b[K")
            self._typing = False
        shown = self._shown.get(message_id, "")
        if settled.startswith(shown) and len(settled) > len(shown):
            self._out.write(settled[len(shown) :])
            self._shown[message_id] = settled
        self._out.flush()


def _common_prefix(a: str, b: str, known: int = 0) -> str:
    """The longest string both `a` and `b` start with; `known` hints where they may part.

    Texts usually only grow, so the C-speed `startswith` answers at once; otherwise only the
    part after `known` is compared, keeping each edit proportional to what changed.
    """
    if b.startswith(a):
        return a
    if a.startswith(b):
        return b
    size = min(len(a), len(b))
    start = min(known, size)
    if not b.startswith(a[:start]):
        start = 0  # the text changed inside what was shown: compare from the start
    for index in range(start, size):
        if a[index] != b[index]:
            return a[:index]
    return a[:size]
