"""ChannelSink against the fake Discord: payloads, error mapping, 429s and header pacing."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from adapters.discord.rest import NO_MENTIONS, DiscordRateLimited, DiscordRest
from adapters.discord.runner import DiscordOptions
from adapters.discord.sink import (
    GLOBAL_SCOPE,
    ChannelSink,
    channel_limits,
    channel_scopes,
    global_scope,
)
from core.clock import SystemClock
from core.errors import SinkGone, SinkRateLimited, SinkRejected
from core.streaming import Pacer
from tests.fakes.discord_server import FakeDiscord


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(token="sink-token") as server:
        yield server


@pytest.fixture
async def rest(fake: FakeDiscord) -> AsyncIterator[DiscordRest]:
    async with DiscordRest(fake.api_url, fake.token) as client:
        yield client


async def test_post_replies_edits_and_never_pings(fake: FakeDiscord, rest: DiscordRest) -> None:
    question = fake.seed_message(fake.channel_id, "question")
    sink = ChannelSink(rest, Pacer(SystemClock()), fake.channel_id, reply_to=question)
    first = await sink.post("@everyone part one")
    second = await sink.post("part two")
    await sink.edit(first, "@everyone part one, edited")
    assert await sink.finalize(second, "part two, final") is None
    assert fake.messages[first].reference_id == question
    assert fake.messages[second].reference_id == first  # continuations reply to the previous
    assert fake.answer_text(question) == "@everyone part one, edited\npart two, final"
    assert all(c.json["allowed_mentions"] == NO_MENTIONS for c in fake.writes())
    assert fake.pings == []
    assert sink.limits.max_length == 2000
    assert GLOBAL_SCOPE in sink.limits.post_scopes and GLOBAL_SCOPE in sink.limits.edit_scopes


async def test_errors_map_to_sink_errors(fake: FakeDiscord, rest: DiscordRest) -> None:
    sink = ChannelSink(rest, Pacer(SystemClock()), fake.channel_id)
    with pytest.raises(SinkRejected, match="50035"):
        await sink.post("x" * 2001)
    posted = await sink.post("hello")
    fake.delete_message(posted)
    with pytest.raises(SinkGone, match="10008"):
        await sink.edit(posted, "gone")
    fake.set_forbidden(fake.channel_id)
    with pytest.raises(SinkGone, match="50013"):
        await sink.post("no rights")
    bad = DiscordRest(fake.api_url, "wrong-token")
    try:
        with pytest.raises(SinkRejected, match="401"):
            await ChannelSink(bad, Pacer(SystemClock()), fake.channel_id).post("who am I")
    finally:
        await bad.close()


async def test_bucket_429_pauses_only_that_bucket(fake: FakeDiscord, rest: DiscordRest) -> None:
    pacer = Pacer(SystemClock())
    sink = ChannelSink(rest, pacer, fake.channel_id)
    # Discord says "remaining 0" on the fifth create: the sink pauses the bucket until reset.
    for n in range(5):
        await sink.post(f"message {n}")
    stats = pacer.stats()
    create = channel_scopes(fake.channel_id).create.key
    assert stats[create].pauses == 1 and stats[create].paused_seconds > 4.0
    # A sixth create without asking the pacer gets the 429, which names only the channel's
    # create bucket, so the driver pauses that one and not the bot-wide bucket.
    with pytest.raises(SinkRateLimited) as caught:
        await sink.post("one too many")
    assert caught.value.retry_after > 0 and caught.value.scopes == (create,)
    assert fake.rate_limited == 1
    assert GLOBAL_SCOPE.key not in pacer.stats()


async def test_global_429_is_passed_on_whole() -> None:
    async with FakeDiscord(token="sink-token", global_limit=2) as fake:
        client = DiscordRest(fake.api_url, fake.token)
        try:
            sink = ChannelSink(client, Pacer(SystemClock()), fake.channel_id)
            await sink.post("one")
            await sink.post("two")
            with pytest.raises(DiscordRateLimited) as caught:
                await sink.post("three")
        finally:
            await client.close()
    assert caught.value.is_global
    assert 0 < caught.value.retry_after <= 1.0


def test_a_process_running_some_shards_paces_at_their_share_of_the_bot_budget() -> None:
    half = DiscordOptions(shard_count=4, shard_ids=(0, 1))
    assert half.budget_share == 0.5
    assert DiscordOptions(shard_count=4).budget_share == 1.0  # this process runs every shard
    assert DiscordOptions().budget_share == 1.0
    scope = global_scope(half.budget_share)
    assert scope.key == GLOBAL_SCOPE.key  # the same bucket, paced slower
    assert scope.rate == GLOBAL_SCOPE.rate / 2 and scope.burst == GLOBAL_SCOPE.burst / 2
    limits = channel_limits("123", scope)
    assert scope in limits.post_scopes and scope in limits.edit_scopes
