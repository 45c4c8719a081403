"""A name's words as a letter-reading model takes them: digits become English number words.

`python -m client generate` sends each word of a name to an encoder–decoder that reads letters
(g2p), so "Lamp 2" is sent as "Lamp" and "two", and "R2D2" as "R", "two", "D", "two". Pure Python.
"""

from __future__ import annotations

import re

_ONES = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
_TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_SCALES = (
    (1_000_000_000, "billion"),
    (1_000_000, "million"),
    (1_000, "thousand"),
    (100, "hundred"),
)
_RUNS = re.compile(r"\d+|\D+")


def number_words(n: int) -> list[str]:
    """English words for a whole number: 21 -> twenty one, 1905 -> one thousand nine hundred
    five."""
    if n < 20:
        return [_ONES[n]]
    if n < 100:
        return [_TENS[n // 10]] + ([_ONES[n % 10]] if n % 10 else [])
    for size, name in _SCALES:
        if n >= size:
            rest = n % size
            return number_words(n // size) + [name] + (number_words(rest) if rest else [])
    raise AssertionError("unreachable")


def spoken(word: str) -> list[str]:
    """The words a letter-reading model is sent for one written word: runs of digits as number
    words ("2" -> two; a run with a leading zero, or over 12 digits, digit by digit: "007" ->
    zero zero seven), a point between digits as "point", other runs with a letter as written,
    and runs of punctuation alone left out."""
    runs = _RUNS.findall(word)
    out: list[str] = []
    for i, run in enumerate(runs):
        if run.isdecimal() and run.isascii():
            if run.startswith("0") or len(run) > 12:
                out.extend(_ONES[int(d)] for d in run)
            else:
                out.extend(number_words(int(run)))
        elif run == "." and 0 < i < len(runs) - 1:  # between two runs of digits: "3.5"
            out.append("point")
        elif any(ch.isalpha() for ch in run):
            out.append(run)
    return out
