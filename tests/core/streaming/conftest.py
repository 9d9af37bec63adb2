"""Fixtures for streaming tests: virtual time on the test's own event loop."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.fakes.virtual_clock import VirtualClock


@pytest.fixture
async def clock() -> AsyncIterator[VirtualClock]:
    """The running loop on virtual time: sleeps return at once, time jumps when all tasks wait."""
    with VirtualClock.install() as virtual:
        yield virtual
