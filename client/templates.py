"""Names written as Home Assistant's sentence templates, as its intent test fixtures write some
("Trader Joe[']s"): `[x]` is x or nothing, `(a|b)` is a or b. The test harness reads such a
name as every sentence it expands to, the first being the name and the others aliases."""

from __future__ import annotations

import itertools
import re

# hassil's template syntax: a name holding any of these is a template.
TEMPLATE = re.compile(r"[(){}<>\[\]|@]")
MAX_EXPANSIONS = 64


class TemplateError(ValueError):
    """A name whose template cannot be expanded (unbalanced, or a list or rule reference)."""


def is_template(text: str) -> bool:
    """Whether `text` holds template syntax."""
    return TEMPLATE.search(text) is not None


def expand(text: str) -> list[str]:
    """Every sentence `text` stands for, in the harness's order (an optional part's sentences
    with it first), whitespace collapsed, repeats and empty ones left out."""
    if "{" in text or "<" in text:
        raise TemplateError("a list {…} or rule <…> reference has no expansion here")
    alternatives, end = _alternatives(text, 0, "")
    if end != len(text):
        raise TemplateError(f"an unmatched {text[end]!r}")
    out: list[str] = []
    for sentence in alternatives:
        said = " ".join(sentence.split())
        if said and said not in out:
            out.append(said)
    return out


def _alternatives(text: str, pos: int, closer: str) -> tuple[list[str], int]:
    """The sentences of `a|b|…` from `pos` up to `closer` (or the end), and where it stopped."""
    out: list[str] = []
    while True:
        sentences, pos = _sequence(text, pos)
        out += sentences
        if pos < len(text) and text[pos] == "|":
            pos += 1
            continue
        if closer and (pos >= len(text) or text[pos] != closer):
            raise TemplateError(f"a {'(' if closer == ')' else '['} is not closed")
        return out, pos + (1 if closer else 0)


def _sequence(text: str, pos: int) -> tuple[list[str], int]:
    """The sentences of one alternative: text, (groups) and [optional parts] in a row."""
    parts: list[list[str]] = []
    literal = ""
    while pos < len(text) and text[pos] not in "|)]":
        ch = text[pos]
        if ch in "([":
            if literal:
                parts.append([literal])
                literal = ""
            inner, pos = _alternatives(text, pos + 1, ")" if ch == "(" else "]")
            parts.append(inner + [""] if ch == "[" else inner)
        else:
            literal += ch
            pos += 1
    if literal:
        parts.append([literal])
    count = 1
    for p in parts:
        count *= len(p)
        if count > MAX_EXPANSIONS:
            raise TemplateError(f"it expands to more than {MAX_EXPANSIONS} names")
    return ["".join(words) for words in itertools.product(*parts)], pos
