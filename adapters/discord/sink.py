"""Discord reply sinks: a channel message answer (post, paced edits) and a slash-command answer."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import discord

from adapters.discord.buckets import CREATE, EDIT, RateHeaders
from adapters.discord.rest import NO_MENTIONS, DiscordRateLimited, DiscordRest
from core.errors import SinkError, SinkGone, SinkRateLimited, SinkRejected
from core.streaming import Pacer, PaceScope, Priority, SinkLimits

MAX_LENGTH = 2000

# Discord's budgets (observed, unpublished): 5 message creates per 5 s per channel, a separate
# bucket of 5 edits per 5 s per channel (or, on some deployments, one bucket for both), 50
# requests per second per bot. A token bucket of burst b and rate r lets at most b + 5r writes
# into any 5 s window, so b=1, r=0.8 stays at the 5-per-5-s limit however the windows fall; the
# bot-wide bucket (8 + 40 per second) under 50. These are the defaults until Discord's headers
# say better: creates and edits of a channel start in one bucket at CREATE_RATE (see
# `adapters.discord.buckets`), then each route draws from the bucket its headers name.
CREATE_RATE = 0.8
EDIT_RATE = 0.8
TYPING_RATE = 0.4
THREAD_RATE = 0.5
GLOBAL_RATE = 40.0
GLOBAL_BURST = 8.0
MIN_EDIT_INTERVAL = 1.0


def global_scope(share: float = 1.0) -> PaceScope:
    """The bot-wide bucket, or this process's `share` of it when shards run in several processes.

    Discord's 50 requests per second hold per bot token, whichever process sends them, so a
    process running half of the shards paces itself at half of the bot's budget.
    """
    return PaceScope(
        "discord:global", rate=GLOBAL_RATE * share, burst=max(1.0, GLOBAL_BURST * share)
    )


GLOBAL_SCOPE = global_scope()


@dataclass(frozen=True, slots=True)
class ChannelScopes:
    """The pacing buckets of one Discord channel (or thread channel)."""

    create: PaceScope
    edit: PaceScope
    typing: PaceScope
    threads: PaceScope


def channel_scopes(channel_id: str) -> ChannelScopes:
    """The buckets every answer in `channel_id` shares, named after Discord's real scopes."""
    prefix = f"discord:channel:{channel_id}"
    return ChannelScopes(
        create=PaceScope(f"{prefix}:messages.create", rate=CREATE_RATE, burst=1.0),
        edit=PaceScope(f"{prefix}:messages.edit", rate=EDIT_RATE, burst=1.0),
        typing=PaceScope(f"{prefix}:typing", rate=TYPING_RATE, burst=1.0),
        threads=PaceScope(f"{prefix}:threads.create", rate=THREAD_RATE, burst=1.0),
    )


def channel_limits(channel_id: str, bot_wide: PaceScope = GLOBAL_SCOPE) -> SinkLimits:
    """Length and pacing of an answer in `channel_id`."""
    scopes = channel_scopes(channel_id)
    return SinkLimits(
        max_length=MAX_LENGTH,
        post_scopes=(scopes.create, bot_wide),
        edit_scopes=(scopes.edit, bot_wide),
        typing_scopes=(scopes.typing, bot_wide),
        min_edit_interval=MIN_EDIT_INTERVAL,
        finalize_unchanged=False,
    )


def new_nonce() -> str:
    """A create's idempotency key: 20 random characters (Discord allows 25)."""
    return secrets.token_urlsafe(15)


