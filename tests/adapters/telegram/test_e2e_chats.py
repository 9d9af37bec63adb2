"""End to end through `threadline run`: private chats, group reply chains and forum topics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.adapters.telegram.conftest import tg_env
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.fakes.service_process import ThreadlineProcess
from tests.fakes.telegram_server import FakeTelegram, Message


def _history(llm: FakeOpenAI, index: int) -> list[tuple[str, str]]:
    messages = llm.chat_requests[index].json["messages"]
    return [(m["role"], m["content"]) for m in messages if m["role"] != "system"]


def _final(tg: FakeTelegram, chat: int, text: str) -> Message | None:
    """The bot's message in `chat` showing exactly `text` (a committed message, not a draft)."""
    return next((m for m in tg.bot_messages(chat) if m.text == text), None)


async def _started(proc: ThreadlineProcess, tg: FakeTelegram) -> None:
    await proc.wait_until(lambda: bool(tg.commands), within=30, what="the bot to start")


async def test_private_chat_is_one_running_conversation_streamed_in_a_draft(
    tmp_path: Path, fake_llm: FakeOpenAI, fake_tg: FakeTelegram
) -> None:
    tg, llm = fake_tg, fake_llm
    alice = tg.user("Alice", "Smith", "alice")
    chat = tg.private_chat(alice)
    async with ThreadlineProcess(tmp_path, tg_env(tg, llm, tmp_path)) as proc:
        await _started(proc, tg)
        assert [c["command"] for c in tg.commands] == [
            "new",
            "help",
            "params",
            "set",
            "unset",
            "stop",
        ]
        answers: list[Message] = []
        for number, question in enumerate(("first question", "second one", "third now")):
            llm.script(Reply(delay_between=0.15))  # the echo, streamed for about a second
            tg.send(chat, alice, question)
            expected = f"echo: {question}"
            await proc.wait_until(
                lambda e=expected: _final(tg, chat, e) is not None, what=f"answer {number}"
            )
            answer = _final(tg, chat, expected)
            assert answer is not None
            answers.append(answer)

        # the third request carries exactly the first two exchanges
        assert _history(llm, 2) == [
            ("user", "first question"),
            ("assistant", "echo: first question"),
            ("user", "second one"),
            ("assistant", "echo: second one"),
            ("user", "third now"),
        ]
        assert "name" not in llm.chat_requests[2].json["messages"][1]  # private: no names
        # the growing answer went into drafts; sendMessage committed the complete text
        drafts = tg.calls_of("sendMessageDraft", ok=True)
        assert drafts and all(c.payload["chat_id"] == chat for c in drafts)
        assert all(c.payload["draft_id"] != 0 for c in drafts)
        sends = tg.calls_of("sendMessage", ok=True)
        assert [c.payload["text"] for c in sends] == [a.text for a in answers]
        assert tg.calls_of("editMessageText") == []
        assert tg.calls_of("sendChatAction", ok=True)

        # replying to an earlier answer continues from that point (a branch)
        tg.send(chat, alice, "back to the first", reply_to=answers[0].message_id)
        await proc.wait_until(
            lambda: _final(tg, chat, "echo: back to the first") is not None, what="branch"
        )
        assert _history(llm, 3) == [
            ("user", "first question"),
            ("assistant", "echo: first question"),
            ("user", "back to the first"),
        ]
        # /new starts over
        tg.send(chat, alice, "/new")
        await proc.wait_until(
            lambda: any(m.text.startswith("Started a new") for m in tg.bot_messages(chat)),
            what="/new",
        )
        tg.send(chat, alice, "fresh start")
        await proc.wait_until(
            lambda: _final(tg, chat, "echo: fresh start") is not None, what="after /new"
        )
        assert _history(llm, 4) == [("user", "fresh start")]
        assert len(llm.chat_requests) == 5
        assert tg.rate_limited == 0
    assert tg.token not in proc.output


