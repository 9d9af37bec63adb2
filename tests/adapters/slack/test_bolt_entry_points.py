"""End to end through `threadline run` with Bolt in the path: commands, shortcuts, the assistant
pane, agent sessions and Socket Mode reconnects."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from tests.adapters.slack.conftest import answered, connected, free_port, listening, slack_env
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.fakes.service_process import ThreadlineProcess
from tests.fakes.slack_server import FakeSlack, post_signed_form


def _system(request_json: dict[str, object]) -> str:
    messages = request_json["messages"]
    assert isinstance(messages, list)
    return str(messages[0]["content"]) if messages[0]["role"] == "system" else ""


async def test_the_slash_command_sets_a_parameter_of_the_thread_last_written_in(
    tmp_path: Path, slack: FakeSlack, fake_llm: FakeOpenAI
) -> None:
    env = slack_env(slack, fake_llm, tmp_path)
    async with ThreadlineProcess(tmp_path, env) as service:
        await connected(service, slack)
        await slack.send_envelope("slash_commands", slack.slash_command("D1", "params"))
        await service.wait_until(lambda: len(slack.responses) == 1, what="the first response")
        assert "Write me a message first" in slack.responses[0]["text"]

        first = slack.message("D1", "hello")
        await slack.send_event(first)
        await answered(service, slack, "D1", first["ts"], "echo: hello")
        command = slack.slash_command("D1", "set temperature 0.3")
        await slack.send_envelope("slash_commands", command)
        await service.wait_until(lambda: len(slack.responses) == 2, what="the command's reply")
        assert slack.responses[1]["text"] == "temperature set to 0.3 for this conversation."
        assert slack.responses[1]["response_type"] == "ephemeral"

        reply = slack.message("D1", "again", thread_ts=first["ts"])
        await slack.send_event(reply)
        await answered(
            service, slack, "D1", first["ts"], lambda texts: texts[-1:] == ["echo: again"]
        )
        await slack.send_envelope("slash_commands", slack.slash_command("D1", "help"))
        await slack.send_envelope("slash_commands", slack.slash_command("D1", "fly away"))
        await service.wait_until(lambda: len(slack.responses) == 4, what="help and unknown")
    assert fake_llm.chat_requests[-1].json["temperature"] == 0.3
    assert "temperature" not in fake_llm.chat_requests[0].json
    texts = [r["text"] for r in slack.responses[2:]]
    assert any("/threadline set" in t for t in texts)
    assert any(t.startswith("I don't know `/threadline fly away`") for t in texts)
    assert slack.messages.keys() == {m.ts for m in slack.thread_messages("D1", first["ts"])}


async def test_a_slash_command_over_http_is_verified_and_answered(
    tmp_path: Path, slack: FakeSlack, fake_llm: FakeOpenAI
) -> None:
    port = free_port()
    env = slack_env(slack, fake_llm, tmp_path, http_port=port)
    url = f"http://127.0.0.1:{port}/slack/events"
    async with ThreadlineProcess(tmp_path, env) as service:
        await listening(service)
        status, _, took = await post_signed_form(
            url, slack.slash_command("D1", "help"), slack.signing_secret
        )
        assert status == 200 and took < 3.0
        await service.wait_until(lambda: len(slack.responses) == 1, what="the help")
        forged, _, _ = await post_signed_form(
            url, slack.slash_command("D1", "help"), "not-the-secret"
        )
        assert forged == 401
    assert "/threadline new" in slack.responses[0]["text"]


async def test_the_channel_viewed_in_the_assistant_pane_reaches_the_model(
    tmp_path: Path, slack: FakeSlack, fake_llm: FakeOpenAI
) -> None:
    env = slack_env(slack, fake_llm, tmp_path)
    thread = slack.next_ts()
    async with ThreadlineProcess(tmp_path, env) as service:
        await connected(service, slack)
        await slack.send_event(
            slack.assistant_thread_event("assistant_thread_started", "D1", thread, viewing="C777")
        )
        await service.wait_until(lambda: bool(slack.titles), what="the thread's set-up")
        first = slack.message("D1", "what is this channel about?", thread_ts=thread)
        await slack.send_event(first)
        await answered(service, slack, "D1", thread, lambda t: len(t) == 1)
        await slack.send_event(
            slack.assistant_thread_event(
                "assistant_thread_context_changed", "D1", thread, viewing="C888"
            )
        )
        second = slack.message("D1", "and now?", thread_ts=thread)
        await asyncio.sleep(0.5)  # the context is stored before the event is acknowledged
        await slack.send_event(second)
        await answered(service, slack, "D1", thread, lambda t: len(t) == 2)
    first_system, second_system = (_system(r.json) for r in fake_llm.chat_requests)
    assert "C777" in first_system and "C888" not in first_system
    assert "C888" in second_system and "C777" not in second_system
    assert slack.suggested_prompts and slack.titles[0][2] == "Chat with threadline"


async def test_agent_sessions_show_processing_while_answering_then_active(
    tmp_path: Path, slack: FakeSlack, fake_llm: FakeOpenAI
) -> None:
    slack.agent_app = True
    fake_llm.script(Reply(text="done thinking", delay_first=0.5))
    env = slack_env(slack, fake_llm, tmp_path)
    event = slack.message("D1", "think")
    async with ThreadlineProcess(tmp_path, env) as service:
        await connected(service, slack)
        await slack.send_event(event)
        await answered(service, slack, "D1", event["ts"], "done thinking")
        await service.wait_until(
            lambda: slack.sessions.get(("D1", event["ts"])) == "active", what="active again"
        )
    statuses = [s for c, t, s in slack.session_history if (c, t) == ("D1", event["ts"])]
    assert statuses == ["processing", "active"]


async def test_a_message_shortcut_asks_about_that_message_in_its_thread(
    tmp_path: Path, slack: FakeSlack, fake_llm: FakeOpenAI
) -> None:
    env = slack_env(slack, fake_llm, tmp_path)
    original = slack.message("C1", "the build is red since Tuesday", user="U2")
    async with ThreadlineProcess(tmp_path, env) as service:
        await connected(service, slack)
        await slack.send_envelope("interactive", slack.message_shortcut("C1", original))
        await answered(service, slack, "C1", original["ts"], lambda t: len(t) == 1)
    [request] = fake_llm.chat_requests
    asked = request.json["messages"][-1]
    assert "the build is red since Tuesday" in json.dumps(asked)


async def test_a_socket_mode_disconnect_loses_no_event(
    tmp_path: Path, slack: FakeSlack, fake_llm: FakeOpenAI
) -> None:
    slack.auto_redeliver = True
    slack.ack_timeout = 2.0
    env = slack_env(slack, fake_llm, tmp_path)
    events = [slack.message("D1", f"message {i}") for i in range(4)]
    async with ThreadlineProcess(tmp_path, env) as service:
        await connected(service, slack)
        await slack.send_event(events[0])
        await slack.disconnect(close=False)  # Slack asks to move; the old socket still works
        await slack.send_event(events[1], socket=0)
        await service.wait_until(
            lambda: slack.socket_connects >= 2, within=30, what="the new connection"
        )
        await slack.disconnect()  # and now an abrupt one
        await service.wait_until(
            lambda: slack.socket_connects >= 3 and bool(slack.sockets),
            within=30,
            what="another connection",
        )
        for event in events[2:]:
            await slack.send_event(event)
        for i, event in enumerate(events):
            await answered(service, slack, "D1", event["ts"], f"echo: message {i}", within=40)
    assert len(fake_llm.chat_requests) == 4


async def test_the_agent_sessions_stop_button_stops_that_threads_answer(
    tmp_path: Path, slack: FakeSlack, fake_llm: FakeOpenAI
) -> None:
    slack.agent_app = True
    words = " ".join(f"word{i}" for i in range(200))
    fake_llm.script(Reply(text=words, delay_between=0.05), Reply())
    env = slack_env(slack, fake_llm, tmp_path)
    event = slack.message("D1", "tell me everything")
    async with ThreadlineProcess(tmp_path, env) as service:
        await connected(service, slack)
        await slack.send_event(event)
        await service.wait_until(
            lambda: "word10" in "".join(slack.thread_text("D1", event["ts"])),
            what="the answer to be streaming",
        )
        await slack.stop_session("D1", event["ts"])
        texts = await answered(
            service, slack, "D1", event["ts"], lambda t: "Stopped" in "".join(t)
        )
        await service.wait_until(
            lambda: slack.sessions.get(("D1", event["ts"])) == "active", what="active again"
        )
        reply = slack.message("D1", "go on", thread_ts=event["ts"])
        await slack.send_event(reply)
        await answered(service, slack, "D1", event["ts"], lambda t: t[-1:] == ["echo: go on"])
    [stopped] = texts
    shown, _, note = stopped.rpartition("\n\n")
    assert note == "⏹️ _Stopped._"
    assert shown.startswith("word0 word1") and words.startswith(shown) and shown != words
    assert "processing" in [s for c, t, s in slack.session_history if t == event["ts"]]
    history = fake_llm.chat_requests[-1].json["messages"]
    saved = history[-2]
    assert saved["role"] == "assistant" and words.startswith(saved["content"])
    assert "word199" not in saved["content"]


async def test_sigterm_mid_answer_stops_bolt_and_the_socket_within_the_grace(
    tmp_path: Path, slack: FakeSlack, fake_llm: FakeOpenAI
) -> None:
    words = " ".join(f"word{i}" for i in range(400))
    fake_llm.script(Reply(text=words, delay_between=0.05))
    env = slack_env(slack, fake_llm, tmp_path, THREADLINE_SHUTDOWN_GRACE="1")
    event = slack.message("D1", "a long one")
    service = ThreadlineProcess(tmp_path, env)
    await service.start()
    try:
        await connected(service, slack)
        await slack.send_event(event)
        await service.wait_until(
            lambda: "word5" in "".join(slack.thread_text("D1", event["ts"])),
            what="the answer to be streaming",
        )
        started = asyncio.get_running_loop().time()
        code = await service.stop(grace=10.0)
        took = asyncio.get_running_loop().time() - started
    finally:
        await service.stop()
    assert code == 0 and took < 8.0, (code, took, service.output[-2000:])
    assert slack.thread_final("D1", event["ts"])  # closed visibly, not left streaming
    assert "Task was destroyed" not in service.output and "Unclosed" not in service.output
    await asyncio.sleep(0.5)
    assert not slack.sockets  # the socket mode connection is gone
