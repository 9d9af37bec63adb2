"""`threadline run`: starts every configured channel on one TaskGroup and stops on signals."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any, cast

from adapters.console.runner import ConsoleChannel
from bots import ops_server
from bots.maintenance import prune_events_forever
from bots.wiring import Runtime
from core.errors import ThreadlineError
from core.settings import PLATFORM_VARIABLES

log = logging.getLogger(__name__)

ChannelRunner = Callable[[Runtime], Coroutine[Any, Any, None]]

# A channel is a coroutine function that runs until cancelled. Platform channels live in their own
# module with a `run(runtime)` function, imported only when enabled (so an unused SDK costs
# nothing at start-up); CHANNELS holds runners given directly (tests, embedding).
CHANNEL_MODULES: dict[str, str] = {
    "slack": "bots.slack_bot",
    "telegram": "bots.telegram_bot",
    "discord": "bots.discord_bot",
}
CHANNELS: dict[str, ChannelRunner] = {}
RECOVERY_INTERVAL = 5.0
"""Seconds between looks for answers a dead process left streaming."""


def channel_runner(name: str) -> ChannelRunner | None:
    """The runner of channel `name`, or None when this build does not include it."""
    if name in CHANNELS:
        return CHANNELS[name]
    module_name = CHANNEL_MODULES.get(name)
    if module_name is None or importlib.util.find_spec(module_name) is None:
        return None
    return cast(ChannelRunner, importlib.import_module(module_name).run)


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
    runners = {name: channel_runner(name) for name in enabled}
    missing = [name for name, runner in runners.items() if runner is None]
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
        await _run_on_task_group(runtime, runners, stop)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.remove_signal_handler(signum)
    return 0


async def _run_on_task_group(
    runtime: Runtime, runners: dict[str, ChannelRunner | None], stop: asyncio.Event
) -> None:
    """Run the channels until `stop`; a channel's ThreadlineError (a bad token) comes out alone.

    Without this, a channel refusing to start shows as an exception-group traceback instead of
    the one-line message the CLI prints for threadline's own errors.
    """
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [
                group.create_task(runner(runtime), name=f"channel:{name}")
                for name, runner in runners.items()
                if runner is not None
            ]
            tasks.append(
                group.create_task(prune_events_forever(runtime.store), name="prune-events")
            )
            recovery = runtime.service.recovery.run_forever(RECOVERY_INTERVAL)
            tasks.append(group.create_task(recovery, name="recover-answers"))
            settings = runtime.settings
            if settings.http_port is not None:
                server = ops_server.serve(runtime, settings.http_host, settings.http_port)
                tasks.append(group.create_task(server, name="http-server"))
            log.info("running channels: %s", ", ".join(runners))
            await stop.wait()
            log.info("stopping")
            for task in tasks:
                task.cancel()
    except ExceptionGroup as group:
        ours = group.subgroup(ThreadlineError)
        if ours is None:
            raise
        first: ThreadlineError | ExceptionGroup[ThreadlineError] = ours.exceptions[0]
        while isinstance(first, ExceptionGroup):
            first = first.exceptions[0]
        raise first from None
