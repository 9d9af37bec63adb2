"""Message names: display-name sanitising and keyed user pseudonyms."""

from __future__ import annotations

import re

import pytest

from core.llm import pseudonymize_user, sanitize_name

NAME_RULE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@pytest.mark.parametrize(
    ("display_name", "expected"),
    [
        ("alice", "alice"),
        ("Zoë Ångström", "Zoe_Angstrom"),
        ("  Jean-Luc   Picard  ", "Jean-Luc_Picard"),
        ("Łukasz Żółć", "Lukasz_Zolc"),
        ("Straße", "Strasse"),
        ("Søren Ærø", "Soren_AEro"),
        ("john.doe@example", "johndoeexample"),
        ("".join(chr(ord(char) + 0xFEE0) for char in "fullwidth"), "fullwidth"),
        ("name_with_emoji 🎉", "name_with_emoji_"),
        ("tab\tand\nnewline", "tab_and_newline"),
        ("李雷", None),
        ("🎉🎉", None),
        ("", None),
        ("   ", None),
        (None, None),
    ],
)
def test_sanitize_name(display_name: str | None, expected: str | None) -> None:
    assert sanitize_name(display_name) == expected


def test_sanitized_names_are_cut_to_64_characters() -> None:
    name = sanitize_name("é" * 100)

    assert name == "e" * 64


@pytest.mark.parametrize(
    "display_name", ["a" * 200, "Ünïcödé Nämé with spaces", "x y z", "<script>alert(1)</script>"]
)
def test_sanitized_names_always_match_the_api_rule(display_name: str) -> None:
    name = sanitize_name(display_name)

    assert name is not None
    assert NAME_RULE.match(name)


def test_pseudonym_is_stable_and_shaped_like_a_name() -> None:
    first = pseudonymize_user(b"secret", "slack", "U012ABCDEF")
    second = pseudonymize_user(b"secret", "slack", "U012ABCDEF")

    assert first == second
    assert first.startswith("u_")
    assert len(first) == 32
    assert NAME_RULE.match(first)


def test_pseudonym_never_contains_the_raw_id() -> None:
    user_id = "123456789"

    pseudonym = pseudonymize_user(b"k", "telegram", user_id)

    assert user_id not in pseudonym
    assert "telegram" not in pseudonym


def test_pseudonym_depends_on_secret_platform_and_id() -> None:
    base = pseudonymize_user(b"secret", "slack", "U1")

    assert pseudonymize_user(b"other", "slack", "U1") != base
    assert pseudonymize_user(b"secret", "discord", "U1") != base
    assert pseudonymize_user(b"secret", "slack", "U2") != base
    # the separator keeps (platform, id) pairs apart
    assert pseudonymize_user(b"s", "ab", "c") != pseudonymize_user(b"s", "a", "bc")


def test_pseudonym_needs_a_secret() -> None:
    with pytest.raises(ValueError, match="secret"):
        pseudonymize_user(b"", "slack", "U1")


def test_sanitized_names_are_cached() -> None:
    from core.llm import names

    name = "Zoë Cachetest Ångström"
    before = names._sanitized.cache_info().hits

    results = {sanitize_name(name) for _ in range(5)}

    assert results == {"Zoe_Cachetest_Angstrom"}
    assert names._sanitized.cache_info().hits - before >= 4


@pytest.mark.parametrize(
    ("display", "expected"),
    [
        ("Иван Петров", "Ivan_Petrov"),
        ("Юлия Щербакова", "Yuliya_Shcherbakova"),
        ("Олександр Ґонта", "Oleksandr_Gonta"),
        ("李雷", None),
        ("محمد", None),
        ("_ -", None),
    ],
)
def test_cyrillic_is_transliterated_and_separator_only_names_are_dropped(
    display: str, expected: str | None
) -> None:
    assert sanitize_name(display) == expected
