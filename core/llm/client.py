"""Chat Completions over HTTP: streaming, retries, timeouts, adaptive fallbacks, error mapping."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Iterator
from contextlib import aclosing
from typing import Any, NoReturn, TypeVar, cast

import httpx

from core.clock import Clock, SystemClock
from core.errors import (
    ConfigError,
    LLMError,
    LLMRateLimited,
    LLMRejected,
    LLMStreamError,
    LLMTimeout,
)
from core.llm.chunks import Completion, StreamDecoder, decode_completion
from core.llm.context_errors import context_error
from core.llm.discovery import context_window_of, model_ids, props_context_window, server_root
from core.llm.failures import (
    error_for_status,
    error_for_transport,
    message_from_body,
    retry_after_seconds,
)
from core.llm.request import ChatRequest
from core.llm.sse import EventStreamParser
from core.llm.types import ChoiceFinished, ContentDelta, LLMEndpoint, StreamEvent

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
_REDACTED = "<redacted>"
# Reading the end of a body that is not needed any more, to keep its connection: at most
_DRAIN_SECONDS = 0.25
_DRAIN_BYTES = 64 * 1024


class ChatCompletionsClient:
    """Talks to one OpenAI-compatible endpoint; the only code that knows the wire format.

    `http` is injected (tests point it at a local fake); `clock` is used for the waits
    between retries, `rng` for their jitter. Timeouts run on the event loop's clock.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        endpoint: LLMEndpoint,
        clock: Clock | None = None,
        *,
        rng: random.Random | None = None,
    ) -> None:
        if endpoint.auth_style == "api-key" and not endpoint.api_key:
            raise ConfigError("api_key", "auth_style 'api-key' needs an API key")
        self._http = http
        self._endpoint = endpoint
        self._clock = clock or SystemClock()
        self._rng = rng or random.Random()
        self._sends_stream_options = endpoint.include_usage
        self._uses_max_completion_tokens = False

    @property
    def endpoint(self) -> LLMEndpoint:
        """The endpoint this client talks to."""
        return self._endpoint

    @property
    def sends_stream_options(self) -> bool:
        """Whether streaming requests carry `stream_options` (off after the server refused it)."""
        return self._sends_stream_options

    @property
    def uses_max_completion_tokens(self) -> bool:
        """Whether `max_tokens` is sent as `max_completion_tokens` (after the server asked)."""
        return self._uses_max_completion_tokens

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        """Stream the answer as events; retries only until the first `ContentDelta`.

        Ends normally only when every choice got a finish reason; otherwise raises
        `LLMStreamError` after yielding everything received. A failed attempt that showed no
        text may have yielded a `UsageReport` or `ChoiceFinished` before the retry; consumers
        should keep the latest of each.
        """
        if not request.stream:
            raise ValueError("stream() needs a request with stream=True; use complete()")
        deadline = asyncio.get_running_loop().time() + self._endpoint.total_timeout
        attempt = 0
        while True:
            payload = self._payload(request)
            yielded = False
            try:
                async with aclosing(self._stream_once(payload, deadline)) as events:
                    async for event in events:
                        yielded = yielded or isinstance(event, ContentDelta)
                        yield event
                return
            except _Adapted:
                continue
            except (LLMError, _StatusFailure) as exc:
                error, hint = _unwrap(exc)
                delay = None if yielded else self._retry_delay(attempt, error, hint, deadline)
                if delay is None:
                    _reraise(exc)
                attempt += 1
                await self._wait_before_retry(error, attempt, delay)

    async def complete(self, request: ChatRequest) -> Completion:
        """Ask for the whole answer at once (`stream=False`), with the same retries."""
        if request.stream:
            request = dataclasses.replace(request, stream=False)
        deadline = asyncio.get_running_loop().time() + self._endpoint.total_timeout
        attempt = 0
        while True:
            payload = self._payload(request)
            try:
                return await self._complete_once(payload, deadline)
            except _Adapted:
                continue
            except (LLMError, _StatusFailure) as exc:
                error, hint = _unwrap(exc)
                delay = self._retry_delay(attempt, error, hint, deadline)
                if delay is None:
                    _reraise(exc)
                attempt += 1
                await self._wait_before_retry(error, attempt, delay)

    async def list_models(self) -> list[str]:
        """Model ids from GET /models; `LLMRejected` if the server has no such listing."""
        return model_ids(await self._models_document())

    async def published_context_window(self, model: str) -> int | None:
        """The context size the server publishes for `model`, or None when it publishes none.

        From `GET /models` (`max_model_len` from vLLM, `context_length` from OpenRouter), else
        llama.cpp's `GET /props` (`n_ctx` per slot) at the server's root. Any failure (no such
        endpoint, server down, no answer within 15 s) is logged and counts as "not published".
        """
        timeout = min(self._endpoint.connect_timeout + self._endpoint.first_token_timeout, 15.0)
        try:
            found = context_window_of(await self._models_document(timeout), model)
        except LLMError as exc:
            logger.info("no model listing at %s: %s", self._url("models"), exc)
            found = None
        if found is not None:
            return found
        url = f"{server_root(self._endpoint.base_url)}/props"
        try:
            return props_context_window(await self._get_json(url, timeout))
        except LLMError as exc:
            logger.info("no llama.cpp /props at %s: %s", url, exc)
            return None

    async def _models_document(self, seconds: float | None = None) -> Any:
        return await self._get_json(self._url("models"), seconds)

    async def _get_json(self, url: str, seconds: float | None = None) -> Any:
        """GET `url` and decode its JSON body (None when it is not JSON); errors -> LLMError."""
        timeout = seconds or self._endpoint.connect_timeout + self._endpoint.first_token_timeout
        try:
            async with asyncio.timeout(timeout):
                response = await self._http.get(
                    url,
                    params=self._query(),
                    headers=self._headers(streaming=False),
                    timeout=self._http_timeout(),
                )
        except TimeoutError:
            raise LLMTimeout(f"GET {url} got no answer within {timeout:g}s") from None
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, url) from exc
        if not response.is_success:
            message = self._redact(message_from_body(response.content, response.reason_phrase))
            raise error_for_status(
                response.status_code, message, retry_after_seconds(response.headers)
            )
        try:
            return response.json()
        except ValueError:
            return None

    # -- one attempt ---------------------------------------------------------------------

    async def _stream_once(
        self, payload: dict[str, Any], deadline: float
    ) -> AsyncGenerator[StreamEvent, None]:
        watch = _StreamWatch(self._endpoint, deadline)
        url, http_request = self._chat_request(payload, streaming=True)
        response = await self._guard(watch, url, self._http.send(http_request, stream=True))
        try:
            await self._guard(watch, url, self._raise_for_status(response, payload))
            media_type = response.headers.get("content-type", "").partition(";")[0].strip()
            if media_type.lower() == "application/json":
                body = await self._guard(watch, url, response.aread())
                for event in _events_from_completion(decode_completion(body, self._redact)):
                    yield event
                return
            decoder = StreamDecoder(self._redact)
            parser = EventStreamParser()
            async with aclosing(_body_chunks(response, watch)) as chunks:
                # True while one data event is handled: if the stream ends there ([DONE], an
                # error payload, the consumer stopping), the HTTP body is intact and is read to
                # its end below, so that its connection goes back to the pool.
                reusable = False
                try:
                    async for chunk in chunks:
                        for data in parser.feed(chunk):
                            data = data.strip()
                            if not data:
                                continue
                            watch.data_arrived()
                            reusable = True
                            if data == "[DONE]":
                                break
                            for event in decoder.feed(data):
                                yield event
                            reusable = False
                        if reusable:
                            break  # [DONE]
                except httpx.HTTPError as exc:
                    if isinstance(exc, httpx.TimeoutException):
                        raise LLMTimeout(f"reading the stream from {url} timed out") from exc
                    raise LLMStreamError(
                        self._redact(f"the stream from {url} broke: {type(exc).__name__}: {exc}")
                    ) from exc
                finally:
                    watch.stop()
                    if reusable:
                        await _drain(chunks, watch)
            for event in decoder.finish():
                yield event
            if not decoder.saw_choice:
                raise LLMStreamError("the stream ended without any answer (truncated)")
            if decoder.unfinished_choices:
                raise LLMStreamError(
                    "the stream was truncated: no finish reason for choice(s) "
                    + ", ".join(str(index) for index in decoder.unfinished_choices)
                )
        finally:
            await response.aclose()

    async def _complete_once(self, payload: dict[str, Any], deadline: float) -> Completion:
        url, http_request = self._chat_request(payload, streaming=False)
        watch = _StreamWatch(self._endpoint, deadline, whole_answer=True)
        response = await self._guard(watch, url, self._http.send(http_request, stream=True))
        try:
            await self._guard(watch, url, self._raise_for_status(response, payload))
            body = await self._guard(watch, url, response.aread())
        finally:
            await response.aclose()
        return decode_completion(body, self._redact)

    def _chat_request(
        self, payload: dict[str, Any], *, streaming: bool
    ) -> tuple[str, httpx.Request]:
        """The POST to chat/completions for `payload`, and its URL; logs the send."""
        url = self._url("chat/completions")
        http_request = self._http.build_request(
            "POST",
            url,
            params=self._query(),
            json=payload,
            headers=self._headers(streaming=streaming),
            timeout=self._http_timeout(),
        )
        mode = "streaming" if streaming else "not streaming"
        logger.debug("POST %s (model %s, %s)", url, payload.get("model"), mode)
        return url, http_request

    async def _guard(self, watch: _StreamWatch, url: str, step: Awaitable[_T]) -> _T:
        """Await one network step under the current deadline, translating transport errors."""
        try:
            async with asyncio.timeout_at(watch.read_deadline()):
                return await step
        except TimeoutError:
            raise LLMTimeout(watch.timeout_message()) from None
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, url) from exc

    async def _raise_for_status(self, response: httpx.Response, payload: dict[str, Any]) -> None:
        if response.is_success:
            return
        body = await response.aread()
        status = response.status_code
        if status in (400, 422):
            self._adapt_to_refusal(body.decode("utf-8", errors="replace").lower(), payload)
        message = self._redact(message_from_body(body, response.reason_phrase))
        retry_after = retry_after_seconds(response.headers)
        error = context_error(status, body, message) or error_for_status(
            status, message, retry_after
        )
        raise _StatusFailure(error, retry_after)

    def _adapt_to_refusal(self, body_text: str, payload: dict[str, Any]) -> None:
        """Switch off what a 400 said the server does not support, then ask for a resend."""
        if "stream_options" in payload and (
            "stream_options" in body_text or "include_usage" in body_text
        ):
            self._sends_stream_options = False
            logger.info(
                "%s refused stream_options; streaming without usage reports from now on",
                self._endpoint.base_url,
            )
            raise _Adapted
        if (
            "max_tokens" in payload
            and "max_tokens" in body_text
            and (
                "max_completion_tokens" in body_text
                or "not supported" in body_text
                or "unsupported" in body_text
            )
        ):
            self._uses_max_completion_tokens = True
            logger.info(
                "%s refused max_tokens; sending max_completion_tokens from now on",
                self._endpoint.base_url,
            )
            raise _Adapted

    # -- retries -----------------------------------------------------------------------

    def _retry_delay(
        self, attempt: int, error: LLMError, hint: float | None, deadline: float
    ) -> float | None:
        """Seconds to wait before the next attempt, or `None` to give up."""
        if attempt >= self._endpoint.max_retries or isinstance(error, LLMRejected):
            return None
        ceiling = self._endpoint.retry_max_delay
        if hint is None and isinstance(error, LLMRateLimited):
            hint = error.retry_after
        if hint is not None:
            if hint > ceiling:
                return None  # the server asks for a longer wait than we keep a user waiting
            delay = hint
        else:
            backoff = min(self._endpoint.retry_base_delay * 2**attempt, ceiling)
            delay = self._rng.uniform(backoff / 2, backoff)
        if asyncio.get_running_loop().time() + delay >= deadline:
            return None
        return delay

    async def _wait_before_retry(self, error: LLMError, attempt: int, delay: float) -> None:
        logger.warning(
            "LLM request failed (%s: %s); retry %d of %d in %.2fs",
            type(error).__name__,
            error,
            attempt,
            self._endpoint.max_retries,
            delay,
        )
        await self._clock.sleep(delay)

    # -- wire details ------------------------------------------------------------------

    def _payload(self, request: ChatRequest) -> dict[str, Any]:
        return request.to_payload(
            include_usage=self._sends_stream_options,
            use_max_completion_tokens=self._uses_max_completion_tokens,
        )

    def _url(self, path: str) -> str:
        return f"{self._endpoint.base_url.rstrip('/')}/{path}"

    def _query(self) -> dict[str, str]:
        version = self._endpoint.api_version
        return {"api-version": version} if version else {}

    def _headers(self, streaming: bool) -> dict[str, str]:
        headers = {"Accept": "text/event-stream" if streaming else "application/json"}
        key, style = self._endpoint.api_key, self._endpoint.auth_style
        if key and style == "bearer":
            headers["Authorization"] = f"Bearer {key}"
        elif key and style == "api-key":
            headers["api-key"] = key
        return headers

    def _http_timeout(self) -> httpx.Timeout:
        """Connect limits from the endpoint; reads are bounded by the asyncio deadlines."""
        connect = self._endpoint.connect_timeout
        return httpx.Timeout(connect=connect, read=None, write=connect, pool=connect)

    def _transport_error(self, exc: httpx.HTTPError, url: str) -> LLMError:
        error = error_for_transport(exc, url)
        return type(error)(self._redact(str(error)))

    def _redact(self, text: str) -> str:
        key = self._endpoint.api_key
        return text.replace(key, _REDACTED) if key else text


