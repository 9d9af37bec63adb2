"""Recognise a server's "the request is longer than the context" answer, in each server's words.

What each server sends (status 400 unless said otherwise):

* OpenAI, DeepSeek, Azure: `error.code` `context_length_exceeded`, "This model's maximum
  context length is M tokens. However, your messages resulted in N tokens..." (or "...you
  requested N tokens (P in the messages, C in the completion)...").
* vLLM: `{"object": "error", "message": "This model's maximum context length is M tokens.
  However, you requested N tokens (P in the messages, C in the completion)..."}`; newer
  versions "...However, your request has N input tokens...".
* llama.cpp `llama-server`: `error.type` `exceed_context_size_error` with `n_prompt_tokens`
  and `n_ctx` ("request (N tokens) exceeds the available context size (M tokens)"); older
  builds and LM Studio: "...n_keep (N) >= n_ctx (M)", "Trying to keep the first N tokens when
  context the overflows. However, the model is loaded with context length of only M tokens".
* OpenRouter: "This endpoint's maximum context length is M tokens. However, you requested
  about N tokens (P of text input, C in the output)...".
* Groq: `code` `context_length_exceeded`, "Please reduce the length of the messages or
  completion." (no numbers); Cerebras: "...Current length is N while limit is M".
* Ollama: "the input length exceeds the context length" (no numbers).
* Anthropic-style proxies: "prompt is too long: N tokens > M maximum"; Gemini's OpenAI
  endpoint: "The input token count (N) exceeds the maximum number of tokens allowed (M)".
"""

from __future__ import annotations

import json
import re
from typing import Any

from core.errors import LLMContextTooLong

_STATUSES = frozenset({400, 413, 422})
_CODES = frozenset({"context_length_exceeded", "exceed_context_size_error", "context_too_long"})

_N = r"([0-9][0-9,_]*)"
# (pattern, group of the limit, group of the prompt tokens); 0 means "not given".
_PATTERNS: tuple[tuple[re.Pattern[str], int, int], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE | re.DOTALL), limit, prompt)
    for pattern, limit, prompt in (
        (
            rf"maximum context length is {_N} tokens.*?\(\s*{_N} (?:in the messages|of text"
            r" input|in your prompt)",
            1,
            2,
        ),
        (rf"maximum context length is {_N} tokens.*?resulted in {_N} tokens", 1, 2),
        (rf"maximum context length is {_N} tokens.*?request has {_N} input tokens", 1, 2),
        (rf"maximum context length is {_N} tokens", 1, 0),
        (rf"request \({_N} tokens\) exceeds the available context size \({_N} tokens\)", 2, 1),
        (rf"n_keep:? \(?{_N}\)?\s*>=\s*n_ctx:? \(?{_N}", 2, 1),
        (rf"keep the first {_N} tokens.*?context length of only {_N} tokens", 2, 1),
        (rf"current length is {_N} while limit is {_N}", 2, 1),
        (rf"prompt is too long: {_N} tokens > {_N} maximum", 2, 1),
        (rf"input token count \({_N}\) exceeds the maximum number of tokens allowed \({_N}", 2, 1),
        (r"exceeds the available context size", 0, 0),
        (r"input length exceeds the (?:maximum )?context length", 0, 0),
        (r"greater than the context length", 0, 0),
        (r"context length exceeded|context_length_exceeded|context window is full", 0, 0),
        (r"reduce the length of the messages", 0, 0),
    )
)


def context_error(status: int, body: bytes, message: str) -> LLMContextTooLong | None:
    """The `LLMContextTooLong` an error answer means, or None when it is about something else.

    `message` is the human part of the body as `message_from_body` gave it (for the error's
    text); the whole body is searched for the fields and wording above.
    """
    if status not in _STATUSES:
        return None
    text = body.decode("utf-8", errors="replace")
    document = _json(text)
    error = document.get("error") if isinstance(document, dict) else None
    fields = error if isinstance(error, dict) else document if isinstance(document, dict) else {}
    limit = _positive(fields.get("n_ctx"))
    prompt = _positive(fields.get("n_prompt_tokens"))
    coded = str(fields.get("code")) in _CODES or str(fields.get("type")) in _CODES
    words = _words(document) or text
    for pattern, limit_group, prompt_group in _PATTERNS:
        found = pattern.search(words)
        if found is None:
            continue
        limit = limit or (_positive(found.group(limit_group)) if limit_group else None)
        prompt = prompt or (_positive(found.group(prompt_group)) if prompt_group else None)
        coded = True
        break
    if not coded:
        return None
    return LLMContextTooLong(status, message, limit=limit, prompt_tokens=prompt)


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _words(document: Any) -> str:
    """Every string in the document, joined (messages may be nested in provider metadata)."""
    if isinstance(document, str):
        return document
    if isinstance(document, dict):
        return "\n".join(_words(value) for value in document.values())
    if isinstance(document, list):
        return "\n".join(_words(value) for value in document)
    return ""


def _positive(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        value = value.replace(",", "").replace("_", "")
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


__all__ = ["context_error"]
