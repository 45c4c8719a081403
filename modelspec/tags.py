"""BIO slot tags: decoding per-token tags into entity spans."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from modelspec.names import OUTSIDE_TAG


@dataclass(frozen=True)
class Entity:
    """A decoded slot: its name and the token span [start, end)."""

    slot: str
    start: int
    end: int


def decode_bio(tags: Sequence[str]) -> list[Entity]:
    """Entities from BIO tags; an I- tag that does not continue its type starts a new entity."""
    out: list[Entity] = []
    cur: str | None = None
    start = 0
    for i, tag in enumerate(list(tags) + [OUTSIDE_TAG]):
        kind, _, name = tag.partition("-")
        continues = kind == "I" and name == cur
        if cur is not None and not continues:
            out.append(Entity(cur, start, i))
            cur = None
        if kind in ("B", "I") and not continues:
            cur, start = name, i
    return out


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Log-probabilities over the last axis in float64: finite wherever logits are, so the
    decoding never meets -inf from a softmax that underflowed in float32."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def allowed_transitions(tags: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """BIO constraints as masks: `start[j]` (tag j may open a sentence) and `trans[i, j]`
    (tag j may follow tag i). An I-x tag may only follow B-x or I-x."""
    k = len(tags)
    start = np.ones(k, dtype=bool)
    trans = np.ones((k, k), dtype=bool)
    for j, tag in enumerate(tags):
        kind, _, name = tag.partition("-")
        if kind != "I":
            continue
        start[j] = False
        for i, prev in enumerate(tags):
            pkind, _, pname = prev.partition("-")
            trans[i, j] = pkind in ("B", "I") and pname == name
    return start, trans


def viterbi(scores: np.ndarray, start: np.ndarray, trans: np.ndarray) -> list[int]:
    """The highest-scoring tag path [T] through per-step scores [T, K] (log-probabilities)
    that obeys the masks of `allowed_transitions`."""
    t_len, k = scores.shape
    if t_len == 0:
        return []
    penalty = np.where(trans, 0.0, -np.inf)
    best = np.where(start, scores[0], -np.inf)
    back = np.zeros((t_len, k), dtype=np.int64)
    for t in range(1, t_len):
        cand = best[:, None] + penalty  # [from, to]
        back[t] = cand.argmax(0)
        best = cand.max(0) + scores[t]
    path = [int(best.argmax())]
    for t in range(t_len - 1, 0, -1):
        path.append(int(back[t, path[-1]]))
    return path[::-1]


def best_tags(log_probs: np.ndarray, start: np.ndarray, trans: np.ndarray) -> np.ndarray:
    """Tag ids [T] for per-step log-probabilities [T, K]: the argmax where it already obeys
    the BIO constraints (then it is also the best valid path), else the Viterbi path."""
    best = log_probs.argmax(-1)
    if len(best) == 0 or (start[best[0]] and trans[best[:-1], best[1:]].all()):
        return best
    return np.asarray(viterbi(log_probs, start, trans), dtype=np.int64)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Probabilities over the last axis in float64 (never NaN for finite logits)."""
    z = np.asarray(logits, dtype=np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)