async def test_group_reply_chains_stay_apart_and_carry_author_names(
    tmp_path: Path, fake_llm: FakeOpenAI, fake_tg: FakeTelegram
) -> None:
    tg, llm = fake_tg, fake_llm
    group = tg.group(-1001000000001, "Team")
    alice = tg.user("Alice", "Smith")
    bob = tg.user("Bob", username="bobby")
    other_bot: dict[str, Any] = {"id": 424242, "is_bot": True, "first_name": "Other"}
    async with ThreadlineProcess(tmp_path, tg_env(tg, llm, tmp_path)) as proc:
        await _started(proc, tg)

        def reply(to: int, text: str) -> Message | None:
            return next((m for m in tg.replies_to(group, to) if m.text == text), None)

        m1 = tg.send(group, alice, tg.mention("what is a token bucket"))
        await proc.wait_until(lambda: reply(m1, "echo: what is a token bucket") is not None)
        m2 = tg.send(group, bob, f"{tg.mention()} tell me about queues")
        await proc.wait_until(lambda: reply(m2, "echo: tell me about queues") is not None)
        a1 = reply(m1, "echo: what is a token bucket")
        assert a1 is not None

        # not addressed: chatter, another bot, a command for another bot
        tg.send(group, alice, "just chatting among us")
        tg.send(group, other_bot, tg.mention("bots talking"))
        tg.send(group, bob, "/help@some_other_bot")
        tg.send(group, alice, tg.mention("an edit"), edited_of=m1)
        # a reply to the bot continues chain 1; a reply to Bob's question continues chain 2
        m3 = tg.send(group, bob, "and how big should it be?", reply_to=a1.message_id)
        await proc.wait_until(lambda: reply(m3, "echo: and how big should it be?") is not None)
        m4 = tg.send(group, alice, "what about priorities?", reply_to=m2)
        await proc.wait_until(lambda: reply(m4, "echo: what about priorities?") is not None)

        assert len(llm.chat_requests) == 4
        chain1 = llm.chat_requests[2].json["messages"][1:]
        assert [(m["role"], m["content"]) for m in chain1] == [
            ("user", "what is a token bucket"),
            ("assistant", "echo: what is a token bucket"),
            ("user", "and how big should it be?"),
        ]
        assert [m.get("name") for m in chain1] == ["Alice_Smith", None, "Bob"]
        assert _history(llm, 3) == [
            ("user", "tell me about queues"),
            ("assistant", "echo: tell me about queues"),
            ("user", "what about priorities?"),
        ]
        # group answers are sendMessage (+ edits), replying to the question; never drafts
        assert tg.calls_of("sendMessageDraft") == []
        assert all(len(tg.replies_to(group, m)) == 1 for m in (m1, m2, m3, m4))
        # a command addressed to the bot is answered
        tg.send(group, bob, f"/params@{tg.username}")
        await proc.wait_until(
            lambda: any(m.text.startswith("Parameters") for m in tg.bot_messages(group)),
            what="/params@bot",
        )
        assert len(llm.chat_requests) == 4
        assert tg.rate_limited == 0
    assert tg.token not in proc.output


async def test_forum_topic_keeps_its_thread_on_every_write(
    tmp_path: Path, fake_llm: FakeOpenAI, fake_tg: FakeTelegram
) -> None:
    tg, llm = fake_tg, fake_llm
    group = tg.group(-1001000000002, "Forum", forum=True)
    alice = tg.user("Alice")
    topic = tg.create_topic(group, "Ideas", alice)
    async with ThreadlineProcess(tmp_path, tg_env(tg, llm, tmp_path)) as proc:
        await _started(proc, tg)
        llm.script(Reply(text="A longer answer " * 12 + "for the topic.", delay_between=0.05))
        q1 = tg.send(group, alice, tg.mention("an idea for the topic"), topic=topic)
        await proc.wait_until(
            lambda: any(m.text.endswith("for the topic.") for m in tg.replies_to(group, q1)),
            what="answer in the topic",
        )
        answer = tg.replies_to(group, q1)[0]
        assert answer.thread_id == topic
        # a plain message in the topic (not a reply, not a mention) is not for the bot, even
        # though Telegram sends the topic's creation message as its reply_to_message
        tg.send(group, alice, "talking in the topic", topic=topic)
        q2 = tg.send(group, alice, "and then?", topic=topic, reply_to=answer.message_id)
        await proc.wait_until(
            lambda: any(m.text == "echo: and then?" for m in tg.replies_to(group, q2)),
            what="continuation in the topic",
        )
        assert _history(llm, 1)[:2] == [
            ("user", "an idea for the topic"),
            ("assistant", answer.text),
        ]
        writes = [
            c
            for c in tg.calls
            if c.method in ("sendMessage", "sendChatAction") and c.payload.get("chat_id") == group
        ]
        assert writes and all(c.payload.get("message_thread_id") == topic for c in writes)
        assert all(c.status == 200 for c in tg.calls)
        # the General topic has no thread id: its conversation is separate
        q3 = tg.send(group, alice, tg.mention("in general"))
        await proc.wait_until(
            lambda: any(m.text == "echo: in general" for m in tg.replies_to(group, q3)),
            what="general topic",
        )
        assert tg.replies_to(group, q3)[0].thread_id is None
        assert _history(llm, 2) == [("user", "in general")]
        assert len(llm.chat_requests) == 3
    assert tg.token not in proc.output
