"""Greedy and beam-search decoding with the torch model, and word/phoneme error rates."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from export.g2p.data import Entry, Vocab
from export.g2p.model import G2P
from modelspec.batch import pad_rows
from modelspec.seq2seq import BOS_ID, EOS_ID, TGT_PAD_ID

NEVER = [TGT_PAD_ID, BOS_ID]
MAX_STEPS = 40  # CMUdict's longest pronunciation has 28 phonemes


@torch.no_grad()
def greedy(
    model: G2P, rows: Sequence[Sequence[int]], max_steps: int = MAX_STEPS
) -> list[list[int]]:
    """Greedy token ids (without </s>) for each row of character ids, in one batch."""
    model.eval()
    ids_np, lengths_np = pad_rows([list(r) for r in rows])
    ids = torch.from_numpy(ids_np)
    lengths = torch.from_numpy(lengths_np)
    memory, h = model.encode(ids, lengths)
    prev = torch.full((len(rows),), BOS_ID, dtype=torch.long)
    out: list[list[int]] = [[] for _ in rows]
    done = torch.zeros(len(rows), dtype=torch.bool)
    for _ in range(max_steps):
        logits, h, _ = model.step(prev, h, memory, lengths)
        logits[:, NEVER] = -torch.inf  # <pad> and <s> are never generated
        prev = logits.argmax(-1)
        for i in torch.nonzero(~done).flatten().tolist():
            t = int(prev[i])
            if t == EOS_ID:
                done[i] = True
            else:
                out[i].append(t)
        if bool(done.all()):
            break
    return out


def edit_distance(a: Sequence[str], b: Sequence[str]) -> int:
    """Levenshtein distance between two phoneme sequences."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, y in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y))
        prev = cur
    return prev[-1]


def error_rates(entries: Sequence[Entry], hyps: Sequence[Sequence[str]]) -> dict[str, float]:
    """Word error (hypothesis equals none of the word's pronunciations) and phoneme error
    (edit distance to the closest pronunciation over that pronunciation's length, summed)."""
    wrong = 0
    dist = 0
    ref_len = 0
    for e, hyp in zip(entries, hyps, strict=True):
        h = tuple(hyp)
        best = min(e.prons, key=lambda p: (edit_distance(h, p), len(p)))
        d = edit_distance(h, best)
        wrong += d > 0 and h not in e.prons
        dist += d
        ref_len += len(best)
    n = max(1, len(entries))
    return {"wer": wrong / n, "per": dist / max(1, ref_len), "n": len(entries)}


def decode_entries(
    model: G2P, vocab: Vocab, entries: Sequence[Entry], batch: int = 512
) -> list[tuple[str, ...]]:
    """Greedy pronunciations of each entry's word."""
    out: list[tuple[str, ...]] = []
    for s in range(0, len(entries), batch):
        chunk = entries[s : s + batch]
        ids = greedy(model, [vocab.encode_word(e.word) for e in chunk])
        out.extend(vocab.decode_pron(r) for r in ids)
    return out
