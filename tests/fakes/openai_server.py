"""A local OpenAI-compatible Chat Completions server (aiohttp) with scripted replies and faults.

Real HTTP on 127.0.0.1 and real SSE (chunked transfer, one flush per event). With nothing
scripted every chat request is answered with `echo: <last user message>`, streamed word by
word, with usage when the request asks for it. Tests script the next answers with
`server.script(Reply(...), Fault.status(429, retry_after=1), ...)`, one step per request.

With `context_size` set the fake enforces a context window the way the server named by
`context_style` does, and answers an oversized request with that server's status and exact error
body (see `CONTEXT_STYLES`). It counts a request's prompt tokens with `count_prompt_tokens`:
characters / 4, rounded up, per message content, plus 4 per message and 3 for the reply; that
is cruder than the service's estimate and on purpose not the same, as with a real server. With
`publish_context` it also publishes the size where that server does: `max_model_len` (vLLM) or
`context_length` (OpenRouter) in `GET /v1/models`, `n_ctx` in llama.cpp's `GET /props`.

Run `python -m tests.fakes.openai_server --port 8000` to serve the default behaviour forever.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import random
import re
import socket
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from aiohttp import web

from tests.fakes.served import Served

QUIRKS = frozenset(
    {
        "azure_first_chunk",  # Azure: first chunk has choices [] and prompt_filter_results
        "usage",  # send the usage chunk even when the request did not ask for it
        "no_usage",  # never send the usage chunk (servers without stream_options support)
        "groq_usage",  # usage under x_groq.usage on the last choice chunk
        "keepalive_comments",  # `: keep-alive` / `: OPENROUTER PROCESSING` while waiting
        "crlf",  # CRLF line endings
        "split_bytes",  # write events cut at arbitrary bytes, inside UTF-8 characters too
        "reasoning",  # stream delta.reasoning_content before the content (DeepSeek)
        "think_tags",  # put <think>...</think> at the start of the content (local servers)
        "multiline_data",  # pretty-printed JSON spread over several data: lines
        "blank_lines",  # extra blank lines between events
        "no_done",  # end the stream without data: [DONE]
        "no_role_chunk",  # skip the initial {"role": "assistant"} chunk
        "ignore_stream",  # answer a streaming request with one JSON body (old local servers)
        "context_usage",  # usage.prompt_tokens by count_prompt_tokens (on with context_size)
    }
)
CONTEXT_STYLES = frozenset(
    {"openai", "vllm", "llamacpp", "openrouter", "groq", "ollama", "lmstudio"}
)
CREATED = 1_700_000_000
DEFAULT_MODEL = "fake-model"
REASONING = "The user wants an answer. Let me think step by step."


@dataclass(frozen=True)
class Reply:
    """How to answer one chat request.

    `text` (or one text per choice in `texts`) is split word by word unless `chunks` gives the
    pieces of choice 0 explicitly; `None` everywhere means the default echo answer.
    `finish_reason=None` sends no finish reason. Delays are in seconds: before the headers,
    before the first event, and before each later content chunk.
    """

    text: str | None = None
    texts: Sequence[str] | None = None
    chunks: Sequence[str] | None = None
    n: int | None = None
    finish_reason: str | None = "stop"
    delay_headers: float = 0.0
    delay_first: float = 0.0
    delay_between: float = 0.0
    quirks: Iterable[str] = ()
    refusal: str | None = None
    reasoning: str = REASONING
    model: str | None = None
    keepalive_interval: float = 0.05
    split_seed: int = 7

    def __post_init__(self) -> None:
        unknown = set(self.quirks) - QUIRKS
        if unknown:
            raise ValueError(f"unknown quirks {sorted(unknown)}; known: {sorted(QUIRKS)}")
        object.__setattr__(self, "quirks", frozenset(self.quirks))

    def has(self, quirk: str) -> bool:
        """Whether `quirk` is switched on."""
        return quirk in frozenset(self.quirks)


@dataclass(frozen=True)
class Fault:
    """A failure for one chat request; build it with the classmethods."""

    kind: str
    status_code: int = 0
    message: str | None = None
    retry_after: float | str | None = None
    retry_after_ms: float | None = None
    style: str = "openai"
    code: str | int | None = None
    after: int = 0
    seconds: float = 0.0
    reply: Reply = field(default_factory=Reply)

    @classmethod
    def status(
        cls,
        code: int,
        *,
        retry_after: float | str | None = None,
        retry_after_ms: float | None = None,
        message: str | None = None,
        style: str = "openai",
    ) -> Fault:
        """Answer with HTTP `code` and an error body (`style` "openai", "vllm" or "text")."""
        return cls(
            "status",
            status_code=code,
            retry_after=retry_after,
            retry_after_ms=retry_after_ms,
            message=message,
            style=style,
        )

    @classmethod
    def drop_mid_stream(cls, after_chunks: int = 3, reply: Reply | None = None) -> Fault:
        """Close the connection abruptly after `after_chunks` content chunks."""
        return cls("drop", after=after_chunks, reply=reply or Reply())

    @classmethod
    def error_chunk(
        cls,
        after: int = 2,
        style: str = "openai",
        message: str = "The server had an error while processing your request.",
        code: str | int | None = None,
        reply: Reply | None = None,
    ) -> Fault:
        """After `after` content chunks send an error payload with HTTP 200 and end the stream."""
        return cls(
            "error_chunk",
            after=after,
            style=style,
            message=message,
            code=code,
            reply=reply or Reply(),
        )

    @classmethod
    def no_finish_reason(cls, reply: Reply | None = None) -> Fault:
        """Stream the content and [DONE] but never a finish reason."""
        return cls("no_finish_reason", reply=reply or Reply())

    @classmethod
    def reject_stream_options(cls) -> Fault:
        """Answer 400 if the request carries stream_options, else answer normally."""
        return cls("reject_stream_options")

    @classmethod
    def reject_max_tokens(cls) -> Fault:
        """Answer 400 "use max_completion_tokens" if the request carries max_tokens."""
        return cls("reject_max_tokens")

    @classmethod
    def slow_headers(cls, seconds: float) -> Fault:
        """Wait `seconds` before sending the response headers."""
        return cls("slow", reply=Reply(delay_headers=seconds))

    @classmethod
    def slow_first_token(cls, seconds: float, reply: Reply | None = None) -> Fault:
        """Send headers at once, then wait `seconds` before the first event."""
        return cls("slow", reply=replace(reply or Reply(), delay_first=seconds))

    @classmethod
    def slow_stream(cls, seconds: float, reply: Reply | None = None) -> Fault:
        """Wait `seconds` before every content chunk after the first."""
        return cls("slow", reply=replace(reply or Reply(), delay_between=seconds))

    @classmethod
    def stall(cls, after_chunks: int, seconds: float, reply: Reply | None = None) -> Fault:
        """Go silent for `seconds` after `after_chunks` content chunks, then carry on."""
        return cls("stall", after=after_chunks, seconds=seconds, reply=reply or Reply())


Step = Reply | Fault


@dataclass
class RecordedRequest:
    """One request the fake received; `last_token_at` is the wall-clock time of its last delta."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]  # lower-cased names
    json: Any
    last_token_at: float | None = None
    content_chunks: int = 0
    """Content deltas written to the client."""
    disconnected: bool = False
    """The client closed the stream before it ended (a write found the connection gone)."""


