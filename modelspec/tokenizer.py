"""The one tokenizer used by training and serving; its rules travel inside the model file.

Rules version 2 (the default) differs from version 1 in three ways, so a model file says which
semantics its pattern needs and an older server refuses it instead of misreading it:

* the pattern is Python `re` syntax plus `\\p{M}`, any combining mark (Unicode categories Mn, Mc,
  Me, from the interpreter's Unicode database), inside or outside a character class;
* a token's text is NFC-composed, so "cafe" + U+0301 and "café" are the same vocabulary key
  (the span still covers the combining mark in the original text);
* a number with a leading minus ("-18", U+2212 too) is a number and maps to the number token.

Version 1 rules (files exported before version 2) are still read with their old semantics.
"""

from __future__ import annotations

import functools
import itertools
import re
import sys
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from modelspec.names import NUM, PAD, PAD_ID, SPECIAL_TOKENS, UNK, UNK_ID

MARK = r"\p{M}"
_LETTER = r"[^\W\d_]"  # a letter: a word character that is neither a digit nor "_"
_WORD = rf"{_LETTER}+(?:{MARK}+{_LETTER}*)*"  # letters; combining marks stay inside the word
# A minus (or U+2212) right before a number is its sign unless a letter or digit precedes it:
# "-18" is one number, "10-15" two.
_NUMBER = r"(?:(?<![^\W_])[-\u2212])?\d+(?:[.,:/]\d+)*"
# Words (letters and combining marks, inner apostrophes: "what's", "kid's"), numbers (21.5, 1/2,
# 10:30, -18), and the two symbols that carry meaning in commands. Other punctuation is dropped.
DEFAULT_PATTERN = rf"{_WORD}(?:['’]{_WORD})*|{_NUMBER}|[%°]"

# Han characters (CJK ideographs, their extensions and compatibility forms, radicals, 々 〇 〡-〩).
HAN = (
    r"\u2e80-\u2fdf\u3005\u3007\u3021-\u3029\u3038-\u303b"
    r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003ffff"
)
_CJK_LETTER = rf"[^\W\d_{HAN}]"  # a letter that is not Han
_CJK_WORD = rf"{_CJK_LETTER}+(?:{MARK}+{_CJK_LETTER}*)*"
_CJK_NUMBER = rf"(?:(?<![^\W_{HAN}])[-\u2212])?\d+(?:[.,:/]\d+)*"
# Chinese (and other text written without spaces between words): each Han character is a token,
# runs of other letters ("TV") and numbers ("3", "-18") are tokens as in DEFAULT_PATTERN; a minus
# after a Han character is a sign ("调到-18度").
CJK_PATTERN = rf"[{HAN}]|{_CJK_WORD}(?:['’]{_CJK_WORD})*|{_CJK_NUMBER}|[%°]"

TOKENIZER_VERSION = 2
KNOWN_VERSIONS = (1, 2)
# Version 1: the default pattern, and how a token was recognised as a number.
V1_PATTERN = r"[^\W\d_]+(?:['’][^\W\d_]+)*|\d+(?:[.,:/]\d+)*|[%°]"
_V1_NUMBER = re.compile(r"\d+(?:[.,:/]\d+)*")
_NUMBER_KEY = re.compile(r"[-\u2212]?\d+(?:[.,:/]\d+)*")


@functools.cache
def _mark_ranges() -> str:
    """The combining marks as the inside of a character class (ranges of escaped code points)."""
    spans: list[list[int]] = []
    # Unicode assigns combining marks only in planes 0-2 and 14; skip the empty planes between.
    for cp in (*range(0x30000), *range(0xE0000, sys.maxunicode + 1)):
        if unicodedata.category(chr(cp)) in ("Mn", "Mc", "Me"):
            if spans and spans[-1][1] == cp - 1:
                spans[-1][1] = cp
            else:
                spans.append([cp, cp])

    def esc(cp: int) -> str:
        return f"\\u{cp:04x}" if cp <= 0xFFFF else f"\\U{cp:08x}"

    return "".join(esc(a) if a == b else f"{esc(a)}-{esc(b)}" for a, b in spans)


def expand_pattern(pattern: str) -> str:
    """Python `re` syntax from a version-2 pattern: each `\\p{M}` becomes the combining marks."""
    if MARK not in pattern:
        return pattern
    out: list[str] = []
    i, in_class = 0, False
    while i < len(pattern):
        if pattern.startswith(MARK, i):
            out.append(_mark_ranges() if in_class else f"[{_mark_ranges()}]")
            i += len(MARK)
            continue
        ch = pattern[i]
        step = 2 if ch == "\\" else 1  # an escape is copied whole
        if ch == "[" and not in_class:
            in_class = True
            # "]" straight after "[" or "[^" is a literal, not the end of the class.
            step += pattern.startswith("^", i + 1)
            step += pattern.startswith("]", i + step)
        elif ch == "]" and in_class:
            in_class = False
        out.append(pattern[i : i + step])
        i += step
    return "".join(out)


class Token(NamedTuple):
    """One token: its normalised text and its character span in the original string."""

    text: str
    start: int
    end: int


