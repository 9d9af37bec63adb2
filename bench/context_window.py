"""A conversation against a small context: answers, rejections and notes, per server wording.

For each server wording of the fake LLM (context of 2,048 tokens, counted as characters / 4)
and a service that assumes the default 128,000-token window: 12 messages of ~1,400 characters
in one conversation. Prints how many were answered, the chat requests and length rejections,
the "older messages left out" notes, and the limit stored for the model.

    .venv/bin/python -m bench.context_window
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from pathlib import Path

import httpx

from core.clock import SystemClock
from core.context import TokenCounter
from core.conversation import ConversationKey, Inbound
from core.llm import ChatCompletionsClient, ChatParams, LLMEndpoint
from core.service import ChatService, ServiceConfig
from core.store import HistoryStore
from core.streaming import Pacer, PaceScope, SinkLimits, StreamDriver
from tests.fakes.budget_sink import Budget, Platform
from tests.fakes.openai_server import CONTEXT_STYLES, FakeOpenAI

CONTEXT = 2048
MESSAGES = 12
TEXT = "sed do eiusmod tempor incididunt ut labore et dolore magna aliqua. " * 20
LEFT_OUT = "so I left them out"
SCOPE = PaceScope("bench", rate=1000.0, burst=1000)


async def run(style: str, directory: Path) -> str:
    async with FakeOpenAI(context_size=CONTEXT, context_style=style, publish_context=False) as llm:
        store = await HistoryStore.open(f"sqlite:///{directory / f'{style}.db'}")
        async with httpx.AsyncClient() as http:
            clock = SystemClock()
            client = ChatCompletionsClient(http, LLMEndpoint(base_url=llm.base_url, max_retries=0))
            config = ServiceConfig(
                system_prompt="You are a benchmark.",
                params=ChatParams(model="fake-model"),
                context_window=128_000,
                reply_tokens=4_096,
            )
            service = ChatService(
                store=store,
                llm=client,
                driver=StreamDriver(Pacer(clock), clock),
                counter=TokenCounter(),
                config=config,
            )
            platform = Platform(clock, {"bench": Budget(1000, 1.0)})
            limits = SinkLimits(max_length=100_000, post_scopes=(SCOPE,), edit_scopes=(SCOPE,))
            answered = notes = 0
            for n in range(MESSAGES):
                sink = platform.sink(limits)
                inbound = Inbound(
                    key=ConversationKey("bench", "space", "chan", "t"),
                    message_id=f"m{n}",
                    author_id="U1",
                    author_name="Ada",
                    text=f"{n}: {TEXT}",
                    is_direct=True,
                )
                await service.handle(inbound, sink)
                shown = sink.texts()[-1]
                answered += shown.startswith(f"echo: {n}:")
                notes += LEFT_OUT in shown
            learned = await store.model_limit("fake-model")
        await store.close()
        return (
            f"{style:10} answered {answered}/{MESSAGES}  requests {len(llm.chat_requests)}  "
            f"rejections {llm.context_rejections}  notes {notes}  stored limit {learned}"
        )


async def main() -> None:
    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory() as directory:
        for style in sorted(CONTEXT_STYLES):
            print(await run(style, Path(directory)), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