class FakeOpenAI(Served):
    """An OpenAI-compatible server on 127.0.0.1 for tests and demos.

    Endpoints: POST /v1/chat/completions, GET /v1/models and Azure's
    POST /openai/deployments/{name}/chat/completions?api-version=... (key in `api-key`).
    """

    def __init__(
        self,
        *,
        require_key: str | None = None,
        models: Sequence[str] | None = (DEFAULT_MODEL,),
        supports_stream_options: bool = True,
        supports_max_tokens: bool = True,
        context_size: int | None = None,
        context_style: str = "openai",
        publish_context: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if context_style not in CONTEXT_STYLES:
            raise ValueError(f"unknown context_style {context_style!r}: {sorted(CONTEXT_STYLES)}")
        self.context_size = context_size
        self.context_style = context_style
        self.publish_context = publish_context
        self.context_rejections = 0
        self.require_key = require_key
        self.models = models
        self.supports_stream_options = supports_stream_options
        self.supports_max_tokens = supports_max_tokens
        self.requests: list[RecordedRequest] = []
        self._host = host
        self._port = port
        self._steps: deque[Step] = deque()
        self._runner: web.AppRunner | None = None

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Bind a free port (or the given one) and start serving."""
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._openai_chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/props", self._props)
        app.router.add_post("/openai/deployments/{deployment}/chat/completions", self._azure_chat)
        self._runner = web.AppRunner(
            app, access_log=None, shutdown_timeout=0.1, handler_cancellation=True
        )
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self._host, self._port))
            self._port = sock.getsockname()[1]
            await web.SockSite(self._runner, sock).start()
        except BaseException:
            sock.close()
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop serving; in-flight streams are cut."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def port(self) -> int:
        """The TCP port served on."""
        return self._port

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL, e.g. http://127.0.0.1:PORT/v1."""
        return f"http://{self._host}:{self._port}/v1"

    def azure_base_url(self, deployment: str = "gpt-4o") -> str:
        """An Azure-style deployment URL served by this fake."""
        return f"http://{self._host}:{self._port}/openai/deployments/{deployment}"

    # -- scripting ---------------------------------------------------------------------

    def script(self, *steps: Step) -> None:
        """Queue how to answer the next chat requests, one step per request."""
        self._steps.extend(steps)

    @property
    def pending_steps(self) -> int:
        """Scripted steps not used yet."""
        return len(self._steps)

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        """The recorded chat completion requests, oldest first."""
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    # -- handlers ----------------------------------------------------------------------

    async def _openai_chat(self, request: web.Request) -> web.StreamResponse:
        return await self._chat(request, azure=False)

    async def _azure_chat(self, request: web.Request) -> web.StreamResponse:
        return await self._chat(request, azure=True)

    async def _models(self, request: web.Request) -> web.StreamResponse:
        await self._record(request)
        refusal = self._check_key(request, azure=False)
        if refusal is not None:
            return refusal
        if self.models is None:
            return _error_response(404, "Not Found", "openai", kind="not_found_error")
        data = [self._model_entry(model) for model in self.models]
        return web.json_response({"object": "list", "data": data})

    def _model_entry(self, model: str) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "id": model,
            "object": "model",
            "created": CREATED,
            "owned_by": "fake",
        }
        size = self.context_size if self.publish_context else None
        if size is None:
            return entry
        if self.context_style == "vllm":
            entry.update(owned_by="vllm", root=model, parent=None, max_model_len=size)
        elif self.context_style == "openrouter":
            entry.update(
                canonical_slug=model,
                context_length=size,
                top_provider={"context_length": size, "max_completion_tokens": None},
            )
        elif self.context_style == "llamacpp":
            # llama.cpp lists the size the model was trained with, not the server's context.
            entry.update(owned_by="llamacpp", meta={"n_ctx_train": size * 64, "n_params": 1})
        return entry

    async def _props(self, request: web.Request) -> web.StreamResponse:
        """llama.cpp's server properties; other servers have no such endpoint (404)."""
        await self._record(request)
        size = self.context_size if self.publish_context else None
        if self.context_style != "llamacpp" or size is None:
            return web.Response(status=404, text="404 Not Found")
        return web.json_response(
            {
                "default_generation_settings": {"n_ctx": size, "params": {"n_predict": -1}},
                "total_slots": 1,
                "model_path": "/models/fake.gguf",
                "chat_template": "",
                "build_info": "b0000-fake",
            }
        )

    async def _chat(self, request: web.Request, azure: bool) -> web.StreamResponse:
        body = await self._record(request)
        refusal = self._check_key(request, azure=azure)
        if refusal is not None:
            return refusal
        if azure and not request.query.get("api-version"):
            return _error_response(400, "Missing required query parameter: api-version", "openai")
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return _error_response(400, "'messages' is a required property", "openai")
        too_long = self._reject_too_long(body)
        if too_long is not None:
            return too_long  # before any scripted step: that one is for the next request
        step = self._steps.popleft() if self._steps else Reply()
        fault = step if isinstance(step, Fault) else None
        reply = step.reply if isinstance(step, Fault) else step
        if azure:
            reply = replace(reply, quirks={*reply.quirks, "azure_first_chunk"})
        if self.context_size is not None:
            reply = replace(reply, quirks={*reply.quirks, "context_usage"})
        rejection = self._reject_unsupported(body, fault)
        if rejection is not None:
            return rejection
        if fault is not None and fault.kind == "status":
            return _status_fault(fault)
        if reply.delay_headers:
            await asyncio.sleep(reply.delay_headers)
        if body.get("stream") and not reply.has("ignore_stream"):
            record = self.requests[-1]
            try:
                return await _StreamWriter(request, body, reply, fault, record).run()
            except (ConnectionError, asyncio.CancelledError):
                record.disconnected = True  # aiohttp cancels the handler when the client leaves
                raise
        return _whole_answer(body, reply, fault)

    async def _record(self, request: web.Request) -> Any:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        self.requests.append(
            RecordedRequest(
                method=request.method,
                path=request.path,
                query=dict(request.query),
                headers={name.lower(): value for name, value in request.headers.items()},
                json=body,
            )
        )
        return body

    def _check_key(self, request: web.Request, azure: bool) -> web.Response | None:
        if self.require_key is None:
            return None
        if azure:
            given = request.headers.get("api-key", "")
        else:
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            given = given if scheme.lower() == "bearer" else ""
        if given == self.require_key:
            return None
        masked = f"{given[:3]}***{given[-2:]}" if len(given) > 6 else "***"
        return _error_response(
            401,
            f"Incorrect API key provided: {masked}. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            "openai",
            kind="invalid_request_error",
            code="invalid_api_key",
        )

    def _reject_too_long(self, body: dict[str, Any]) -> web.Response | None:
        """The server's answer to a request that does not fit `context_size`, or None."""
        size = self.context_size
        if size is None:
            return None
        prompt = count_prompt_tokens(body)
        completion = body.get("max_completion_tokens") or body.get("max_tokens") or 0
        completion = completion if isinstance(completion, int) else 0
        style = self.context_style
        if style == "llamacpp":
            fits = prompt < size  # llama-server checks the prompt alone
        elif style in ("ollama", "lmstudio"):
            fits = prompt <= size
        else:
            fits = prompt + completion <= size
        if fits:
            return None
        self.context_rejections += 1
        return web.json_response(context_error_body(style, size, prompt, completion), status=400)

    def _reject_unsupported(self, body: dict[str, Any], fault: Fault | None) -> web.Response | None:
        kind = fault.kind if fault is not None else None
        if "stream_options" in body and (
            not self.supports_stream_options or kind == "reject_stream_options"
        ):
            return _error_response(
                400,
                "Unrecognized request argument supplied: stream_options",
                "openai",
                kind="invalid_request_error",
                param="stream_options",
            )
        if "max_tokens" in body and (not self.supports_max_tokens or kind == "reject_max_tokens"):
            return _error_response(
                400,
                "Unsupported parameter: 'max_tokens' is not supported with this model. "
                "Use 'max_completion_tokens' instead.",
                "openai",
                kind="invalid_request_error",
                param="max_tokens",
                code="unsupported_parameter",
            )
        return None


