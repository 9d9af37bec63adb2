"""One paced, error-translating path for every Slack Web API call the channel makes."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from core.errors import SinkGone, SinkRateLimited, SinkRejected
from core.metrics import platform_call
from core.streaming import Pacer, PaceScope, Priority

log = logging.getLogger(__name__)

# Errors after which the target will not accept writes again (the answer ends quietly).
GONE_ERRORS = frozenset(
    {
        "channel_not_found",
        "message_not_found",
        "not_in_channel",
        "is_archived",
        "channel_is_archived",
        "cant_update_message",
        "edit_window_closed",
        "account_inactive",
        "token_revoked",
        "invalid_auth",
        "not_authed",
        "user_not_found",
        "restricted_action",
        "thread_not_found",
        "missing_scope",
    }
)
NOT_STREAMING = "message_not_in_streaming_state"
DEFAULT_RETRY_AFTER = 1.0


TokenSource = Callable[[], Awaitable[str]]
"""Gives the bot token of one workspace (raises `SlackGone` when the app is not installed)."""


class SlackRejected(SinkRejected):
    """Slack answered `ok: false` with `error` (not a rate limit, not a vanished target)."""

    def __init__(self, method: str, error: str) -> None:
        super().__init__(f"{method}: {error}")
        self.method = method
        self.error = error


class SlackGone(SinkGone):
    """The target of a write is gone or closed to the bot; `error` is Slack's code."""

    def __init__(self, method: str, error: str) -> None:
        super().__init__(f"{method}: {error}")
        self.method = method
        self.error = error


class SlackUnanswered(SinkRateLimited):
    """The request may have reached Slack but no response came (a write may have applied)."""

    def __init__(self, method: str, reason: str) -> None:
        super().__init__(DEFAULT_RETRY_AFTER, f"{method}: {reason}")
        self.method = method


class SlackApi:
    """Calls Web API methods through one `AsyncWebClient` and translates every failure.

    The client must be built with `retry_handlers=[]`: rate limits are the pacer's business
    (a 429 becomes `SinkRateLimited(retry_after)`), and a retried write could post twice.
    """

    def __init__(
        self, client: AsyncWebClient, pacer: Pacer, *, token: TokenSource | None = None
    ) -> None:
        self.client = client
        self.pacer = pacer
        self.bot_id: str | None = None  # whose messages are ours (auth.test), once known
        self._token = token  # the workspace's bot token, looked up per call (installs rotate)

    async def call(
        self,
        method: str,
        *,
        scopes: Sequence[PaceScope] = (),
        priority: Priority | None = None,
        form: bool = False,
        **args: Any,
    ) -> dict[str, Any]:
        """Call `method` (JSON body, or form fields for read methods), paced when `scopes`.

        With `priority` the call first waits for its scopes; a 429 pauses those scopes before
        `SinkRateLimited` is raised (callers that paced it themselves pause it themselves).
        """
        if priority is not None and scopes:
            await self.pacer.acquire(scopes, priority)
        try:
            return await self.raw(method, form=form, **args)
        except SinkRateLimited as exc:
            if priority is not None and scopes:
                self.pacer.pause(scopes, exc.retry_after)
            raise

    async def raw(self, method: str, *, form: bool = False, **args: Any) -> dict[str, Any]:
        """Call `method` once; `ok: false` and HTTP failures become `core.errors.SinkError`s."""
        payload = {key: value for key, value in args.items() if value is not None}
        headers = None
        if self._token is not None:
            headers = {"Authorization": f"Bearer {await self._token()}"}
        try:
            if form:
                response = await self.client.api_call(method, data=payload, headers=headers)
            else:
                response = await self.client.api_call(method, json=payload, headers=headers)
        except SlackApiError as exc:
            error = translate(method, exc)
            rate_limited = isinstance(error, SinkRateLimited)
            platform_call("slack", method, "rate_limited" if rate_limited else "error")
            raise error from None
        except aiohttp.ClientConnectorError as exc:
            # Not connected: nothing was sent, so the call can simply be made again.
            platform_call("slack", method, "no_connection")
            raise SinkRateLimited(DEFAULT_RETRY_AFTER, f"{method}: {type(exc).__name__}") from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            # Sent, but no response: the write may or may not have happened.
            platform_call("slack", method, "no_response")
            raise SlackUnanswered(method, type(exc).__name__) from None
        platform_call("slack", method, "ok")
        data = response.data
        return data if isinstance(data, dict) else {}


def translate(method: str, exc: SlackApiError) -> SinkRateLimited | SinkGone | SinkRejected:
    """The core error for a `SlackApiError`."""
    response = exc.response
    status = getattr(response, "status_code", 0)
    data = getattr(response, "data", None)
    error = str(data.get("error", "unknown_error")) if isinstance(data, dict) else "unknown_error"
    if status == 429 or error == "ratelimited":
        headers = getattr(response, "headers", None) or {}
        raw = headers.get("retry-after") or headers.get("Retry-After")
        try:
            retry_after = float(raw) if raw is not None else DEFAULT_RETRY_AFTER
        except (TypeError, ValueError):
            retry_after = DEFAULT_RETRY_AFTER
        return SinkRateLimited(retry_after, f"{method}: ratelimited")
    if error in GONE_ERRORS:
        return SlackGone(method, error)
    return SlackRejected(method, error)