class _StreamWatch:
    """The deadlines of one attempt: first data event, gap between bytes, whole answer.

    While the body streams, one watchdog timer per attempt enforces them: it is armed when a
    read starts, and when it fires during a read it either finds that bytes arrived since (and
    sets itself for the new deadline) or cancels the reading task, which then raises
    `LLMTimeout`. This is what `asyncio.timeout_at()` around every read did, at a fraction of
    the cost: no timer is created or cancelled per chunk.
    """

    def __init__(self, endpoint: LLMEndpoint, deadline: float, whole_answer: bool = False) -> None:
        self._loop = asyncio.get_running_loop()
        self._endpoint = endpoint
        self._total_deadline = deadline
        now = self._loop.time()
        self._first_deadline = deadline if whole_answer else now + endpoint.first_token_timeout
        self._last_bytes = now
        self._data_seen = False
        self._limit = "total"
        # the watchdog of the body reads
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when = 0.0
        self._reader: asyncio.Task[Any] | None = None
        self._reading = False
        self._stopped = False
        self._expired: str | None = None  # the timeout message once the watchdog cancelled
        self._cancelling = 0  # the reader's cancellation requests before the watchdog's

    @property
    def total_deadline(self) -> float:
        """When the whole answer must be done, on the event loop's clock."""
        return self._total_deadline

    def read_deadline(self) -> float:
        """When the read in progress must have produced something."""
        if self._data_seen:
            candidate, limit = self._last_bytes + self._endpoint.chunk_timeout, "chunk"
        else:
            candidate, limit = self._first_deadline, "first"
        if candidate < self._total_deadline:
            self._limit = limit
            return candidate
        self._limit = "total"
        return self._total_deadline

    def bytes_arrived(self) -> None:
        """Any bytes (comments and keep-alives included) reset the gap timer."""
        self._last_bytes = self._loop.time()

    def data_arrived(self) -> None:
        """The first `data:` event ends the wait for the first token."""
        if not self._data_seen:
            self._data_seen = True
            self._disarm()  # the gap deadline may come before the first-token one

    def timeout_message(self) -> str:
        endpoint = self._endpoint
        if self._limit == "first":
            return f"no answer within the first-token timeout of {endpoint.first_token_timeout:g}s"
        if self._limit == "chunk":
            return f"the stream stalled for over the chunk timeout of {endpoint.chunk_timeout:g}s"
        return f"the answer took longer than the total timeout of {endpoint.total_timeout:g}s"

    # -- the watchdog of the body reads --------------------------------------------------

    def read_started(self) -> None:
        """The current task now waits for body bytes: it is cancelled if they are late."""
        self._reader = asyncio.current_task()
        self._reading = True
        if self._timer is None and not self._stopped:
            self._arm()

    def read_ended(self) -> None:
        self._reading = False

    def expired(self) -> str | None:
        """After a `CancelledError` in a read: the timeout message if the watchdog caused it.

        `None` means the cancellation came from elsewhere (too) and must propagate.
        """
        message, self._expired = self._expired, None
        reader = self._reader
        if message is None or reader is None:
            return None
        if reader.uncancel() > self._cancelling:
            return None
        return message

    def stop(self) -> None:
        """No more deadlines for this body (it ended, failed or is being drained)."""
        self._stopped = True
        self._disarm()

    def _arm(self) -> None:
        when = self.read_deadline()
        self._timer_when = when
        self._timer = self._loop.call_at(when, self._fire)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self) -> None:
        self._timer = None
        if not self._reading or self._stopped:
            return  # set again when the next read starts
        when = self.read_deadline()
        if when > self._timer_when:  # bytes arrived since the timer was set
            self._timer_when = when
            self._timer = self._loop.call_at(when, self._fire)
            return
        reader = self._reader
        if reader is None or reader.done():
            return
        self._expired = self.timeout_message()
        self._cancelling = reader.cancelling()
        reader.cancel()


