"""FakeOpenAI itself: real SSE over chunked HTTP, recording, scripting, auth and the demo CLI."""

from __future__ import annotations

import asyncio
import json
import socket
import sys

import httpx
import pytest

from tests.fakes.openai_server import FakeOpenAI, Fault, Reply

BODY = {"model": "m", "messages": [{"role": "user", "content": "ping pong"}], "stream": True}


async def raw_reads(http: httpx.AsyncClient, url: str, body: dict[str, object]) -> list[bytes]:
    async with http.stream("POST", url, json=body) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["transfer-encoding"] == "chunked"
        return [piece async for piece in response.aiter_raw()]


async def test_default_answer_is_real_sse_ending_with_done(
    server: FakeOpenAI, http: httpx.AsyncClient
) -> None:
    reads = await raw_reads(http, server.base_url + "/chat/completions", BODY)

    text = b"".join(reads).decode()
    events = [event for event in text.split("\n\n") if event]
    assert all(event.startswith("data: ") for event in events)
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(event.removeprefix("data: ")) for event in events[:-1]]
    contents = [c["choices"][0]["delta"].get("content") for c in chunks if c["choices"]]
    assert "".join(filter(None, contents)) == "echo: ping pong"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert len(reads) >= len(events)  # one flush per event at least


async def test_split_bytes_really_cuts_inside_utf8_characters(
    server: FakeOpenAI, http: httpx.AsyncClient
) -> None:
    server.script(Reply(text="😀 é 日本", quirks={"split_bytes"}))

    reads = await raw_reads(http, server.base_url + "/chat/completions", BODY)

    undecodable = 0
    for piece in reads:
        try:
            piece.decode()
        except UnicodeDecodeError:
            undecodable += 1
    assert undecodable >= 3
    assert "😀 é 日本" in _visible_text(b"".join(reads))


def _visible_text(raw: bytes) -> str:
    texts = []
    for event in raw.decode().split("\n\n"):
        data = event.removeprefix("data: ")
        if event.startswith("data: ") and data != "[DONE]":
            for choice in json.loads(data)["choices"]:
                texts.append(choice.get("delta", {}).get("content") or "")
    return "".join(texts)


async def test_crlf_multiline_and_keepalive_quirks_are_on_the_wire(
    server: FakeOpenAI, http: httpx.AsyncClient
) -> None:
    server.script(
        Reply(
            text="a b",
            quirks={"crlf", "multiline_data", "keepalive_comments"},
            delay_first=0.05,
            keepalive_interval=0.01,
        )
    )

    raw = b"".join(await raw_reads(http, server.base_url + "/chat/completions", BODY))

    assert b": OPENROUTER PROCESSING\r\n\r\n" in raw
    assert b": keep-alive\r\n\r\n" in raw
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert b'data: {\r\ndata:  "id"' in raw


async def test_requests_are_recorded_with_headers_and_body(
    server: FakeOpenAI, http: httpx.AsyncClient
) -> None:
    await http.post(
        server.base_url + "/chat/completions",
        json={**BODY, "stream": False},
        headers={"X-Trace": "abc"},
    )

    (request,) = server.requests
    assert request.method == "POST"
    assert request.path == "/v1/chat/completions"
    assert request.headers["x-trace"] == "abc"
    assert request.json["messages"] == BODY["messages"]
    assert server.chat_requests == [request]


async def test_non_streaming_default_answer(server: FakeOpenAI, http: httpx.AsyncClient) -> None:
    response = await http.post(
        server.base_url + "/chat/completions", json={**BODY, "stream": False}
    )

    document = response.json()
    assert document["object"] == "chat.completion"
    assert document["choices"][0]["message"]["content"] == "echo: ping pong"
    assert document["usage"]["completion_tokens"] == 3


async def test_script_is_used_in_order_then_the_default_returns(
    server: FakeOpenAI, http: httpx.AsyncClient
) -> None:
    server.script(Fault.status(503), Reply(text="scripted"))
    url = server.base_url + "/chat/completions"
    body = {**BODY, "stream": False}

    first = await http.post(url, json=body)
    second = await http.post(url, json=body)
    third = await http.post(url, json=body)

    assert first.status_code == 503
    assert second.json()["choices"][0]["message"]["content"] == "scripted"
    assert third.json()["choices"][0]["message"]["content"] == "echo: ping pong"
    assert server.pending_steps == 0


async def test_rate_limit_fault_sends_retry_after_headers(
    server: FakeOpenAI, http: httpx.AsyncClient
) -> None:
    server.script(Fault.status(429, retry_after=2, retry_after_ms=1500))

    response = await http.post(server.base_url + "/chat/completions", json=BODY)

    assert response.status_code == 429
    assert response.headers["retry-after"] == "2"
    assert response.headers["retry-after-ms"] == "1500"
    assert response.json()["error"]["type"] == "rate_limit_exceeded"


async def test_require_key_answers_401_with_an_openai_error(http: httpx.AsyncClient) -> None:
    async with FakeOpenAI(require_key="sk-right-000") as fake:
        url = fake.base_url + "/chat/completions"
        wrong = await http.post(url, json=BODY, headers={"Authorization": "Bearer sk-wrong-999"})
        right = await http.post(
            url, json={**BODY, "stream": False}, headers={"Authorization": "Bearer sk-right-000"}
        )
        azure_wrong = await http.post(
            fake.azure_base_url() + "/chat/completions?api-version=1",
            json=BODY,
            headers={"Authorization": "Bearer sk-right-000"},  # Azure wants api-key
        )

    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "invalid_api_key"
    assert "sk-wrong-999" not in wrong.text
    assert right.status_code == 200
    assert azure_wrong.status_code == 401


def test_unknown_quirk_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown quirks"):
        Reply(quirks={"crfl"})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_module_entry_point_serves_the_default_answer(http: httpx.AsyncClient) -> None:
    port = _free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.fakes.openai_server",
        "--port",
        str(port),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        for _ in range(100):
            try:
                response = await http.post(url, json={**BODY, "stream": False})
                break
            except httpx.ConnectError:
                await asyncio.sleep(0.05)
        else:
            pytest.fail("the fake server did not start")
        assert response.json()["choices"][0]["message"]["content"] == "echo: ping pong"
    finally:
        process.terminate()
        await process.wait()
