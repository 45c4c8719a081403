"""The one tokenizer used by training and serving; its rules travel inside the model file."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from modelspec.names import NUM, PAD, PAD_ID, SPECIAL_TOKENS, UNK, UNK_ID

# Words (letters with inner apostrophes: "what's", "kid's"), numbers (21.5, 1/2, 10:30),
# and the two symbols that carry meaning in commands. All other punctuation is dropped.
DEFAULT_PATTERN = r"[^\W\d_]+(?:['’][^\W\d_]+)*|\d+(?:[.,:/]\d+)*|[%°]"
NUMBER_PATTERN = r"\d+(?:[.,:/]\d+)*"
TOKENIZER_VERSION = 1


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

    def to_dict(self) -> dict[str, Any]:
        """Rules as a JSON-ready dict."""
        return {
            "version": TOKENIZER_VERSION,
            "pattern": self.pattern,
            "lowercase": self.lowercase,
            "unicode_form": self.unicode_form,
            "numbers_to_token": self.numbers_to_token,
            "number_token": NUM,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TokenizerRules:
        """Rules from their dict form; rejects a version this code does not know."""
        if data.get("version") != TOKENIZER_VERSION:
            raise ValueError(f"unsupported tokenizer version {data.get('version')!r}")
        return cls(
            pattern=str(data["pattern"]),
            lowercase=bool(data["lowercase"]),
            unicode_form=str(data["unicode_form"]),
            numbers_to_token=bool(data["numbers_to_token"]),
        )


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
        self._regex = re.compile(self.rules.pattern)
        self._number = re.compile(NUMBER_PATTERN)

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

    def tokenize(self, text: str) -> list[Token]:
        """Tokens of `text` with spans into the original string."""
        norm = self.normalise(text)
        return [Token(m.group(0), m.start(), m.end()) for m in self._regex.finditer(norm)]

    def token_key(self, token: str) -> str:
        """The vocabulary key of a token (numbers collapse to one token)."""
        if self.rules.numbers_to_token and token[:1].isdigit() and self._number.fullmatch(token):
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


__all__ = ["PAD", "PAD_ID", "UNK", "UNK_ID", "Token", "Tokenizer", "TokenizerRules"]
