"""The console channel: `ask` one question or `chat` interactively in a terminal."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import threading
from typing import TextIO

from adapters.console.inbound import console_key, to_inbound
from adapters.console.sink import ConsoleSink
from core.service import ChatService, Outcome

EXIT_WORDS = frozenset({"/exit", "/quit", "exit", "quit"})


class ConsoleChannel:
    """Feeds terminal input to the ChatService and prints answers as they stream."""

    def __init__(
        self,
        service: ChatService,
        *,
        thread: str = "main",
        out: TextIO | None = None,
        user: str | None = None,
    ) -> None:
        self._service = service
        self._thread = thread
        self._out = out or sys.stdout
        self._user = user

    async def ask(self, question: str) -> Outcome:
        """Send one message and stream the answer; returns what happened."""
        inbound = to_inbound(question, thread=self._thread, user=self._user)
        if inbound is None:
            return Outcome(skipped="empty")
        return await self._service.handle(inbound, ConsoleSink(self._out))

    async def chat(self, source: TextIO | None = None) -> None:
        """Read lines until EOF or /exit, answering each in the same thread."""
        source = source or sys.stdin
        interactive = source.isatty()
        if interactive:
            self._out.write(
                f"threadline console, thread {self._thread!r}: /help for commands, /exit to leave\n"
            )
        while True:
            if interactive:
                self._out.write("\n> ")
                self._out.flush()
            line = await read_line(source)
            if not line:
                break
            if line.strip().lower() in EXIT_WORDS:
                break
            if line.strip():
                await self._ask_stoppably(line)

    async def _ask_stoppably(self, line: str) -> None:
        """Answer `line`; Ctrl-C meanwhile stops the answer (its text stays, marked stopped)
        and returns to the prompt, where Ctrl-C exits as usual."""
        loop = asyncio.get_running_loop()
        previous = signal.getsignal(signal.SIGINT)
        try:
            loop.add_signal_handler(signal.SIGINT, self._interrupt)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or Windows
            await self.ask(line)
            return
        try:
            await self.ask(line)
        finally:
            loop.remove_signal_handler(signal.SIGINT)
            signal.signal(signal.SIGINT, previous)

    def _interrupt(self) -> None:
        self._service.stop(console_key(self._thread), requested_by=self._user)


async def read_line(source: TextIO) -> str:
    """Read one line without blocking the loop, in a daemon thread that never delays exit.

    `asyncio.to_thread` would leave a worker blocked on stdin that `asyncio.run` waits for at
    shutdown, so Ctrl-C at the prompt would only take effect after Enter.
    """
    loop = asyncio.get_running_loop()
    result: asyncio.Future[str] = loop.create_future()

    def deliver(line: str | None, error: BaseException | None) -> None:
        if result.done():
            return
        if error is not None:
            result.set_exception(error)
        else:
            result.set_result(line or "")

    def read() -> None:
        try:
            line, error = source.readline(), None
        except Exception as exc:
            line, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop closed while we were reading
            loop.call_soon_threadsafe(deliver, line, error)

    threading.Thread(target=read, name="console-input", daemon=True).start()
    return await result
