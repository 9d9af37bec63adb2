"""Runs `threadline run` as a real child process for end-to-end tests and benchmarks."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from tests.fakes.served import Served

REPO = Path(__file__).resolve().parents[2]
SETTING_PREFIXES = ("THREADLINE_", "OPENAI_", "SLACK_", "TELEGRAM_", "DISCORD_")


def service_env(env: dict[str, str]) -> dict[str, str]:
    """This process's environment without threadline's settings, plus `env`."""
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(SETTING_PREFIXES) and k not in ("DATABASE_URL", "REDIS_URL")
    }
    base["PYTHONPATH"] = str(REPO)
    base["PYTHONUNBUFFERED"] = "1"
    base["THREADLINE_HTTP_PORT"] = "0"  # any free port: tests run several services at once
    base.update(env)
    return base


class ThreadlineProcess(Served):
    """`python -m bots run` in `cwd` with `env`; stopped with SIGTERM on exit.

    Its combined output is collected in `output` as it arrives, so a test can wait for a line
    and a failing test can show what the service logged.
    """

    def __init__(self, cwd: Path, env: dict[str, str], *args: str) -> None:
        self.cwd = cwd
        self.env = env
        self.args = args or ("run",)
        self.output = ""
        self.returncode: int | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the service (its database lives in `cwd`)."""
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bots",
            *self.args,
            cwd=self.cwd,
            env=service_env(self.env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        while line := await self._process.stdout.readline():
            self.output += line.decode(errors="replace")

    @property
    def http_port(self) -> int | None:
        """The port of the operations HTTP server, once it said it listens."""
        found = re.search(r"http server listening on [^:\s]+:(\d+)", self.output)
        return int(found.group(1)) if found else None

    @property
    def pid(self) -> int | None:
        """The service's process id while it runs."""
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        """Whether the process is still alive."""
        return self._process is not None and self._process.returncode is None

    async def wait_until(
        self, condition: Callable[[], bool], *, within: float = 30.0, what: str = "condition"
    ) -> None:
        """Poll `condition` until true; fail with the service's output if it dies or times out."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while not condition():
            if not self.running:
                await self._drain()
                raise AssertionError(
                    f"threadline exited ({self.returncode}) before {what}:\n{self.output}"
                )
            if loop.time() > deadline:
                raise AssertionError(f"timed out waiting for {what}; output:\n{self.output}")
            await asyncio.sleep(0.02)

    async def kill(self) -> None:
        """SIGKILL: the process dies at once, as in a crash or an out-of-memory kill."""
        process = self._process
        if process is not None and process.returncode is None:
            process.kill()
            await process.wait()
        await self._drain()

    async def stop(self, grace: float = 15.0) -> int:
        """SIGTERM, then wait (SIGKILL after `grace` seconds); returns the exit code."""
        process = self._process
        if process is None:
            return 0
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), grace)
            except TimeoutError:
                process.kill()
                await process.wait()
        await self._drain()
        self.returncode = process.returncode
        assert self.returncode is not None
        return self.returncode

    async def _drain(self) -> None:
        if self._process is not None and self._process.returncode is not None:
            self.returncode = self._process.returncode
        if self._reader is not None:
            try:
                await asyncio.wait_for(self._reader, 5)
            except TimeoutError:
                self._reader.cancel()
