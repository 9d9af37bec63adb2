"""End to end through `threadline run`: gateway identify, sharding, slash commands, secrets."""

from __future__ import annotations

from pathlib import Path

from core.commands import COMMAND_HELP, SETTABLE_PARAMS
from tests.adapters.discord.conftest import TOKEN, discord_env, running
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.service_process import ThreadlineProcess

MESSAGE_CONTENT_INTENT = 1 << 15
GUILD_MESSAGES_INTENT = 1 << 9
DIRECT_MESSAGES_INTENT = 1 << 12


async def test_identify_without_sharding_and_gateway_from_the_api(
    tmp_path: Path, fake_discord: FakeDiscord, fake_llm: FakeOpenAI
) -> None:
    fake = fake_discord
    async with running(tmp_path, fake, fake_llm) as proc:
        pass
    assert proc.returncode == 0  # SIGTERM: a clean shutdown
    assert "Unclosed" not in proc.output and "Task was destroyed" not in proc.output
    assert fake.calls[0].route == "/gateway/bot"  # the gateway URL came from DISCORD_API_URL
    (identify,) = fake.identifies
    assert identify["token"] == TOKEN
    assert "shard" not in identify
    intents = identify["intents"]
    for bit in (MESSAGE_CONTENT_INTENT, GUILD_MESSAGES_INTENT, DIRECT_MESSAGES_INTENT):
        assert intents & bit


async def test_sharding_identifies_the_configured_shards(
    tmp_path: Path, fake_discord: FakeDiscord, fake_llm: FakeOpenAI
) -> None:
    fake = fake_discord
    guild = fake.guild_on_shard(1, 3)
    channel = fake.text_channel_of(guild)
    async with running(
        tmp_path, fake, fake_llm, DISCORD_SHARD_COUNT="3", DISCORD_SHARD_IDS="1"
    ) as proc:
        question = await fake.user_message(channel, "hello shard one", mention_bot=True)
        await proc.wait_until(
            lambda: fake.answer_text(question) == "echo: hello shard one", what="the answer"
        )
    assert [i["shard"] for i in fake.identifies] == [[1, 3]]


async def test_slash_commands_are_registered_and_run_through_the_service(
    tmp_path: Path, fake_discord: FakeDiscord, fake_llm: FakeOpenAI
) -> None:
    fake = fake_discord
    async with running(tmp_path, fake, fake_llm) as proc:
        assert {c["name"] for c in fake.commands} == set(COMMAND_HELP)
        set_command = next(c for c in fake.commands if c["name"] == "set")
        parameter = next(o for o in set_command["options"] if o["name"] == "parameter")
        assert [c["value"] for c in parameter["choices"]] == list(SETTABLE_PARAMS)

        start = await fake.user_message(fake.thread_id, "hello", mention_bot=True)
        await proc.wait_until(lambda: bool(fake.answer_parts(start)), what="first answer")
        token = await fake.interaction(
            "set", fake.thread_id, {"parameter": "temperature", "value": "0.2"}
        )
        await proc.wait_until(lambda: bool(fake.followups(token)), what="the /set answer")
        assert fake.followups(token)[0].content == "temperature set to 0.2 for this conversation."
        after = await fake.user_message(fake.thread_id, "now warmer?")
        await proc.wait_until(lambda: bool(fake.answer_parts(after)), what="answer after /set")

        params = await fake.interaction("params", fake.thread_id)
        await proc.wait_until(lambda: bool(fake.followups(params)), what="the /params answer")
        help_token = await fake.interaction("help", fake.channel_id)
        await proc.wait_until(lambda: bool(fake.followups(help_token)), what="the /help answer")
        hint = await fake.interaction("new", fake.channel_id)
        await proc.wait_until(lambda: bool(fake.followups(hint)), what="the channel hint")

    assert fake_llm.chat_requests[-1].json["temperature"] == 0.2
    assert "temperature: 0.2 (set here)" in fake.followups(params)[0].content
    assert "/new" in fake.followups(help_token)[0].content
    # in a plain channel /new has no conversation to act on: an ephemeral hint, no LLM call
    assert "reply chain" in fake.followups(hint)[0].content
    hint_callback = fake.interaction_callbacks[-1]
    assert hint_callback["type"] == 4 and hint_callback["data"]["flags"] & 64
    # interaction answers carry no-ping allowed_mentions too
    bodies = [c.json for c in fake.writes() if c.route.startswith("/webhooks/")]
    bodies += [c["data"] for c in fake.interaction_callbacks if c.get("data")]
    assert bodies and all(b["allowed_mentions"]["parse"] == [] for b in bodies)
    assert len(fake_llm.chat_requests) == 2


async def test_token_never_appears_in_the_logs(
    tmp_path: Path, fake_discord: FakeDiscord, fake_llm: FakeOpenAI
) -> None:
    fake = fake_discord
    async with running(tmp_path, fake, fake_llm, THREADLINE_LOG_LEVEL="DEBUG") as proc:
        question = await fake.user_message(fake.channel_id, "hello", mention_bot=True)
        await proc.wait_until(lambda: bool(fake.answer_parts(question)), what="the answer")
        token = await fake.interaction("help", fake.dm_channel_id)
        await proc.wait_until(lambda: bool(fake.followups(token)), what="the /help answer")
    assert "discord" in proc.output and "gateway" in proc.output.lower()
    assert TOKEN not in proc.output
    assert TOKEN.split(".")[0] not in proc.output


async def test_a_rejected_token_stops_the_service_without_showing_it(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    async with FakeDiscord(token="the-right-token") as fake:
        env = discord_env(tmp_path, fake, fake_llm)
        env["DISCORD_BOT_TOKEN"] = "wrong-token-Zq81"
        async with ThreadlineProcess(tmp_path, env) as proc:
            await proc.wait_until(lambda: not proc.running, what="the service to stop")
    assert proc.returncode != 0
    assert "DISCORD_BOT_TOKEN: Discord rejected the bot token" in proc.output
    assert "wrong-token-Zq81" not in proc.output
    assert fake.identifies == []  # it never reached the gateway
