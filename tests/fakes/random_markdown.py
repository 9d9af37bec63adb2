"""Random Markdown answers for property tests: fences, lists, emphasis, tokens, emoji."""

from __future__ import annotations

import random

WORDS = [
    "alpha",
    "beta",
    "gamma",
    "δέλτα",
    "日本語",
    "naïve",
    "x",
    "longerword",
    "e\u0301t\u0301e\u0301",
]
EMOJI = ["\U0001f600", "\U0001f44d\U0001f3fd", "\U0001f1eb\U0001f1f7", "\U0001d518", "\u2764\ufe0f"]
TOKENS = ["<@U12345>", "<#C99|random>", "<!here>", "[docs](https://ex.com/d)", "`code()`"]


def random_inline(rng: random.Random) -> str:
    """One paragraph of words, emoji, mention tokens, links, code spans and emphasis."""
    words: list[str] = []
    for _ in range(rng.randint(3, 30)):
        roll = rng.random()
        if roll < 0.08:
            words.append(rng.choice(EMOJI))
        elif roll < 0.14:
            words.append(rng.choice(TOKENS))
        elif roll < 0.18:
            words.append(
                "**" + " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 6))) + "**"
            )
        elif roll < 0.21:
            words.append("~~" + rng.choice(WORDS) + " " + rng.choice(WORDS) + "~~")
        elif roll < 0.23:
            words.append("z" * rng.randint(20, 90))
        else:
            word = rng.choice(WORDS)
            words.append(word + ("." if rng.random() < 0.15 else ""))
    return " ".join(words)


def random_markdown(rng: random.Random) -> str:
    """Paragraphs, bullet lists and fenced code blocks separated by blank lines."""
    blocks: list[str] = []
    for _ in range(rng.randint(1, 8)):
        roll = rng.random()
        if roll < 0.25:
            info = rng.choice(["", "python", "js", "text title=x"])
            lines = [
                " " * rng.choice([0, 0, 4]) + rng.choice(WORDS) + " = " + rng.choice(WORDS)
                for _ in range(rng.randint(0, 15))
            ]
            blocks.append("```" + info + "\n" + "\n".join(lines) + ("\n" if lines else "") + "```")
        elif roll < 0.4:
            blocks.append("\n".join("- " + random_inline(rng) for _ in range(rng.randint(1, 5))))
        else:
            blocks.append(random_inline(rng))
    return "\n\n".join(blocks)
