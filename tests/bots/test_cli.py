"""The `threadline` command run as a real process against a local fake LLM server."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.fakes.openai_server import FakeOpenAI, Fault, Reply

REPO = str(Path(__file__).resolve().parents[2])


@dataclass
class Result:
    code: int
    out: str
    err: str


def cli_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without threadline's settings, plus `env`."""
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("THREADLINE_", "OPENAI_", "SLACK_", "TELEGRAM_", "DISCORD_"))
        and k not in ("DATABASE_URL", "REDIS_URL")
    }
    base["PYTHONPATH"] = REPO
    base.update(env or {})
    return base


async def threadline(
    cwd: Path, *args: str, env: dict[str, str] | None = None, stdin: bytes | None = None
) -> Result:
    """Run `python -m bots ARGS` in `cwd` with a clean threadline environment."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bots",
        *args,
        cwd=cwd,
        env=cli_env(env),
        stdin=asyncio.subprocess.DEVNULL if stdin is None else asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), timeout=60)
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


def llm_env(server: FakeOpenAI, **extra: str) -> dict[str, str]:
    env = {
        "OPENAI_BASE_URL": server.base_url,
        "OPENAI_API_KEY": "sk-cli-test-secret",
        "THREADLINE_MODEL": "fake-model",
        "THREADLINE_MAX_RETRIES": "0",
    }
    env.update(extra)
    return env


async def test_ask_streams_the_answer_and_keeps_the_thread(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    first = await threadline(tmp_path, "ask", "what is a token bucket", env=llm_env(fake_llm))
    assert first.code == 0, first.err
    assert first.out == "echo: what is a token bucket\n"

    second = await threadline(tmp_path, "ask", "and a leaky one", env=llm_env(fake_llm))
    assert second.code == 0, second.err
    assert second.out == "echo: and a leaky one\n"
    messages = fake_llm.chat_requests[1].json["messages"]
    assert [(m["role"], m["content"]) for m in messages[1:]] == [
        ("user", "what is a token bucket"),
        ("assistant", "echo: what is a token bucket"),
        ("user", "and a leaky one"),
    ]
    assert messages[0]["role"] == "system"
    assert (tmp_path / "data" / "threadline.db").exists()
    assert b"sk-cli-test-secret" not in (tmp_path / "data" / "threadline.db").read_bytes()


async def test_ask_threads_are_separate(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    await threadline(tmp_path, "ask", "--thread", "a", "first in a", env=llm_env(fake_llm))
    result = await threadline(tmp_path, "ask", "--thread", "b", "first in b", env=llm_env(fake_llm))
    assert result.code == 0, result.err
    contents = [m["content"] for m in fake_llm.chat_requests[1].json["messages"][1:]]
    assert contents == ["first in b"]


async def test_ask_failure_exits_non_zero_with_a_message(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script(Fault.status(500))
    result = await threadline(tmp_path, "ask", "hello", env=llm_env(fake_llm))
    assert result.code == 1
    assert "threadline:" in result.err and "LLMUnavailable" in result.err
    assert "sk-cli-test-secret" not in result.err + result.out


async def test_ask_keeps_partial_text_when_the_stream_breaks(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script(
        Fault.drop_mid_stream(after_chunks=3, reply=Reply(text="one two three four five six"))
    )
    result = await threadline(tmp_path, "ask", "count", env=llm_env(fake_llm))
    assert result.code == 1
    assert result.out.startswith("one two three")
    assert "stopped early" in result.out


async def test_bad_setting_stops_start_up_naming_it(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    result = await threadline(
        tmp_path, "ask", "hi", env=llm_env(fake_llm, THREADLINE_TEMPERATURE="3.5")
    )
    assert result.code == 2
    assert "THREADLINE_TEMPERATURE" in result.err and "between 0 and 2" in result.err
    assert fake_llm.chat_requests == []


async def test_env_file_is_read(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    (tmp_path / ".env").write_text(
        f"OPENAI_BASE_URL={fake_llm.base_url}\nTHREADLINE_MODEL=model-from-dotenv\n"
    )
    result = await threadline(tmp_path, "ask", "hi")
    assert result.code == 0, result.err
    assert fake_llm.chat_requests[0].json["model"] == "model-from-dotenv"


async def test_run_without_platforms_names_the_variables(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    result = await threadline(tmp_path, "run", env=llm_env(fake_llm))
    assert result.code == 2
    for name in ("SLACK_BOT_TOKEN", "TELEGRAM_BOT_TOKEN", "DISCORD_BOT_TOKEN"):
        assert name in result.err


async def test_check_reaches_the_server(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    result = await threadline(tmp_path, "check", env=llm_env(fake_llm))
    assert result.code == 0, result.err
    assert "LLM server ok" in result.out
    fake_llm.script(Fault.status(401))
    failed = await threadline(tmp_path, "check", env=llm_env(fake_llm))
    assert failed.code == 1 and "LLM server: FAILED" in failed.err


async def test_db_upgrade_and_current(tmp_path: Path) -> None:
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"}
    upgraded = await threadline(tmp_path, "db", "upgrade", env=env)
    assert upgraded.code == 0, upgraded.err
    current = await threadline(tmp_path, "db", "current", env=env)
    assert current.out.strip() and current.out.strip() in upgraded.out


async def test_python_m_bots_is_the_cli(tmp_path: Path) -> None:
    result = await threadline(tmp_path, "--help")
    assert result.code == 0
    for command in ("run", "chat", "ask", "check", "db"):
        assert command in result.out


async def test_chat_answers_each_line_in_one_thread(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    result = await threadline(
        tmp_path,
        "chat",
        "--thread",
        "cli-chat",
        env=llm_env(fake_llm),
        stdin=b"hello there\nhow are you\n/exit\n",
    )
    assert result.code == 0, result.err
    assert result.out == "echo: hello there\necho: how are you\n"
    contents = [m["content"] for m in fake_llm.chat_requests[1].json["messages"][1:]]
    assert contents == ["hello there", "echo: hello there", "how are you"]


async def test_ask_with_a_command_succeeds(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    result = await threadline(tmp_path, "ask", "/help", env=llm_env(fake_llm))
    assert result.code == 0, result.err
    assert "/new" in result.out and fake_llm.chat_requests == []


def _default_sigint() -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _chat_then_ctrl_c(cwd: Path, env: dict[str, str]) -> tuple[bool, int | None, float]:
    """Start `chat` on a pseudo-terminal, wait for the prompt, press Ctrl-C; (prompt, code, s).

    Its stderr goes to `cwd/stderr.txt`, for the failure message.
    """
    import pty
    import select
    import signal
    import subprocess
    import time

    leader, follower = pty.openpty()
    with (cwd / "stderr.txt").open("wb") as stderr:
        # PYTHONFAULTHANDLER: if it hangs, SIGABRT makes it print where every thread is.
        proc = subprocess.Popen(
            [sys.executable, "-m", "bots", "chat"],
            cwd=cwd,
            env={**env, "PYTHONFAULTHANDLER": "1"},
            stdin=follower,
            stdout=follower,
            stderr=stderr,
            # A shell's background job inherits SIGINT ignored (CI may run us so), and Python
            # then leaves Ctrl-C ignored too; a terminal user's process never starts that way.
            preexec_fn=_default_sigint,
        )
    os.close(follower)
    seen = b""
    deadline = time.monotonic() + 30
    while b"> " not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.2)
        if ready:
            seen += os.read(leader, 1024)
    proc.send_signal(signal.SIGINT)
    started = time.monotonic()
    try:
        code: int | None = proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        code = None
    os.close(leader)
    return b"> " in seen, code, time.monotonic() - started


async def test_ctrl_c_at_the_chat_prompt_exits_at_once(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    env = cli_env(llm_env(fake_llm))
    prompt, code, seconds = await asyncio.to_thread(_chat_then_ctrl_c, tmp_path, env)
    errors = (tmp_path / "stderr.txt").read_text(errors="replace")
    assert prompt, errors
    assert code == 130 and seconds < 5, f"exit {code} after {seconds:.1f}s; stderr:\n{errors}"