class ChannelSink:
    """An answer in a Discord channel or thread: replies to the user's message, then edits.

    Every send and edit carries `allowed_mentions` that parse nothing. A continuation part
    replies to the previous part, so a long answer reads as one chain among concurrent ones.
    A per-bucket 429 pauses only that bucket (see `_rate_limited`); a global one pauses all.

    Every create carries a `nonce` with `enforce_nonce`: one per message part, kept until that
    create succeeds or is refused, so a retry after a lost response (timeout, dropped
    connection) gets back the message Discord already made instead of a second one.
    Creates and edits pace by Discord's headers (`DiscordBuckets`, shared through `rest`).
    """

    def __init__(
        self,
        rest: DiscordRest,
        pacer: Pacer,
        channel_id: str,
        *,
        reply_to: str | None = None,
        bot_wide: PaceScope = GLOBAL_SCOPE,
    ) -> None:
        self._rest = rest
        self._pacer = pacer
        self._channel_id = channel_id
        self._reply_to = reply_to
        self._scopes = channel_scopes(channel_id)
        self._limits = channel_limits(channel_id, bot_wide)
        self._nonce: str | None = None  # of the create not confirmed yet
        self._routes = {CREATE: self._scopes.create.key, EDIT: self._scopes.edit.key}
        rest.buckets.bind(pacer, channel_id, self._routes)

    @property
    def limits(self) -> SinkLimits:
        return self._limits

    def describe(self) -> dict[str, Any]:
        """Where this answer shows, for finishing it from another process."""
        return {"channel": self._channel_id}

    async def show_typing(self) -> None:
        await self._call(self._scopes.typing, "POST", f"/channels/{self._channel_id}/typing")

    async def post(self, text: str) -> str:
        retry = self._nonce is not None
        if self._nonce is None:
            self._nonce = new_nonce()
        payload: dict[str, Any] = {
            "content": text,
            "allowed_mentions": dict(NO_MENTIONS),
            "nonce": self._nonce,
            "enforce_nonce": True,
        }
        if self._reply_to is not None:
            payload["message_reference"] = {
                "message_id": self._reply_to,
                "fail_if_not_exists": False,
            }
        try:
            data = await self._call(
                self._scopes.create,
                "POST",
                f"/channels/{self._channel_id}/messages",
                payload,
                route=CREATE,
            )
            if not isinstance(data, dict) or "id" not in data:
                raise SinkRejected("discord returned no message id")
            message_id = str(data["id"])
            if retry and data.get("content") != payload["content"]:
                # An earlier attempt was applied, with the text of that moment: bring it up to
                # date, or the driver would believe `text` is shown.
                await self._pacer.acquire(self._limits.edit_scopes, Priority.FINAL)
                await self.edit(message_id, text)
        except SinkRateLimited:
            raise  # retried by the driver: the same part, so the same nonce
        except SinkError:
            self._nonce = None
            raise
        self._nonce = None
        self._reply_to = message_id
        return message_id

    async def edit(self, message_id: str, text: str) -> None:
        payload = {"content": text, "allowed_mentions": dict(NO_MENTIONS)}
        await self._call(
            self._scopes.edit,
            "PATCH",
            f"/channels/{self._channel_id}/messages/{message_id}",
            payload,
            route=EDIT,
        )

    async def finalize(self, message_id: str, text: str) -> str | None:
        await self.edit(message_id, text)
        return None

    async def _call(
        self,
        scope: PaceScope,
        method: str,
        path: str,
        payload: dict[str, Any] | None = None,
        *,
        route: str | None = None,
    ) -> Any:
        try:
            result = await self._rest.request(method, path, payload)
        except DiscordRateLimited as exc:
            if route is not None:
                self._observe(route, exc.limits)
            raise self._rate_limited(scope, exc) from None
        if route is not None and self._observe(route, result.limits):
            return result.data
        if result.remaining == 0 and result.reset_after:
            # Discord says the bucket is empty: wait for its reset, whatever our estimate.
            self._pacer.pause((scope,), result.reset_after)
        return result.data

    def _observe(self, route: str, limits: RateHeaders) -> bool:
        """Learn the route's bucket from the headers (False: they named none)."""
        return self._rest.buckets.observe(
            self._pacer, route, self._channel_id, limits, self._routes
        )

    def _rate_limited(self, scope: PaceScope, exc: DiscordRateLimited) -> SinkRateLimited:
        """For the driver: a global 429 pauses every scope, a bucket's 429 only its own."""
        if exc.is_global:
            return exc
        return SinkRateLimited(
            exc.retry_after, f"discord bucket rate limited ({scope.key})", scopes=(scope.key,)
        )


class InteractionSink:
    """The answer to a slash command: follow-up messages of a deferred interaction."""

    def __init__(self, interaction: discord.Interaction[Any]) -> None:
        self._interaction = interaction
        scope = PaceScope(f"discord:interaction:{interaction.id}", rate=1.0, burst=3.0)
        self._limits = SinkLimits(
            max_length=MAX_LENGTH,
            post_scopes=(scope,),
            edit_scopes=(scope,),
            min_edit_interval=MIN_EDIT_INTERVAL,
            finalize_unchanged=False,
        )

    @property
    def limits(self) -> SinkLimits:
        return self._limits

    async def show_typing(self) -> None:
        return None  # the deferred interaction already shows "thinking"

    async def post(self, text: str) -> str:
        try:
            message = await self._interaction.followup.send(
                text, wait=True, allowed_mentions=discord.AllowedMentions.none()
            )
        except discord.HTTPException as exc:
            raise _interaction_error(exc) from None
        return str(message.id)

    async def edit(self, message_id: str, text: str) -> None:
        try:
            await self._interaction.followup.edit_message(
                int(message_id), content=text, allowed_mentions=discord.AllowedMentions.none()
            )
        except discord.HTTPException as exc:
            raise _interaction_error(exc) from None

    async def finalize(self, message_id: str, text: str) -> str | None:
        await self.edit(message_id, text)
        return None


def _interaction_error(exc: discord.HTTPException) -> Exception:
    if isinstance(exc, discord.NotFound | discord.Forbidden):
        return SinkGone(f"discord {exc.status} {exc.code}: {exc.text}")
    if exc.status == 429 or exc.status >= 500:
        return SinkRateLimited(1.0, f"discord {exc.status}")
    return SinkRejected(f"discord {exc.status} {exc.code}: {exc.text}")
