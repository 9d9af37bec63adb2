"""TaskSet: the background tasks a channel starts, tracked, logged on failure, stopped together."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)


class TaskSet:
    """Starts tasks, keeps a reference to each until it ends, and stops them all on `cancel_all`."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, work: Coroutine[Any, Any, Any], name: str | None = None) -> asyncio.Task[Any]:
        """Run `work` as a tracked task; a failure is logged, never lost."""
        task = asyncio.get_running_loop().create_task(work, name=name or self._name)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def __len__(self) -> int:
        return len(self._tasks)

    async def finish(self, grace: float) -> None:
        """Let running tasks end by themselves for up to `grace` seconds, then cancel the rest."""
        tasks = list(self._tasks)
        if tasks and grace > 0:
            log.info("%s: letting %d task(s) finish (up to %.0f s)", self._name, len(tasks), grace)
            await asyncio.wait(tasks, timeout=grace)
        await self.cancel_all()

    async def cancel_all(self) -> None:
        """Cancel every task still running and wait until each has ended."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s task %s failed", self._name, task.get_name(), exc_info=task.exception())


__all__ = ["TaskSet"]