async def _timed_raw(response: httpx.Response, watch: _StreamWatch) -> AsyncGenerator[bytes, None]:
    """The raw body of a streamed response, failing with `LLMTimeout` when a read is late."""
    raw = cast(AsyncGenerator[bytes, None], response.aiter_raw())
    async with aclosing(raw) as chunks:
        while True:
            watch.read_started()
            try:
                chunk = await anext(chunks)
            except StopAsyncIteration:
                return
            except asyncio.CancelledError:
                message = watch.expired()
                if message is None:
                    raise
                raise LLMTimeout(message) from None
            finally:
                watch.read_ended()
            watch.bytes_arrived()
            yield chunk


def _body_chunks(response: httpx.Response, watch: _StreamWatch) -> AsyncGenerator[bytes, None]:
    """The body's bytes under the watch's deadlines, decompressed if the server compressed it."""
    if "content-encoding" not in response.headers:
        return _timed_raw(response, watch)
    decoded = httpx.Response(  # httpx knows the encodings; the deadlines stay on raw bytes
        response.status_code,
        headers=response.headers,
        stream=_RawStream(response, watch),
        request=response.request,
    )
    return cast(AsyncGenerator[bytes, None], decoded.aiter_bytes())


class _RawStream(httpx.AsyncByteStream):
    """The timed raw body of `response`, as a stream for a decompressing `httpx.Response`."""

    def __init__(self, response: httpx.Response, watch: _StreamWatch) -> None:
        self._response = response
        self._watch = watch

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async with aclosing(_timed_raw(self._response, self._watch)) as chunks:
            async for chunk in chunks:
                yield chunk

    async def aclose(self) -> None:
        await self._response.aclose()


