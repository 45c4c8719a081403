"""Evaluations beyond the test split: hand-written paraphrases, out-of-scope, calibration.

The paraphrase and out-of-scope sets in `export/eval/` are written by hand and never used
for training. The confidence threshold is the maximum softmax intent probability; it is
calibrated on the in-scope validation split so that at most `target_frr` of it is rejected.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from export.data import Example, read_jsonl
from export.model import IntentSlotRNN
from export.train import forward_by_name
from modelspec.batch import pad_rows
from modelspec.names import INTENT_LOGITS, PAD_ID
from modelspec.tokenizer import Tokenizer

EVAL_DIR = Path(__file__).resolve().parent / "eval"
PARAPHRASES = EVAL_DIR / "paraphrases.jsonl"
OUT_OF_SCOPE = EVAL_DIR / "out_of_scope.txt"
CALIBRATION_METHOD = "max softmax intent probability; rejects <= target_frr of validation"
TARGET_FRR = 0.02


def load_paraphrases(path: str | Path = PARAPHRASES) -> list[Example]:
    """The hand-written paraphrase set (intent labels only). `kind`: `template` where a
    package template matches, `extra` where only an extra training template (or the training
    data) does, `novel` where nothing the model trained on produces it (`paraphrase_kind`)."""
    return read_jsonl(path)


MAX_NAME_WORDS = 4  # a device, area or floor name longer than this is not a name


def template_matches(
    texts: Sequence[str], intents: Sequence[str], extra_path: str | Path | None = None
) -> list[tuple[bool, bool]]:
    """Per text: (a package template of its intent matches, an extra template of its intent
    matches), by hassil.recognize_all in any context (domain and area requirements dropped),
    with any name, area or floor of up to MAX_NAME_WORDS words (wildcards). Conservative: a
    sentence counts as "no template produces it" only when neither kind of template can."""
    from hassil import Intents, recognize_all

    from export.data import EXTRA_TEMPLATES, LANGUAGE, extra_template_texts, package_intents

    raw = package_intents().raw
    lists = dict(raw.get("lists", {}))
    for name in NAME_LISTS:
        lists[name] = {"wildcard": True}
    common = {
        "language": LANGUAGE,
        "lists": lists,
        "expansion_rules": raw.get("expansion_rules", {}),
        "skip_words": raw.get("skip_words", []),
    }
    any_context = {
        name: {
            **intent,
            "data": [
                {k: v for k, v in d.items() if k not in ("requires_context", "excludes_context")}
                for d in intent.get("data", [])
            ],
        }
        for name, intent in raw.get("intents", {}).items()
    }
    package = Intents.from_dict({**common, "intents": any_context})
    extra_intents: dict[str, Any] = {}
    for name, sentences in extra_template_texts(extra_path or EXTRA_TEMPLATES).items():
        block: dict[str, Any] = {"sentences": sentences}
        for data in raw["intents"].get(name, {}).get("data", []):
            for key in ("lists", "expansion_rules"):
                block.setdefault(key, {}).update(data.get(key, {}))
        extra_intents[name] = {"data": [block]}
    extra = Intents.from_dict({**common, "intents": extra_intents}) if extra_intents else None

    def produces(grammar: Any, text: str, intent: str) -> bool:
        for result in recognize_all(text, grammar):
            names = [e.text for k, e in result.entities.items() if k in NAME_LISTS]
            if result.intent.name == intent and all(
                len(str(n).split()) <= MAX_NAME_WORDS for n in names
            ):
                return True
        return False

    return [
        (produces(package, t, i), extra is not None and produces(extra, t, i))
        for t, i in zip(texts, intents)
    ]


NAME_LISTS = ("name", "area", "floor")


def paraphrase_kind(package_match: bool, extra_match: bool, in_training: bool) -> str:
    """`template` (a package template produces it), `extra` (only a hand-written extra
    template or the training data does) or `novel` (nothing the model trained on does)."""
    if package_match:
        return "template"
    if extra_match or in_training:
        return "extra"
    return "novel"


def load_out_of_scope(path: str | Path = OUT_OF_SCOPE) -> list[str]:
    """The hand-written out-of-scope utterances (one a line, `#` comments)."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [s.strip() for s in lines if s.strip() and not s.startswith("#")]


def intent_probs(
    model: IntentSlotRNN, tok: Tokenizer, texts: Sequence[str], batch: int = 256
) -> np.ndarray:
    """Softmax intent probabilities [n, intents] of the model for raw texts."""
    model.eval()
    rows = [tok.encode(t)[1] or [PAD_ID] for t in texts]
    if not rows:
        return np.zeros((0, model.config.num_intents))
    out = np.zeros((len(rows), model.config.num_intents), dtype=np.float64)
    with torch.no_grad():
        for s in range(0, len(rows), batch):
            chunk = rows[s : s + batch]
            ids, lengths = pad_rows(chunk)
            named = forward_by_name(model, torch.from_numpy(ids), torch.from_numpy(lengths))
            logits = named[INTENT_LOGITS]
            out[s : s + len(chunk)] = torch.softmax(logits.double(), -1).numpy()
    return out