# -- context sizes ---------------------------------------------------------------------


def count_prompt_tokens(body: Mapping[str, Any]) -> int:
    """The fake's count of a request's prompt: ceil(chars / 4) per content, 4 per message
    (5 with a name), 3 for the reply."""
    total = 3
    for message in body.get("messages") or []:
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        text = content if isinstance(content, str) else json.dumps(content or "")
        total += 4 + math.ceil(len(text) / 4) + (1 if message.get("name") else 0)
    return total


def context_error_body(style: str, size: int, prompt: int, completion: int) -> dict[str, Any]:
    """The exact error body each server sends for a request longer than its context."""
    requested = prompt + completion
    if style == "openai":
        if completion:
            message = (
                f"This model's maximum context length is {size} tokens. However, you requested "
                f"{requested} tokens ({prompt} in the messages, {completion} in the completion). "
                "Please reduce the length of the messages or completion."
            )
        else:
            message = (
                f"This model's maximum context length is {size} tokens. However, your messages "
                f"resulted in {prompt} tokens. Please reduce the length of the messages."
            )
        return {
            "error": {
                "message": message,
                "type": "invalid_request_error",
                "param": "messages",
                "code": "context_length_exceeded",
            }
        }
    if style == "vllm":
        return {
            "object": "error",
            "message": (
                f"This model's maximum context length is {size} tokens. However, you requested "
                f"{requested} tokens ({prompt} in the messages, {completion} in the completion). "
                "Please reduce the length of the messages or completion."
            ),
            "type": "BadRequestError",
            "param": None,
            "code": 400,
        }
    if style == "llamacpp":
        return {
            "error": {
                "code": 400,
                "message": (
                    f"request ({prompt} tokens) exceeds the available context size ({size} tokens)"
                ),
                "type": "exceed_context_size_error",
                "n_prompt_tokens": prompt,
                "n_ctx": size,
            }
        }
    if style == "openrouter":
        return {
            "error": {
                "message": (
                    f"This endpoint's maximum context length is {size} tokens. However, you "
                    f"requested about {requested} tokens ({prompt} of text input, {completion} "
                    "in the output). Please reduce the length of either one, or use the "
                    '"middle-out" transform to compress your prompt automatically.'
                ),
                "code": 400,
                "metadata": {"provider_name": None},
            }
        }
    if style == "groq":
        return {
            "error": {
                "message": "Please reduce the length of the messages or completion.",
                "type": "invalid_request_error",
                "param": "messages",
                "code": "context_length_exceeded",
            }
        }
    if style == "ollama":
        return {
            "error": {
                "message": "the input length exceeds the context length",
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            }
        }
    return {  # lmstudio
        "error": (
            "The number of tokens to keep from the initial prompt is greater than the context "
            f"length (n_keep: {prompt}>= n_ctx: {size}). Try to load the model with a larger "
            "context length, or provide a shorter input."
        )
    }


