"""`threadline run`: starts every configured channel on one TaskGroup and stops on signals."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from adapters.console.runner import ConsoleChannel
from bots.maintenance import prune_events_forever
from bots.wiring import Runtime
from core.settings import PLATFORM_VARIABLES

log = logging.getLogger(__name__)

ChannelRunner = Callable[[Runtime], Coroutine[Any, Any, None]]

# Platform channels register here as they are built: name -> coroutine that runs until cancelled.
CHANNELS: dict[str, ChannelRunner] = {}


def describe_platform_variables() -> str:
    """The message naming the variables that enable each platform."""
    lines = ["No chat platform is configured. Set the variables of at least one:"]
    for platform, variables in PLATFORM_VARIABLES.items():
        lines.append(f"  {platform:<9} {', '.join(variables)}")
    lines.append("(in the environment or in .env; see .env.example)")
    return "\n".join(lines)


async def run_channels(runtime: Runtime, *, interactive: bool) -> int:
    """Run every enabled channel until a signal arrives; returns the exit status."""
    enabled = runtime.settings.enabled_platforms()
    if not enabled:
        print(describe_platform_variables(), file=sys.stderr)
        if not interactive:
            return 2
        print("Opening the console channel instead.\n", file=sys.stderr)
        await ConsoleChannel(runtime.service).chat()
        return 0
    missing = [name for name in enabled if name not in CHANNELS]
    if missing:
        print(
            "threadline: this build does not include the channel(s) "
            + ", ".join(missing)
            + " yet; unset their variables or update threadline.",
            file=sys.stderr,
        )
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [
                group.create_task(CHANNELS[name](runtime), name=f"channel:{name}")
                for name in enabled
            ]
            tasks.append(
                group.create_task(prune_events_forever(runtime.store), name="prune-events")
            )
            log.info("running channels: %s", ", ".join(enabled))
            await stop.wait()
            log.info("stopping")
            for task in tasks:
                task.cancel()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.remove_signal_handler(signum)
    return 0
