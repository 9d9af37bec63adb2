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
    bucket = pacer.bucket_key(create)
    assert bucket == f"discord:bucket:fake-messages.create:{fake.channel_id}"
    assert stats[bucket].pauses == 1 and stats[bucket].paused_seconds > 4.0
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


async def test_every_create_carries_its_own_nonce(fake: FakeDiscord, rest: DiscordRest) -> None:
    sink = ChannelSink(rest, Pacer(SystemClock()), fake.channel_id)
    await sink.post("one")
    await sink.post("two")
    creates = fake.calls_to("POST", "/channels/{channel_id}/messages")
    nonces = [c.json["nonce"] for c in creates]
    assert all(c.json["enforce_nonce"] is True for c in creates)
    assert all(isinstance(n, str) and 0 < len(n) <= 25 for n in nonces)
    assert len(set(nonces)) == 2


@pytest.mark.parametrize("how", ["close", "hang"])
async def test_a_create_whose_response_was_lost_is_not_repeated(
    fake: FakeDiscord, how: str
) -> None:
    async with DiscordRest(fake.api_url, fake.token, timeout=0.5) as client:
        question = fake.seed_message(fake.channel_id, "question")
        sink = ChannelSink(client, Pacer(SystemClock()), fake.channel_id, reply_to=question)
        fake.drop_responses(1, how)
        with pytest.raises(SinkRateLimited):
            await sink.post("the answer so far")
        assert [m.content for m in fake.bot_messages()] == ["the answer so far"]
        # the driver retries the same part, with the text it has now
        posted = await sink.post("the answer so far, and more")
        assert [m.id for m in fake.bot_messages()] == [posted]
        assert fake.answer_text(question) == "the answer so far, and more"
        # the next part is a new message, replying to this one
        second = await sink.post("part two")
    assert fake.messages[second].reference_id == posted
    assert len(fake.bot_messages()) == 2
    creates = fake.calls_to("POST", "/channels/{channel_id}/messages")
    assert creates[0].dropped and creates[0].json["nonce"] == creates[1].json["nonce"]
    assert creates[2].json["nonce"] != creates[1].json["nonce"]


async def test_the_fake_repeats_a_nonce_only_when_enforced(fake: FakeDiscord) -> None:
    async with DiscordRest(fake.api_url, fake.token) as client:
        path = f"/channels/{fake.channel_id}/messages"
        first = await client.request("POST", path, {"content": "a", "nonce": "n1"})
        second = await client.request("POST", path, {"content": "b", "nonce": "n1"})
        enforced = {"nonce": "n2", "enforce_nonce": True}
        third = await client.request("POST", path, {"content": "c", **enforced})
        fourth = await client.request("POST", path, {"content": "d", **enforced})
        with pytest.raises(SinkRejected, match="50035"):
            await client.request("POST", path, {"content": "e", "nonce": "x" * 26})
    assert first.data["id"] != second.data["id"]
    assert third.data["id"] == fourth.data["id"] and fourth.data["content"] == "c"
    assert fourth.data["nonce"] == "n2"
    assert [m.content for m in fake.bot_messages()] == ["a", "b", "c"]


@pytest.mark.parametrize("shared", [False, True])
async def test_creates_and_edits_pace_in_the_buckets_discord_names(shared: bool) -> None:
    fake = FakeDiscord(token="sink-token", shared_message_bucket=shared)
    async with fake, DiscordRest(fake.api_url, fake.token) as client:
        pacer = Pacer(SystemClock())
        sink = ChannelSink(client, pacer, fake.channel_id)
        scopes = channel_scopes(fake.channel_id)
        # before any headers: one bucket for both, at the conservative default
        default = f"discord:channel:{fake.channel_id}:messages"
        assert pacer.bucket_key(scopes.create.key) == default
        assert pacer.bucket_key(scopes.edit.key) == default
        posted = await sink.post("hello")
        create_bucket = pacer.bucket_key(scopes.create.key)
        assert create_bucket != default
        assert pacer.bucket_key(scopes.edit.key) == create_bucket  # not known yet: shared
        await sink.edit(posted, "hello again")
        edit_bucket = pacer.bucket_key(scopes.edit.key)
        # a second sink in the same channel draws from the same buckets at once
        ChannelSink(client, pacer, fake.channel_id)
        assert pacer.bucket_key(scopes.edit.key) == edit_bucket
        stats = pacer.stats()
    assert (edit_bucket == create_bucket) is shared
    # 5 per 5 s learned from the headers: one per (5 s + headroom) / 5
    assert stats[edit_bucket].rate == pytest.approx(5 / 5.25, rel=0.01)
    assert stats[create_bucket].rate == pytest.approx(5 / 5.25, rel=0.01)