# -- answers -------------------------------------------------------------------------


def _last_user_text(body: Mapping[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def _choice_count(body: Mapping[str, Any], reply: Reply) -> int:
    if reply.texts is not None:
        return len(reply.texts)
    if reply.n is not None:
        return reply.n
    n = body.get("n")
    return n if isinstance(n, int) and n > 0 else 1


def _texts(body: Mapping[str, Any], reply: Reply) -> list[str]:
    count = _choice_count(body, reply)
    if reply.texts is not None:
        return list(reply.texts)
    if reply.chunks is not None:
        return ["".join(reply.chunks)] * count
    if reply.text is not None:
        return [reply.text] * count
    said = _last_user_text(body)
    return [f"echo: {said}" if i == 0 else f"echo[{i}]: {said}" for i in range(count)]


def _pieces(text: str, reply: Reply, choice: int) -> list[str]:
    if reply.chunks is not None and choice == 0:
        pieces = list(reply.chunks)
    else:
        pieces = re.findall(r"\s*\S+|\s+$", text) or ([text] if text else [])
    if reply.has("think_tags"):
        # tags deliberately cut across chunk boundaries
        pieces = ["<th", "ink>", REASONING[:20], REASONING[20:], "</thi", "nk>\n", "\n", *pieces]
    return pieces


def _usage(body: Mapping[str, Any], reply: Reply, completion_tokens: int) -> dict[str, int]:
    if reply.has("context_usage"):
        prompt = count_prompt_tokens(body)  # the count the context size is enforced with
    else:
        prompt = sum(
            len(str(message.get("content", "")).split())
            for message in body.get("messages") or []
            if isinstance(message, dict)
        )
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt + completion_tokens,
    }


def _error_body(
    status: int,
    message: str,
    style: str,
    kind: str | None = None,
    code: str | int | None = None,
    param: str | None = None,
) -> dict[str, Any]:
    if style == "vllm":
        return {
            "object": "error",
            "message": message,
            "type": kind or "BadRequestError",
            "param": param,
            "code": code if code is not None else status,
        }
    return {
        "error": {"message": message, "type": kind or "server_error", "param": param, "code": code}
    }


def _error_response(
    status: int,
    message: str,
    style: str,
    kind: str | None = None,
    code: str | int | None = None,
    param: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    if style == "text":
        return web.Response(status=status, text=message, headers=headers)
    return web.json_response(
        _error_body(status, message, style, kind, code, param), status=status, headers=headers
    )


def _status_fault(fault: Fault) -> web.Response:
    headers: dict[str, str] = {}
    if fault.retry_after is not None:
        headers["Retry-After"] = str(fault.retry_after)
    if fault.retry_after_ms is not None:
        headers["retry-after-ms"] = str(fault.retry_after_ms)
    status = fault.status_code
    default = "Rate limit reached for requests" if status == 429 else f"fake failure {status}"
    kind = "rate_limit_exceeded" if status == 429 else None
    return _error_response(
        status, fault.message or default, fault.style, kind=kind, headers=headers
    )


def _whole_answer(body: Mapping[str, Any], reply: Reply, fault: Fault | None) -> web.Response:
    if fault is not None and fault.kind == "error_chunk":
        return web.json_response(
            _error_body(500, fault.message or "error", fault.style, code=fault.code)
        )
    texts = _texts(body, reply)
    reason = None if fault is not None and fault.kind == "no_finish_reason" else reply.finish_reason
    choices = []
    for index, text in enumerate(texts):
        content = "".join(_pieces(text, reply, index)) if reply.has("think_tags") else text
        message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
        if reply.refusal is not None:
            message.update(content=None, refusal=reply.refusal)
        if reply.has("reasoning"):
            message["reasoning_content"] = reply.reasoning
        choices.append(
            {"index": index, "message": message, "logprobs": None, "finish_reason": reason}
        )
    usage = _usage(body, reply, sum(len(_pieces(text, reply, i)) for i, text in enumerate(texts)))
    document: dict[str, Any] = {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": CREATED,
        "model": reply.model or body.get("model") or DEFAULT_MODEL,
        "choices": choices,
    }
    if reply.has("groq_usage"):
        document["x_groq"] = {"id": "req_fake", "usage": usage}
    else:
        document["usage"] = usage
    return web.json_response(document)


class _StreamWriter:
    """Writes one streamed answer as SSE, applying the reply's quirks and the fault."""

    def __init__(
        self,
        request: web.Request,
        body: Mapping[str, Any],
        reply: Reply,
        fault: Fault | None,
        record: RecordedRequest,
    ) -> None:
        self._record = record
        self._request = request
        self._body = body
        self._reply = reply
        self._fault = fault
        self._model = reply.model or body.get("model") or DEFAULT_MODEL
        self._response = web.StreamResponse(
            status=200,
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
            },
        )
        self._random = random.Random(reply.split_seed)
        self._carry = b""
        self._events_written = 0
        self._content_written = 0

    async def run(self) -> web.StreamResponse:
        reply, fault = self._reply, self._fault
        self._response.enable_chunked_encoding()
        await self._response.prepare(self._request)
        if reply.has("keepalive_comments"):
            await self._write_raw(": OPENROUTER PROCESSING\n\n")
        await self._wait(reply.delay_first)
        texts = _texts(self._body, reply)
        pieces = [_pieces(text, reply, index) for index, text in enumerate(texts)]

        if reply.has("azure_first_chunk"):
            await self._write_json(
                {
                    "id": "",
                    "object": "",
                    "created": 0,
                    "model": "",
                    "choices": [],
                    "prompt_filter_results": [
                        {"prompt_index": 0, "content_filter_results": _filter_results()}
                    ],
                }
            )
        if not reply.has("no_role_chunk"):
            for index in range(len(texts)):
                await self._write_choice(index, {"role": "assistant", "content": ""})
        if reply.has("reasoning"):
            for word in re.findall(r"\S+\s*", reply.reasoning):
                await self._write_choice(0, {"reasoning_content": word, "content": None})
        if reply.refusal is not None:
            for word in re.findall(r"\S+\s*", reply.refusal):
                await self._write_choice(0, {"refusal": word, "content": None})

        for step in range(max((len(p) for p in pieces), default=0)):
            for index, choice_pieces in enumerate(pieces):
                if step >= len(choice_pieces):
                    continue
                if await self._fault_before_content():
                    return self._response
                if self._content_written:
                    await self._wait(reply.delay_between)
                await self._write_choice(index, {"content": choice_pieces[step]})
                self._content_written += 1
                self._record.content_chunks = self._content_written
        await self._flush_carry()
        self._record.last_token_at = time.time()
        if await self._fault_before_content():
            return self._response

        if reply.has("azure_first_chunk"):
            await self._write_json(
                self._chunk([{"index": 0, "finish_reason": None, "content_filter_results": {}}])
            )
        usage = _usage(self._body, reply, sum(len(p) for p in pieces))
        send_finish = reply.finish_reason is not None and not (
            fault is not None and fault.kind == "no_finish_reason"
        )
        if send_finish:
            for index in range(len(texts)):
                chunk = self._chunk(
                    [
                        {
                            "index": index,
                            "delta": {},
                            "logprobs": None,
                            "finish_reason": reply.finish_reason,
                        }
                    ]
                )
                if reply.has("groq_usage") and index == len(texts) - 1:
                    chunk["x_groq"] = {"id": "req_fake", "usage": usage}
                await self._write_json(chunk)
        if self._usage_requested():
            await self._write_json(self._chunk([], usage=usage))
        if not reply.has("no_done"):
            await self._write_raw("data: [DONE]\n\n")
        await self._flush_carry()
        await self._response.write_eof()
        return self._response

    async def _fault_before_content(self) -> bool:
        """Apply a mid-stream fault once its chunk count is reached; True ends the stream."""
        fault = self._fault
        if fault is None or self._content_written != fault.after:
            return False
        if fault.kind == "drop":
            await self._flush_carry()
            transport = self._request.transport
            if transport is not None:
                transport.abort()  # no terminating chunk: the client sees a broken body
            raise asyncio.CancelledError  # what aiohttp itself raises for a lost connection
        if fault.kind == "error_chunk":
            payload = _error_body(500, fault.message or "error", fault.style, code=fault.code)
            await self._write_json(payload)
            await self._flush_carry()
            await self._response.write_eof()
            return True
        if fault.kind == "stall":
            self._fault = None  # once
            await self._wait(fault.seconds)
        return False

    def _usage_requested(self) -> bool:
        if self._reply.has("no_usage"):
            return False
        options = self._body.get("stream_options")
        asked = isinstance(options, dict) and bool(options.get("include_usage"))
        return asked or self._reply.has("usage")

    def _chunk(self, choices: list[dict[str, Any]], usage: Any = None) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": self._model,
            "system_fingerprint": "fp_fake",
            "choices": choices,
        }
        if self._usage_requested():
            chunk["usage"] = usage
        return chunk

    async def _write_choice(self, index: int, delta: dict[str, Any]) -> None:
        choice: dict[str, Any] = {
            "index": index,
            "delta": delta,
            "logprobs": None,
            "finish_reason": None,
        }
        if self._reply.has("azure_first_chunk"):
            choice["content_filter_results"] = _filter_results()
        await self._write_json(self._chunk([choice]))

    async def _write_json(self, payload: Mapping[str, Any]) -> None:
        if self._reply.has("multiline_data"):
            lines = json.dumps(payload, indent=1, ensure_ascii=False).split("\n")
        else:
            lines = [json.dumps(payload, ensure_ascii=False)]
        await self._write_raw("".join(f"data: {line}\n" for line in lines) + "\n")

    async def _write_raw(self, event: str) -> None:
        if self._events_written and self._reply.has("blank_lines"):
            event = "\n\n" + event
        self._events_written += 1
        if self._reply.has("crlf"):
            event = event.replace("\n", "\r\n")
        data = event.encode()
        if not self._reply.has("split_bytes"):
            await self._response.write(data)
            return
        data = self._carry + data
        inside = set(_cuts_inside_characters(event, len(self._carry)))
        cuts = sorted(inside | self._random_cuts(len(data)))
        ends = [*cuts, len(data)]
        pieces = [data[start:end] for start, end in zip([0, *cuts], ends, strict=True)]
        # carry the tail into the next event now and then, so pieces span event boundaries
        if len(pieces) > 1 and self._random.random() < 0.5:
            self._carry = pieces.pop()
        else:
            self._carry = b""
        for piece, end in zip(pieces, ends, strict=False):
            await self._response.write(piece)
            # a real pause makes the client read the piece on its own, mid-character included
            await asyncio.sleep(0.001 if end in inside or self._random.random() < 0.25 else 0)

    def _random_cuts(self, length: int) -> set[int]:
        cuts: set[int] = set()
        position = 0
        while True:
            position += self._random.randint(1, 32)
            if position >= length:
                return cuts
            cuts.add(position)

    async def _flush_carry(self) -> None:
        if self._carry:
            await self._response.write(self._carry)
            self._carry = b""

    async def _wait(self, seconds: float) -> None:
        if seconds <= 0:
            return
        await self._flush_carry()
        if not self._reply.has("keepalive_comments"):
            await asyncio.sleep(seconds)
            return
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while (left := end - loop.time()) > 0:
            await asyncio.sleep(min(self._reply.keepalive_interval, left))
            if end - loop.time() > 0:
                await self._write_raw(": keep-alive\n\n")
                await self._flush_carry()


