"""A small Discord REST client for the answer writes, with errors mapped to core sink errors."""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import aiohttp

from adapters.discord.buckets import DiscordBuckets, RateHeaders
from core.errors import SinkError, SinkGone, SinkRateLimited, SinkRejected
from core.metrics import platform_call

log = logging.getLogger(__name__)
_ID = re.compile(r"\d{5,}")

NO_MENTIONS: dict[str, Any] = {"parse": [], "replied_user": False}
"""`allowed_mentions` of every send and edit: model output never pings anybody."""

SERVER_RETRY = 1.0  # seconds to wait after a 5xx or a broken connection before trying again
GONE_CODES = frozenset({10003, 10008, 50001, 50013, 50083, 160005})
"""Unknown channel, unknown message, missing access, missing permissions, archived thread,
locked thread: the answer cannot continue there."""


class DiscordRateLimited(SinkRateLimited):
    """A 429 from Discord: `is_global` for the bot-wide limit, else one route's bucket."""

    def __init__(
        self,
        retry_after: float,
        *,
        is_global: bool,
        scope: str | None,
        limits: RateHeaders | None = None,
    ) -> None:
        super().__init__(retry_after, "discord rate limited" + (" (global)" if is_global else ""))
        self.is_global = is_global
        self.scope = scope
        self.limits = limits or RateHeaders()


class DiscordUnauthorized(SinkRejected):
    """401: Discord does not accept the bot token."""


@dataclass(frozen=True, slots=True)
class RestResult:
    """A successful response: its JSON body and what its rate-limit headers said."""

    data: Any
    limits: RateHeaders = field(default_factory=RateHeaders)

    @property
    def remaining(self) -> int | None:
        return self.limits.remaining

    @property
    def reset_after(self) -> float | None:
        return self.limits.reset_after


class DiscordRest:
    """`request()` against `base_url` (".../api/v10") with `Authorization: Bot <token>`.

    The token is only ever sent in the header, never in a URL or a log line. `buckets` holds
    what the responses' rate-limit headers taught about Discord's buckets (shared by every sink
    that writes through this client).
    """

    def __init__(self, base_url: str, token: str, *, timeout: float = 20.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        self.buckets = DiscordBuckets()

    async def __aenter__(self) -> DiscordRest:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                headers={
                    "Authorization": f"Bot {self._token}",
                    "User-Agent": "DiscordBot (https://github.com/threadline, 1.0) threadline",
                },
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def request(
        self, method: str, path: str, payload: dict[str, Any] | None = None
    ) -> RestResult:
        """One call; raises `DiscordRateLimited`, `SinkGone` or `SinkRejected` on failure.

        A server error or a broken connection raises `SinkRateLimited(SERVER_RETRY)`, so the
        stream driver retries the write instead of giving the answer up.
        """
        route = f"{method} {_ID.sub('{id}', _route(path))}"  # ids out: bounded label values
        try:
            result = await self._request(method, path, payload)
        except DiscordRateLimited:
            platform_call("discord", route, "rate_limited")
            raise
        except SinkRateLimited:
            platform_call("discord", route, "no_response")
            raise
        except SinkError:
            platform_call("discord", route, "error")
            raise
        platform_call("discord", route, "ok")
        return result

    async def _request(
        self, method: str, path: str, payload: dict[str, Any] | None
    ) -> RestResult:
        session = self._open()
        try:
            async with session.request(method, self.base_url + path, json=payload) as response:
                body: Any
                if response.content_type == "application/json":
                    body = await response.json()
                else:
                    body = await response.text()
                headers = response.headers
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("discord %s %s failed: %s", method, _route(path), type(exc).__name__)
            raise SinkRateLimited(SERVER_RETRY, "discord unreachable") from None
        if 200 <= status < 300:
            return RestResult(body, RateHeaders.of(headers))
        code = body.get("code") if isinstance(body, dict) else None
        message = body.get("message") if isinstance(body, dict) else str(body)[:200]
        if status == 429:
            data = body if isinstance(body, dict) else {}
            retry_after = _float(data.get("retry_after"), headers.get("Retry-After"))
            is_global = bool(data.get("global")) or headers.get("X-RateLimit-Global") == "true"
            log.warning(
                "discord 429 on %s %s: retry after %.2fs%s",
                method,
                _route(path),
                retry_after,
                " (global)" if is_global else "",
            )
            raise DiscordRateLimited(
                retry_after,
                is_global=is_global,
                scope=headers.get("X-RateLimit-Scope"),
                limits=RateHeaders.of(headers),
            )
        if status >= 500:
            log.warning("discord %s %s answered %s", method, _route(path), status)
            raise SinkRateLimited(SERVER_RETRY, f"discord server error {status}")
        detail = f"discord {status} {code}: {message} ({method} {_route(path)})"
        if status == 401:
            raise DiscordUnauthorized(detail)
        if status in (403, 404) or code in GONE_CODES:
            raise SinkGone(detail)
        raise SinkRejected(detail)

    async def gateway_url(self, attempts: int = 3) -> str:
        """The gateway's websocket URL from `GET /gateway/bot` (retried on server errors)."""
        for attempt in range(attempts):
            try:
                result = await self.request("GET", "/gateway/bot")
            except SinkRateLimited as exc:
                if attempt == attempts - 1:
                    raise
                await asyncio.sleep(max(exc.retry_after, SERVER_RETRY))
                continue
            url = result.data.get("url") if isinstance(result.data, dict) else None
            if not isinstance(url, str) or not url:
                raise SinkRejected("GET /gateway/bot returned no url")
            return url
        raise AssertionError("unreachable")


def _route(path: str) -> str:
    """The path for logs (it never carries the bot token; webhook paths lose their token)."""
    if path.startswith("/webhooks/"):
        return "/webhooks/…"
    return path


def _float(*values: Any) -> float:
    for value in values:
        try:
            if value is not None:
                return max(0.0, float(value))
        except (TypeError, ValueError):
            continue
    return 1.0


