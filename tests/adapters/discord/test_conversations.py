"""End to end through `threadline run`: where the bot answers and what history the model gets."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.adapters.discord.conftest import running, user_turns
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.openai_server import FakeOpenAI


async def test_reply_chain_carries_exactly_its_own_exchanges(
    tmp_path: Path, fake_discord: FakeDiscord, fake_llm: FakeOpenAI
) -> None:
    fake = fake_discord
    async with running(tmp_path, fake, fake_llm) as proc:
        first = await fake.user_message(fake.channel_id, "what is a bucket", mention_bot=True)
        other = await fake.user_message(fake.channel_id, "unrelated question", mention_bot=True)
        await proc.wait_until(
            lambda: (
                fake.answer_text(first) == "echo: what is a bucket"
                and fake.answer_text(other) == "echo: unrelated question"
            ),
            what="the first answers",
        )
        # A reply to the bot's answer continues the chain without a mention.
        answer1 = fake.answer_parts(first)[0].id
        second = await fake.user_message(fake.channel_id, "and a leaky one", reply_to=answer1)
        await proc.wait_until(
            lambda: fake.answer_text(second) == "echo: and a leaky one", what="the second answer"
        )
        # Replying to the user's own earlier message of the chain continues it too.
        third = await fake.user_message(
            fake.channel_id, f"<@{fake.bot.id}> compare them", reply_to=second
        )
        await proc.wait_until(
            lambda: fake.answer_text(third) == "echo: compare them", what="the third answer"
        )
        # Chatter without a mention or a reply is not answered.
        chatter = await fake.user_message(fake.channel_id, "just talking")
        await fake.user_message(fake.channel_id, "hi", author=fake.other_bot, mention_bot=True)
        probe = await fake.user_message(fake.channel_id, "probe", mention_bot=True)
        await proc.wait_until(lambda: fake.answer_text(probe) == "echo: probe", what="probe")

    requests = [r.json for r in fake_llm.chat_requests]
    assert len(requests) == 5, "chatter and other bots must not reach the model"
    third_request = next(r for r in requests if r["messages"][-1]["content"] == "compare them")
    assert user_turns(third_request) == [
        ("user", "what is a bucket"),
        ("assistant", "echo: what is a bucket"),
        ("user", "and a leaky one"),
        ("assistant", "echo: and a leaky one"),
        ("user", "compare them"),
    ]
    # every user turn in a server carries its author's display name (the member's nick)
    names = {m.get("name") for m in third_request["messages"] if m["role"] == "user"}
    assert names == {"Ali"}
    assert fake.answer_parts(chatter) == []
    # the answer replies to the question, pinging nobody
    reply = fake.answer_parts(first)[0]
    assert reply.reference_id == first
    assert fake.pings == []


async def test_two_chains_in_one_channel_stay_apart(
    tmp_path: Path, fake_discord: FakeDiscord, fake_llm: FakeOpenAI
) -> None:
    fake = fake_discord
    async with running(tmp_path, fake, fake_llm) as proc:
        a = await fake.user_message(fake.channel_id, "chain A starts", mention_bot=True)
        b = await fake.user_message(
            fake.channel_id, "chain B starts", mention_bot=True, author=fake.other_user
        )
        # a person replies after reading the answer: wait until both are complete (a reply
        # within milliseconds of a message appearing can precede its stored link)
        await proc.wait_until(
            lambda: fake.answer_text(a) == "echo: chain A starts"
            and fake.answer_text(b) == "echo: chain B starts",
            what="answers",
        )
        await asyncio.sleep(0.3)
        a2 = await fake.user_message(
            fake.channel_id, "more on A", reply_to=fake.answer_parts(a)[0].id
        )
        b2 = await fake.user_message(
            fake.channel_id,
            "more on B",
            reply_to=fake.answer_parts(b)[0].id,
            author=fake.other_user,
        )
        await proc.wait_until(
            lambda: (
                fake.answer_text(a2) == "echo: more on A"
                and fake.answer_text(b2) == "echo: more on B"
            ),
            what="the follow-up answers",
        )
    by_last = {r.json["messages"][-1]["content"]: r.json for r in fake_llm.chat_requests}
    assert user_turns(by_last["more on A"]) == [
        ("user", "chain A starts"),
        ("assistant", "echo: chain A starts"),
        ("user", "more on A"),
    ]
    assert user_turns(by_last["more on B"]) == [
        ("user", "chain B starts"),
        ("assistant", "echo: chain B starts"),
        ("user", "more on B"),
    ]
    assert [m.get("name") for m in by_last["more on B"]["messages"] if m["role"] == "user"] == [
        "Bob",
        "Bob",
    ]


async def test_thread_is_one_conversation_answered_without_mention_after_the_first(
    tmp_path: Path, fake_discord: FakeDiscord, fake_llm: FakeOpenAI
) -> None:
    fake = fake_discord
    async with running(tmp_path, fake, fake_llm) as proc:
        ignored = await fake.user_message(fake.thread_id, "nobody asked the bot yet")
        first = await fake.user_message(fake.thread_id, "hello thread", mention_bot=True)
        await proc.wait_until(
            lambda: fake.answer_text(first) == "echo: hello thread", what="first answer"
        )
        second = await fake.user_message(fake.thread_id, "no mention needed now")
        await proc.wait_until(
            lambda: fake.answer_text(second) == "echo: no mention needed now",
            what="the unmentioned answer",
        )
    assert fake.answer_parts(ignored) == []
    assert all(m.channel_id == fake.thread_id for m in fake.bot_messages())
    last = fake_llm.chat_requests[-1].json
    assert user_turns(last) == [
        ("user", "hello thread"),
        ("assistant", "echo: hello thread"),
        ("user", "no mention needed now"),
    ]


async def test_require_mention_in_threads(
    tmp_path: Path, fake_discord: FakeDiscord, fake_llm: FakeOpenAI
) -> None:
    fake = fake_discord
    async with running(tmp_path, fake, fake_llm, DISCORD_REQUIRE_MENTION="true") as proc:
        first = await fake.user_message(fake.thread_id, "hello", mention_bot=True)
        await proc.wait_until(lambda: bool(fake.answer_parts(first)), what="first answer")
        unmentioned = await fake.user_message(fake.thread_id, "are you there")
        probe = await fake.user_message(fake.thread_id, "probe", mention_bot=True)
        await proc.wait_until(lambda: fake.answer_text(probe) == "echo: probe", what="probe")
    assert fake.answer_parts(unmentioned) == []
    assert len(fake_llm.chat_requests) == 2


async def test_thread_per_conversation_opens_a_thread(
    tmp_path: Path, fake_discord: FakeDiscord, fake_llm: FakeOpenAI
) -> None:
    fake = fake_discord
    async with running(tmp_path, fake, fake_llm, DISCORD_THREAD_PER_CONVERSATION="true") as proc:
        root = await fake.user_message(fake.channel_id, "start a topic", mention_bot=True)
        await proc.wait_until(
            lambda: any(m.channel_id == root for m in fake.bot_messages()), what="thread answer"
        )
        # public threads started from a message share its id
        assert fake.channels[root]["type"] == 11
        assert [m.content for m in fake.bot_messages(root)] == ["echo: start a topic"]
        follow = await fake.user_message(root, "continue in the thread")
        await proc.wait_until(
            lambda: len(fake.bot_messages(root)) == 2, what="unmentioned answer in the thread"
        )
    assert fake.bot_messages(fake.channel_id) == []
    assert fake.calls_to("POST", "/channels/{channel_id}/messages/{message_id}/threads")
    assert follow in fake.messages
    assert user_turns(fake_llm.chat_requests[-1].json) == [
        ("user", "start a topic"),
        ("assistant", "echo: start a topic"),
        ("user", "continue in the thread"),
    ]


async def test_dm_running_conversation_new_and_reply_branch(
    tmp_path: Path, fake_discord: FakeDiscord, fake_llm: FakeOpenAI
) -> None:
    fake = fake_discord
    dm = fake.dm_channel_id
    async with running(tmp_path, fake, fake_llm) as proc:
        one = await fake.user_message(dm, "first dm")
        await proc.wait_until(lambda: fake.answer_text(one) == "echo: first dm", what="dm 1")
        two = await fake.user_message(dm, "second dm")
        await proc.wait_until(lambda: fake.answer_text(two) == "echo: second dm", what="dm 2")
        # replying to an earlier answer continues from that point
        branch = await fake.user_message(
            dm, "back to the start", reply_to=fake.answer_parts(one)[0].id
        )
        await proc.wait_until(
            lambda: fake.answer_text(branch) == "echo: back to the start", what="branch"
        )
        token = await fake.interaction("new", dm)
        await proc.wait_until(lambda: bool(fake.followups(token)), what="the /new answer")
        three = await fake.user_message(dm, "after new")
        await proc.wait_until(lambda: fake.answer_text(three) == "echo: after new", what="dm 3")
    assert "Started a new conversation" in fake.followups(token)[0].content
    assert fake.interaction_callbacks[0]["type"] == 5  # deferred: acknowledged at once
    requests = [r.json for r in fake_llm.chat_requests]
    assert user_turns(requests[1]) == [
        ("user", "first dm"),
        ("assistant", "echo: first dm"),
        ("user", "second dm"),
    ]
    assert user_turns(requests[2]) == [
        ("user", "first dm"),
        ("assistant", "echo: first dm"),
        ("user", "back to the start"),
    ]
    assert user_turns(requests[3]) == [("user", "after new")]
    # DMs carry no author names (a one-to-one chat)
    assert all("name" not in m for m in requests[1]["messages"])
