"""Command parsing: names, bot-addressed commands, parameter values."""

from __future__ import annotations

import pytest

from core.commands import help_text, parse_command, parse_param_value


def test_known_commands_parse_with_arguments() -> None:
    command = parse_command("/set temperature 0.2")
    assert command is not None and command.name == "set" and command.argument == "temperature 0.2"
    assert parse_command("  /NEW ") is not None


def test_commands_for_another_bot_or_unknown_are_not_commands() -> None:
    assert parse_command("/new@other_bot", bot_username="threadline_bot") is None
    assert parse_command("/new@threadline_bot", bot_username="threadline_bot") is not None
    assert parse_command("/usr/bin/env is a path") is None
    assert parse_command("hello /new") is None


def test_param_values_are_typed() -> None:
    assert parse_param_value("temperature", "0.5") == 0.5
    assert parse_param_value("n", "2") == 2
    assert parse_param_value("stop", "END") == ("END",)
    assert parse_param_value("stop", '["a", "b"]') == ("a", "b")
    assert parse_param_value("logit_bias", '{"50256": -100}') == {"50256": -100}
    with pytest.raises(ValueError):
        parse_param_value("temperature", "warm")
    with pytest.raises(ValueError):
        parse_param_value("logit_bias", "[1]")


def test_help_lists_every_command() -> None:
    text = help_text()
    for name in ("/new", "/help", "/params", "/set", "/unset"):
        assert name in text