async def _drain(chunks: AsyncIterator[bytes], watch: _StreamWatch) -> None:
    """Read what is left of a body that needs no more parsing, so its connection can be reused.

    httpcore puts a connection back into the pool only if the response was read to its end;
    closing it earlier closes the connection, and the next request pays a new TCP (and TLS)
    handshake. At most `_DRAIN_BYTES` and `_DRAIN_SECONDS`; past that, or if the read fails,
    the caller's close drops the connection as before.
    """
    deadline = min(asyncio.get_running_loop().time() + _DRAIN_SECONDS, watch.total_deadline)
    left = _DRAIN_BYTES
    try:
        async with asyncio.timeout_at(deadline):
            async for chunk in chunks:
                left -= len(chunk)
                if left < 0:
                    return
    except (TimeoutError, LLMError, httpx.HTTPError):
        return


class _Adapted(Exception):
    """The client switched a wire option after a 400; send the request again."""


class _StatusFailure(Exception):
    """A non-2xx answer: the error to raise and the server's Retry-After, if any."""

    def __init__(self, error: LLMError, retry_after: float | None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


def _unwrap(exc: LLMError | _StatusFailure) -> tuple[LLMError, float | None]:
    if isinstance(exc, _StatusFailure):
        return exc.error, exc.retry_after
    return exc, None


def _reraise(exc: LLMError | _StatusFailure) -> NoReturn:
    if isinstance(exc, _StatusFailure):
        raise exc.error from None
    raise exc


def _events_from_completion(completion: Completion) -> Iterator[StreamEvent]:
    """A server that ignored `stream: true` answered with one JSON body; replay it as events."""
    pairs = zip(completion.texts, completion.finish_reasons, strict=True)
    for index, (text, reason) in enumerate(pairs):
        if text:
            yield ContentDelta(index, text)
        if reason is not None:
            yield ChoiceFinished(index, reason)
    if completion.usage is not None:
        yield completion.usage
    if None in completion.finish_reasons:
        raise LLMStreamError("the answer was truncated: no finish reason")
