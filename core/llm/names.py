"""Participant names for Chat Completions messages: sanitised display names and pseudonyms."""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import unicodedata

NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_MAX_NAME_LENGTH = 64
_PSEUDONYM_PREFIX = "u_"
_PSEUDONYM_HEX_DIGITS = 30

# Letters that NFKD does not decompose into an ASCII base letter plus accents.
_TRANSLITERATIONS = str.maketrans(
    {
        "ß": "ss",
        "ẞ": "SS",
        "æ": "ae",
        "Æ": "AE",
        "œ": "oe",
        "Œ": "OE",
        "ø": "o",
        "Ø": "O",
        "ł": "l",
        "Ł": "L",
        "đ": "d",
        "Đ": "D",
        "ð": "d",
        "Ð": "D",
        "þ": "th",
        "Þ": "Th",
        "\u0131": "i",  # dotless i
    }
)
# Cyrillic, transliterated roughly as in ISO 9 / BGN so names stay readable to the model.
_CYRILLIC_LETTERS = "абвгдеёжзийклмнопрстуфхцчшщъыьэюяіїєґ"
_CYRILLIC_LATIN = (
    "a b v g d e yo zh z i y k l m n o p r s t u f kh ts ch sh shch _ y _ e yu ya i yi ye g"
)
_CYRILLIC = dict(zip(_CYRILLIC_LETTERS, _CYRILLIC_LATIN.split(" "), strict=True))
_TRANSLITERATIONS.update(
    {ord(k): "" if v == "_" else v for k, v in _CYRILLIC.items()}
    | {ord(k.upper()): "" if v == "_" else v.capitalize() for k, v in _CYRILLIC.items()}
)
_WHITESPACE_RUN = re.compile(r"\s+")
_HAS_WORD_CHARACTER = re.compile(r"[A-Za-z0-9]")
_NOT_ALLOWED = re.compile(r"[^A-Za-z0-9_-]")


def sanitize_name(display_name: str | None) -> str | None:
    """Map a display name onto `^[A-Za-z0-9_-]{1,64}$`, or `None` if nothing usable is left.

    Accents are stripped ("Zoë" -> "Zoe"), whitespace runs become one underscore, every other
    character is dropped, and the result is cut to 64 characters.
    """
    if not display_name:
        return None
    return _sanitized(display_name)


@functools.lru_cache(maxsize=1024)
def _sanitized(display_name: str) -> str | None:
    """`sanitize_name` of a non-empty name, cached: a window asks for the same few authors."""
    text = unicodedata.normalize("NFKD", display_name.translate(_TRANSLITERATIONS))
    text = "".join(char for char in text if not unicodedata.combining(char))
    text = _WHITESPACE_RUN.sub("_", text.strip())
    text = _NOT_ALLOWED.sub("", text)[:_MAX_NAME_LENGTH]
    if not _HAS_WORD_CHARACTER.search(text):
        return None  # only separators left (a name in a script we cannot transliterate)
    return text if NAME_PATTERN.match(text) else None


def pseudonymize_user(secret: bytes, platform: str, user_id: str) -> str:
    """A stable, keyed pseudonym for a platform user that never reveals the raw id.

    HMAC-SHA256 over platform and id under `secret`, hex, shortened: `u_` + 30 hex digits.
    The result is itself a valid message `name` and `user` value.
    """
    if not secret:
        raise ValueError("pseudonymize_user needs a non-empty secret")
    message = platform.encode() + b"\x00" + user_id.encode()
    digest = hmac.new(secret, message, hashlib.sha256).hexdigest()
    return _PSEUDONYM_PREFIX + digest[:_PSEUDONYM_HEX_DIGITS]
