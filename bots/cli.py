"""The `threadline` command line: run, chat, ask, check and db."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Sequence
from urllib.parse import urlsplit

from adapters.console.runner import ConsoleChannel
from bots.config import load_settings
from bots.logging_setup import configure_logging
from bots.service_runner import run_channels
from bots.wiring import Runtime, build_runtime, chat_params, freeze_startup_heap, llm_endpoint
from core.conversation import TurnStatus
from core.errors import ConfigError, LLMError, StoreError, ThreadlineError
from core.llm import ChatMessage, ChatRequest
from core.settings import Settings
from core.store import current_revision, upgrade


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="threadline", description="LLM assistant for Slack, Telegram and Discord."
    )
    parser.add_argument("--env-file", default=".env", help="settings file to read (default .env)")
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log at THREADLINE_LOG_LEVEL to stderr (run always does; the others log warnings)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="run every channel whose token is set")
    chat = commands.add_parser("chat", help="chat in the terminal")
    chat.add_argument("--thread", default="main", help="conversation name to continue")
    ask = commands.add_parser("ask", help="ask one question and stream the answer to stdout")
    ask.add_argument("question")
    ask.add_argument("--thread", default="main", help="conversation name to continue")
    commands.add_parser("check", help="validate the configuration and reach the LLM server")
    db = commands.add_parser("db", help="database maintenance")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    db_commands.add_parser("upgrade", help="apply migrations up to the newest")
    db_commands.add_parser("current", help="print the applied migration revision")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `threadline` console script and `python -m bots`."""
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(args.env_file)
        level = settings.log_level if (args.verbose or args.command == "run") else "WARNING"
        configure_logging(
            level, _secret_values(settings), json_lines=settings.log_format == "json"
        )
        return asyncio.run(_dispatch(args, settings))
    except ConfigError as exc:
        print(f"threadline: configuration error: {exc}", file=sys.stderr)
        return 2
    except ThreadlineError as exc:
        print(f"threadline: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


async def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "db":
        url = settings.database_url.get_secret_value()
        if args.db_command == "upgrade":
            await upgrade(url)
            print(f"database at revision {await current_revision(url)}")
        else:
            print(await current_revision(url) or "no revision applied")
        return 0
    if args.command == "check":
        return await _check(settings)
    if args.command == "run":
        return await _with_runtime(
            settings, lambda rt: run_channels(rt, interactive=sys.stdin.isatty())
        )
    if args.command == "chat":
        return await _with_runtime(settings, lambda rt: _chat(rt, args.thread))
    return await _with_runtime(settings, lambda rt: _ask(rt, args.question, args.thread))


async def _with_runtime(settings: Settings, body: Callable[[Runtime], Awaitable[int]]) -> int:
    runtime = await build_runtime(settings)
    freeze_startup_heap()
    try:
        return await body(runtime)
    finally:
        await runtime.aclose()


async def _chat(runtime: Runtime, thread: str) -> int:
    await ConsoleChannel(runtime.service, thread=thread).chat()
    return 0


async def _ask(runtime: Runtime, question: str, thread: str) -> int:
    outcome = await ConsoleChannel(runtime.service, thread=thread).ask(question)
    if outcome.skipped == "empty":
        print("threadline: the question is empty", file=sys.stderr)
        return 2
    if not outcome.stored:
        print("threadline: warning: the answer could not be saved to the history", file=sys.stderr)
    if outcome.error is not None or outcome.status is TurnStatus.FAILED:
        print(f"threadline: the answer failed ({outcome.error or 'no answer'})", file=sys.stderr)
        return 1
    return 0


async def _check(settings: Settings) -> int:
    """Validate the settings, open the database and make one tiny Chat Completions call."""
    params = chat_params(settings)
    endpoint = llm_endpoint(settings)
    print(f"configuration ok: model {params.model} at {endpoint.base_url}")
    print(f"platforms enabled: {', '.join(settings.enabled_platforms()) or 'none'}")
    try:
        runtime = await build_runtime(settings)
    except StoreError as exc:
        print(f"database: FAILED ({exc})", file=sys.stderr)
        return 1
    try:
        print("database ok")
        request = ChatRequest(
            messages=(ChatMessage(role="user", content="Reply with the word ok."),),
            params=params.with_overrides(max_tokens=5, n=1),
            stream=False,
        )
        try:
            completion = await runtime.llm.complete(request)
        except LLMError as exc:
            print(f"LLM server: FAILED ({type(exc).__name__}: {exc})", file=sys.stderr)
            return 1
        print(f"LLM server ok: answered {completion.texts[0][:40]!r}")
        return 0
    finally:
        await runtime.aclose()


def _secret_values(settings: Settings) -> list[str]:
    values = []
    for name in (
        "openai_api_key",
        "slack_bot_token",
        "slack_app_token",
        "slack_signing_secret",
        "slack_client_secret",
        "secret_key",
        "telegram_bot_token",
        "telegram_webhook_secret",
        "discord_bot_token",
        "user_hash_key",
    ):
        secret = getattr(settings, name)
        if secret is not None:
            values.append(secret.get_secret_value())
    for url in (settings.database_url, settings.redis_url):
        if url is not None:
            password = urlsplit(url.get_secret_value()).password
            if password:
                values.append(password)
    return values