@dataclass(frozen=True)
class TokenizerRules:
    """The rules that define tokenization; serialised into the model metadata."""

    pattern: str = DEFAULT_PATTERN
    lowercase: bool = True
    unicode_form: str = "NFKC"
    numbers_to_token: bool = True
    version: int = TOKENIZER_VERSION

    def __post_init__(self) -> None:
        if self.version not in KNOWN_VERSIONS:
            raise ValueError(f"unsupported tokenizer version {self.version!r}")

    def to_dict(self) -> dict[str, Any]:
        """Rules as a JSON-ready dict."""
        return {
            "version": self.version,
            "pattern": self.pattern,
            "lowercase": self.lowercase,
            "unicode_form": self.unicode_form,
            "numbers_to_token": self.numbers_to_token,
            "number_token": NUM,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TokenizerRules:
        """Rules from their dict form; rejects a version this code does not know."""
        version = data.get("version")
        if version not in KNOWN_VERSIONS:
            raise ValueError(f"unsupported tokenizer version {version!r}")
        return cls(
            pattern=str(data["pattern"]),
            lowercase=bool(data["lowercase"]),
            unicode_form=str(data["unicode_form"]),
            numbers_to_token=bool(data["numbers_to_token"]),
            version=int(version),
        )

    def regex(self) -> re.Pattern[str]:
        """The compiled pattern (version 2 expands combining marks, version 1 is plain `re`)."""
        return re.compile(expand_pattern(self.pattern) if self.version >= 2 else self.pattern)


class Tokenizer:
    """Splits text into tokens with character spans and maps them to vocabulary ids."""

    def __init__(self, vocab: Sequence[str], rules: TokenizerRules | None = None) -> None:
        if tuple(vocab[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise ValueError(f"vocabulary must start with {SPECIAL_TOKENS}")
        self.rules = rules or TokenizerRules()
        self.vocab: list[str] = list(vocab)
        self.index: dict[str, int] = {tok: i for i, tok in enumerate(self.vocab)}
        if len(self.index) != len(self.vocab):
            raise ValueError("vocabulary has duplicate entries")
        self._regex = self.rules.regex()
        self._v2 = self.rules.version >= 2
        self._number = _NUMBER_KEY if self._v2 else _V1_NUMBER
        self._signs = "-\u2212" if self._v2 else ""

    @property
    def vocab_size(self) -> int:
        """Number of ids, special tokens included."""
        return len(self.vocab)

    def normalise(self, text: str) -> str:
        """Unicode-normalise (length-preserving forms only keep spans exact) and fold case."""
        out = text
        if out.isascii():  # ASCII is invariant under NFKC and lowers char for char: fast path
            return out.lower() if self.rules.lowercase else out
        if self.rules.unicode_form:
            form: Any = self.rules.unicode_form
            # Normalise char by char so that character offsets still index the original text.
            out = "".join(n if len(n := unicodedata.normalize(form, ch)) == 1 else ch for ch in out)
        out = out.replace("\u2019", "'")  # typographic apostrophe, same length
        if self.rules.lowercase:
            out = "".join(c if len(lc := c.lower()) != 1 else lc for c in out)
        return out

    def tokenize(self, text: str, limit: int | None = None) -> list[Token]:
        """Tokens of `text` with spans into the original string; with `limit`, at most that
        many (the scan stops there, so an oversized text costs no more than the limit)."""
        norm = self.normalise(text)
        matches = self._regex.finditer(norm)
        if limit is not None:
            matches = itertools.islice(matches, limit)
        if self._v2 and not norm.isascii():  # compose combining marks into the token's text
            return [
                Token(unicodedata.normalize("NFC", m.group(0)), m.start(), m.end()) for m in matches
            ]
        return [Token(m.group(0), m.start(), m.end()) for m in matches]

    def token_key(self, token: str) -> str:
        """The vocabulary key of a token (numbers collapse to one token)."""
        if (
            self.rules.numbers_to_token
            and (token[:1].isdigit() or token[:1] in self._signs)
            and self._number.fullmatch(token)
        ):
            return NUM
        return token

    def ids(self, tokens: Iterable[Token | str]) -> list[int]:
        """Vocabulary ids of tokens; unknown tokens map to `<unk>`."""
        out = []
        for tok in tokens:
            key = self.token_key(tok.text if isinstance(tok, Token) else tok)
            out.append(self.index.get(key, UNK_ID))
        return out

    def encode(self, text: str) -> tuple[list[Token], list[int]]:
        """Tokens and ids of a text."""
        toks = self.tokenize(text)
        return toks, self.ids(toks)

    def to_dict(self) -> dict[str, Any]:
        """Rules and vocabulary as JSON-ready dict."""
        return {"rules": self.rules.to_dict(), "vocab": self.vocab}

    @classmethod
    def build(
        cls, texts: Iterable[str], min_count: int = 1, rules: TokenizerRules | None = None
    ) -> Tokenizer:
        """Build a vocabulary from training texts (sorted by frequency, then alphabetically)."""
        probe = cls(list(SPECIAL_TOKENS), rules)
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(probe.token_key(t.text) for t in probe.tokenize(text))
        words = sorted(
            (w for w, c in counts.items() if c >= min_count and w not in SPECIAL_TOKENS),
            key=lambda w: (-counts[w], w),
        )
        return cls(list(SPECIAL_TOKENS) + words, rules)


__all__ = [
    "CJK_PATTERN",
    "DEFAULT_PATTERN",
    "PAD",
    "PAD_ID",
    "UNK",
    "UNK_ID",
    "V1_PATTERN",
    "Token",
    "Tokenizer",
    "TokenizerRules",
]
