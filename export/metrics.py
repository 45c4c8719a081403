"""Intent accuracy and entity-level slot F1 (numpy only)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from modelspec.tags import decode_bio


def entity_f1(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict[str, float]:
    """Micro precision/recall/F1 over exact (slot, start, end) entities (conlleval style)."""
    tp = n_gold = n_pred = 0
    for g, p in zip(gold, pred):
        ge, pe = set(decode_bio(g)), set(decode_bio(p))
        tp += len(ge & pe)
        n_gold += len(ge)
        n_pred += len(pe)
    prec = tp / n_pred if n_pred else 1.0
    rec = tp / n_gold if n_gold else 1.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    return {"precision": prec, "recall": rec, "f1": f1}


def evaluate(
    gold_intents: Sequence[str],
    pred_intents: Sequence[str],
    gold_tags: Sequence[Sequence[str]],
    pred_tags: Sequence[Sequence[str]],
    kinds: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Overall metrics, per-kind metrics when kinds are given, and the worst confusions."""

    def block(idx: Sequence[int]) -> dict[str, float]:
        acc = sum(gold_intents[i] == pred_intents[i] for i in idx) / max(1, len(idx))
        f1 = entity_f1([gold_tags[i] for i in idx], [pred_tags[i] for i in idx])
        return {
            "n": len(idx),
            "intent_accuracy": acc,
            "slot_f1": f1["f1"],
            "slot_precision": f1["precision"],
            "slot_recall": f1["recall"],
        }

    all_idx = list(range(len(gold_intents)))
    out: dict[str, Any] = block(all_idx)
    if kinds is not None:
        out["by_kind"] = {
            k: block([i for i in all_idx if kinds[i] == k]) for k in sorted(set(kinds)) if k
        }
    conf = Counter((g, p) for g, p in zip(gold_intents, pred_intents) if g != p)
    out["worst_confusions"] = [
        {"gold": g, "predicted": p, "count": c} for (g, p), c in conf.most_common(5)
    ]
    return out