def calibrate(confidences: np.ndarray, target_frr: float = TARGET_FRR) -> float:
    """The highest threshold that rejects at most `target_frr` of in-scope confidences."""
    c = np.sort(np.asarray(confidences, dtype=np.float64))
    k = int(np.floor(target_frr * len(c)))  # this many may fall below the threshold
    if len(c) == 0:
        return 0.0
    # Below c[k] are exactly the k lowest: reject those (strictly below) and keep c[k].
    return float(c[k])


def quality_report(
    model: IntentSlotRNN,
    tok: Tokenizer,
    intents: Sequence[str],
    val: Sequence[Example],
    test: Sequence[Example],
    target_frr: float = TARGET_FRR,
) -> dict[str, Any]:
    """Paraphrase accuracy, calibration on val, false rejects on test, out-of-scope rejects."""
    known = set(intents)
    para = [e for e in load_paraphrases() if e.intent in known]  # all, for the default data
    oos = load_out_of_scope()
    pv = intent_probs(model, tok, [e.text for e in val])
    threshold = calibrate(pv.max(1), target_frr)
    pt = intent_probs(model, tok, [e.text for e in test])
    pp = intent_probs(model, tok, [e.text for e in para]).reshape(len(para), len(intents))
    po = intent_probs(model, tok, oos)

    pred = [intents[i] for i in pp.argmax(1)]
    correct = [p == e.intent for p, e in zip(pred, para)]
    accepted = pp.max(1) >= threshold
    novel = np.asarray([e.kind == "novel" for e in para], dtype=bool)
    misses = Counter((e.intent, p) for p, e, ok in zip(pred, para, correct) if not ok)
    oos_conf = po.max(1)
    return {
        "calibration": {
            "threshold": threshold,
            "method": CALIBRATION_METHOD,
            "target_frr": target_frr,
            "val_n": len(val),
            "val_false_reject_rate": float(np.mean(pv.max(1) < threshold)) if len(val) else 0.0,
        },
        "paraphrases": {
            "n": len(para),
            "intent_accuracy": float(np.mean(correct)) if para else 0.0,
            "novel_n": int(novel.sum()),
            "novel_intent_accuracy": float(np.mean(np.asarray(correct)[novel]))
            if novel.any()
            else 0.0,
            "by_kind": {
                k: {"n": len(ok), "intent_accuracy": float(np.mean(ok))}
                for k in sorted({e.kind for e in para})
                if (ok := [c for c, e in zip(correct, para) if e.kind == k])
            },
            "accepted_and_correct": float(np.mean(np.asarray(correct) & accepted)) if para else 0.0,
            "false_reject_rate": float(np.mean(~accepted)) if para else 0.0,
            "misses": [
                {"gold": g, "predicted": p, "count": c} for (g, p), c in misses.most_common(10)
            ],
        },
        "out_of_scope": {
            "n": len(oos),
            "reject_rate": float(np.mean(oos_conf < threshold)),
            "median_confidence": float(np.median(oos_conf)),
        },
        "in_scope_test": {
            "n": len(test),
            "false_reject_rate": float(np.mean(pt.max(1) < threshold)) if len(test) else 0.0,
        },
    }


def format_quality(q: dict[str, Any]) -> list[str]:
    """Report lines for the console."""
    c, p, o, t = q["calibration"], q["paraphrases"], q["out_of_scope"], q["in_scope_test"]
    lines = [
        f"paraphrases  intent acc {p['intent_accuracy']:.4f}  (n={p['n']}; no template "
        f"produces: {p['novel_intent_accuracy']:.4f}, n={p['novel_n']}; accepted and correct "
        f"{p['accepted_and_correct']:.4f})",
        f"threshold    {c['threshold']:.4f} (calibrated on validation, target false-reject "
        f"{c['target_frr']:.0%})",
        f"out of scope reject rate {o['reject_rate']:.4f} (n={o['n']})  in-scope test false-"
        f"reject rate {t['false_reject_rate']:.4f} (n={t['n']})",
    ]
    lines += [
        f"  paraphrases, {k:8s} intent acc {v['intent_accuracy']:.4f} (n={v['n']})"
        for k, v in p.get("by_kind", {}).items()
    ]
    lines += [
        f"  paraphrase miss: {m['gold']} -> {m['predicted']} x{m['count']}" for m in p["misses"]
    ]
    return lines
