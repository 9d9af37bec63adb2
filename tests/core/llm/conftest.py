"""Fixtures for the LLM client tests: a fresh FakeOpenAI server and an httpx client per test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.fakes.openai_server import FakeOpenAI


@pytest.fixture
async def server() -> AsyncIterator[FakeOpenAI]:
    """A FakeOpenAI on loopback that needs no key; override it locally for another setup."""
    async with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client
