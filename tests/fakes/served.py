"""Served: the `async with` lifecycle every fake server (and the service process) shares."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class Served:
    """Something started by `start()` and stopped by `stop()`; `async with` does both."""

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> object:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