def _cuts_inside_characters(text: str, offset: int) -> list[int]:
    """Byte offsets that fall inside each multi-byte UTF-8 character of `text`."""
    cuts, position = [], offset
    for char in text:
        size = len(char.encode())
        if size > 1:
            cuts.append(position + 1)
        position += size
    return cuts


def _filter_results() -> dict[str, Any]:
    safe = {"filtered": False, "severity": "safe"}
    return {"hate": safe, "self_harm": safe, "sexual": safe, "violence": safe}


async def _serve_forever(host: str, port: int, require_key: str | None) -> None:
    async with FakeOpenAI(host=host, port=port, require_key=require_key) as server:
        print(f"fake OpenAI server at {server.base_url} (Ctrl-C to stop)", flush=True)
        await asyncio.Event().wait()


async def _serve_paced(host: str, port: int, require_key: str | None, delay_between: float) -> None:
    """Like `_serve_forever`, but every default answer waits `delay_between` between chunks."""
    reply = Reply(delay_between=delay_between)
    async with FakeOpenAI(host=host, port=port, require_key=require_key) as server:
        print(f"fake OpenAI server at {server.base_url} (Ctrl-C to stop)", flush=True)
        while True:  # keep the script topped up: one step is used per chat request
            if server.pending_steps < 1000:
                server.script(*[reply] * 1000)
            await asyncio.sleep(0.05)


def main(argv: Sequence[str] | None = None) -> None:
    """Serve the default echo behaviour until interrupted."""
    parser = argparse.ArgumentParser(description="Fake OpenAI-compatible server for demos.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--require-key", default=None, help="answer 401 unless this key is sent")
    parser.add_argument(
        "--delay-between",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait this long before each content chunk after the first (a paced model)",
    )
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        if args.delay_between > 0:
            asyncio.run(_serve_paced(args.host, args.port, args.require_key, args.delay_between))
            return
        asyncio.run(_serve_forever(args.host, args.port, args.require_key))


if __name__ == "__main__":
    main()
