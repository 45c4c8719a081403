"""Evaluations beyond the test split: hand-written paraphrases, out-of-scope, calibration.

The paraphrase and out-of-scope sets in `export/eval/` (Chinese: `export/eval/zh-CN/`) are
written by hand and never used for training. The no-intent threshold applies to a score of the
intent logits (modelspec/calibration.py: the top softmax probability, or the largest logit for
the English models); it is calibrated on the in-scope validation split so that at most
`target_frr` of it is rejected. `out_of_scope_validation.txt`, where a language has one, is the
out-of-scope set the score was chosen on; `out_of_scope.txt` is reported, never chosen on.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from export.data import DataError, Example, parse_example
from export.languages import DEFAULT_LANGUAGE, get_language
from export.metrics import entity_f1
from export.model import IntentSlotRNN
from export.train import forward_by_name
from modelspec.batch import pad_rows
from modelspec.calibration import MAX_SOFTMAX, SCORES, in_scope_scores
from modelspec.names import INTENT_LOGITS, PAD_ID, SPECIAL_TOKENS
from modelspec.tokenizer import Tokenizer

EVAL_DIR = get_language(DEFAULT_LANGUAGE).eval_dir
PARAPHRASES = EVAL_DIR / "paraphrases.jsonl"
OUT_OF_SCOPE = EVAL_DIR / "out_of_scope.txt"
CALIBRATION_METHOD = "{score} of the intent logits; rejects <= target_frr of validation"
TARGET_FRR = 0.02
# Models with the context input: the threshold rejects at most this share of validation
# sentences that name unseen names (kind "values") without context, where false rejects cluster.
NAMES_TARGET_FRR = 0.008
NAMES_KIND = "values"
# Choose the no-intent score on the language's out-of-scope validation set (quality_report).
AUTO_SCORE = "auto"


def eval_path(name: str, language: str = DEFAULT_LANGUAGE) -> Path:
    """A file of the language's hand-written evaluation sets (`paraphrases.jsonl`,
    `out_of_scope.txt`)."""
    return get_language(language).eval_dir / name


def load_paraphrases(
    path: str | Path | None = None, language: str = DEFAULT_LANGUAGE
) -> list[Example]:
    """The hand-written paraphrase set. `kind`: `template` where a package template matches,
    `extra` where only an extra training template (or the training data) does, `novel` where
    nothing the model trained on produces it (`paraphrase_kind`). A slot may be written as its
    value (`{"slot": "area", "value": "客厅"}`) instead of offsets: it is found in the text,
    left to right, and left out where the text does not contain it."""
    path = Path(path or eval_path("paraphrases.jsonl", language))
    lines = path.read_text(encoding="utf-8").splitlines()
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        obj = json.loads(line)
        if isinstance(obj, dict) and isinstance(obj.get("slots"), list):
            obj = {**obj, "slots": _value_spans(str(obj.get("text", "")), obj["slots"])}
        out.append(parse_example(obj, f"{path}:{n}"))
    if not out:
        raise DataError(f"{path}: no examples")
    return out


def _value_spans(text: str, slots: list[Any]) -> list[Any]:
    """Slots with offsets: those given as a value get the offsets of its next occurrence."""
    out, pos = [], 0
    for sl in slots:
        if isinstance(sl, dict) and "value" in sl and "start" not in sl:
            value = str(sl["value"])
            at = text.find(value, pos)
            if at < 0:
                at = text.find(value)
            if not value or at < 0:
                continue
            sl = {"slot": sl.get("slot"), "start": at, "end": at + len(value)}
            pos = at + len(value)
        out.append(sl)
    return out


MAX_NAME_WORDS = 4  # a device, area or floor name longer than this is not a name


def template_matches(
    texts: Sequence[str],
    intents: Sequence[str],
    extra_path: str | Path | None = None,
    language: str = DEFAULT_LANGUAGE,
) -> list[tuple[bool, bool]]:
    """Per text: (a package template of its intent matches, an extra template of its intent
    matches), by hassil.recognize_all with the language's settings in any context (domain and
    area requirements dropped), with any name, area or floor (wildcards) of up to
    MAX_NAME_WORDS words (languages written without spaces: the language's
    `max_name_tokens` tokens). Conservative: a sentence counts as "no template produces it"
    only when neither kind of template can."""
    from hassil import Intents, recognize_all

    from export.data import extra_template_texts, package_intents, without_context

    lang = get_language(language)
    raw = package_intents(language).raw
    lists = dict(raw.get("lists", {}))
    for name in NAME_LISTS:
        lists[name] = {"wildcard": True}
    common = {
        "language": language,
        "lists": lists,
        "expansion_rules": raw.get("expansion_rules", {}),
        "skip_words": raw.get("skip_words", []),
    }
    if "settings" in raw:
        common["settings"] = raw["settings"]
    if lang.cjk:
        probe = Tokenizer(list(SPECIAL_TOKENS), lang.tokenizer_rules)
        limit = lang.max_name_tokens

        def short(name: str) -> bool:
            return len(probe.tokenize(name)) <= limit
    else:

        def short(name: str) -> bool:
            return len(name.split()) <= MAX_NAME_WORDS

    package = Intents.from_dict({**common, "intents": without_context(raw)["intents"]})
    extra_intents: dict[str, Any] = {}
    for name, sentences in extra_template_texts(extra_path or lang.extra_templates).items():
        block: dict[str, Any] = {"sentences": sentences}
        for data in raw["intents"].get(name, {}).get("data", []):
            for key in ("lists", "expansion_rules"):
                block.setdefault(key, {}).update(data.get(key, {}))
        extra_intents[name] = {"data": [block]}
    extra = Intents.from_dict({**common, "intents": extra_intents}) if extra_intents else None

    def produces(grammar: Any, text: str, intent: str) -> bool:
        for result in recognize_all(text, grammar):
            names = [e.text for k, e in result.entities.items() if k in NAME_LISTS]
            if result.intent.name == intent and all(short(str(n)) for n in names):
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


def mark_kinds(
    para: Sequence[Example], trained: set[str], language: str = DEFAULT_LANGUAGE
) -> list[Example]:
    """The paraphrases with their `kind` computed against the language's templates and the
    lower-cased training texts `trained`."""
    matches = template_matches([e.text for e in para], [e.intent for e in para], language=language)
    return [
        Example(
            e.text, e.intent, e.slots, e.template, paraphrase_kind(p, x, e.text.lower() in trained)
        )
        for e, (p, x) in zip(para, matches)
    ]


def load_out_of_scope(
    path: str | Path | None = None, language: str = DEFAULT_LANGUAGE
) -> list[str]:
    """The hand-written out-of-scope utterances (one a line, `#` comments)."""
    text = Path(path or eval_path("out_of_scope.txt", language)).read_text(encoding="utf-8")
    lines = text.splitlines()
    return [s.strip() for s in lines if s.strip() and not s.startswith("#")]


def intent_logits(
    model: IntentSlotRNN, tok: Tokenizer, texts: Sequence[str], batch: int = 256
) -> np.ndarray:
    """Intent logits [n, intents] (float64) of the model for raw texts, without a context."""
    model.eval()
    rows = [tok.encode(t)[1] or [PAD_ID] for t in texts]
    out = np.zeros((len(rows), model.config.num_intents), dtype=np.float64)
    with torch.no_grad():
        for s in range(0, len(rows), batch):
            chunk = rows[s : s + batch]
            ids, lengths = pad_rows(chunk)
            named = forward_by_name(model, torch.from_numpy(ids), torch.from_numpy(lengths))
            out[s : s + len(chunk)] = named[INTENT_LOGITS].double().numpy()
    return out


def intent_probs(
    model: IntentSlotRNN, tok: Tokenizer, texts: Sequence[str], batch: int = 256
) -> np.ndarray:
    """Softmax intent probabilities [n, intents] of the model for raw texts."""
    logits = intent_logits(model, tok, texts, batch)
    if not len(logits):
        return logits
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def calibrate(confidences: np.ndarray, target_frr: float = TARGET_FRR) -> float:
    """The highest threshold that rejects at most `target_frr` of in-scope confidences."""
    c = np.sort(np.asarray(confidences, dtype=np.float64))
    k = int(np.floor(target_frr * len(c)))  # this many may fall below the threshold
    if len(c) == 0:
        return 0.0
    # Below c[k] are exactly the k lowest: reject those (strictly below) and keep c[k].
    return float(c[k])


def choose_score(
    in_scope_logits: np.ndarray, out_of_scope_logits: np.ndarray, target_frr: float
) -> dict[str, float]:
    """Per score of SCORES: the share of the out-of-scope rows it rejects at the threshold
    calibrated on the in-scope rows (the same false-reject target for every score)."""
    out = {}
    for name in SCORES:
        threshold = calibrate(in_scope_scores(in_scope_logits, name), target_frr)
        rejected = in_scope_scores(out_of_scope_logits, name) < threshold
        out[name] = float(np.mean(rejected)) if len(rejected) else 0.0
    return out


def paraphrase_slot_f1(
    model: IntentSlotRNN, tok: Tokenizer, tags: Sequence[str], para: Sequence[Example]
) -> dict[str, Any]:
    """Entity F1 of the slots the model knows on the paraphrases that mark slots (spans
    that cut a token are left out and counted)."""
    from export.train import Labels, encode, predict

    labels = Labels(list({e.intent for e in para}), list(tags))
    known = set(labels.slot_names)
    rows, skipped = [], 0
    for e in para:
        ex = Example(e.text, e.intent, tuple(sp for sp in e.slots if sp.slot in known))
        try:
            encode([ex], tok, labels, "paraphrases")
        except ValueError:
            skipped += 1
            continue
        rows.append(ex)
    if not rows:
        return {"n": 0, "slot_f1": 0.0, "skipped": skipped}
    enc = encode(rows, tok, labels, "paraphrases")
    _, pred = predict(model, enc, labels.tags)
    f1 = entity_f1(
        [[labels.tags[t] for t in r] for r in enc.tags], [[labels.tags[t] for t in r] for r in pred]
    )
    return {
        "n": len(rows),
        "slot_f1": f1["f1"],
        "slot_precision": f1["precision"],
        "slot_recall": f1["recall"],
        "skipped": skipped,
    }


def quality_report(
    model: IntentSlotRNN,
    tok: Tokenizer,
    intents: Sequence[str],
    val: Sequence[Example],
    test: Sequence[Example],
    target_frr: float = TARGET_FRR,
    language: str = DEFAULT_LANGUAGE,
    train: Sequence[Example] = (),
    tags: Sequence[str] = (),
    calibrate_kind: str = "",
    score: str = AUTO_SCORE,
) -> dict[str, Any]:
    """Paraphrase accuracy, calibration of the no-intent `score` on val, false rejects on test,
    out-of-scope rejects (on the validation set the score was chosen on, and the evaluation set).
    `score` AUTO_SCORE: the score of SCORES that rejects the most of the out-of-scope
    validation set at its calibrated threshold (max_softmax without such a set).

    A language whose paraphrase file does not keep its kinds has them marked here against its
    templates and the training sentences `train`; with the model's BIO `tags`, the
    paraphrases' slots are scored too. Missing evaluation files count as empty sets."""
    known = set(intents)
    lang = get_language(language)
    para_path, oos_path = (
        eval_path(n, language) for n in ("paraphrases.jsonl", "out_of_scope.txt")
    )
    para = (
        [e for e in load_paraphrases(para_path) if e.intent in known] if para_path.exists() else []
    )
    if para and not lang.eval_kinds_in_file:
        para = mark_kinds(para, {e.text.lower() for e in train}, language)
    oos = load_out_of_scope(oos_path) if oos_path.exists() else []
    oos_val_path = eval_path("out_of_scope_validation.txt", language)
    oos_val = load_out_of_scope(oos_val_path) if oos_val_path.exists() else []

    on = np.asarray([not calibrate_kind or e.kind == calibrate_kind for e in val], dtype=bool)
    if not on.any():
        on[:] = True
    lv = intent_logits(model, tok, [e.text for e in val])
    lov = intent_logits(model, tok, oos_val)
    chosen_on = choose_score(lv[on], lov, target_frr)
    if score == AUTO_SCORE:
        score = max(chosen_on, key=lambda k: chosen_on[k]) if oos_val else MAX_SOFTMAX

    def scores(texts: Sequence[str]) -> np.ndarray:
        return in_scope_scores(intent_logits(model, tok, texts).reshape(len(texts), -1), score)

    sv = in_scope_scores(lv, score)
    threshold = calibrate(sv[on], target_frr)
    st = scores([e.text for e in test])
    pp = intent_probs(model, tok, [e.text for e in para]).reshape(len(para), len(intents))
    sp = scores([e.text for e in para])
    po = intent_probs(model, tok, oos)
    so, sov = scores(oos), in_scope_scores(lov, score)

    pred = [intents[i] for i in pp.argmax(1)]
    correct = [p == e.intent for p, e in zip(pred, para)]
    accepted = sp >= threshold
    novel = np.asarray([e.kind == "novel" for e in para], dtype=bool)
    misses = Counter((e.intent, p) for p, e, ok in zip(pred, para, correct) if not ok)
    oos_conf = po.max(1)
    report: dict[str, Any] = {
        "calibration": {
            "threshold": threshold,
            "score": score,
            "method": CALIBRATION_METHOD.format(score=score),
            "target_frr": target_frr,
            "val_n": int(on.sum()),
            "val_kind": calibrate_kind or "all",
            "val_false_reject_rate": float(np.mean(sv[on] < threshold)) if len(val) else 0.0,
            # out-of-scope validation rejected by each score at its own threshold
            "scores_on_validation": chosen_on if oos_val else {},
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
            "reject_rate": float(np.mean(so < threshold)) if oos else 0.0,
            "median_confidence": float(np.median(oos_conf)) if oos else 0.0,
        },
        "out_of_scope_validation": {
            "n": len(oos_val),
            "reject_rate": float(np.mean(sov < threshold)) if oos_val else 0.0,
        },
        "in_scope_test": {
            "n": len(test),
            "false_reject_rate": float(np.mean(st < threshold)) if len(test) else 0.0,
            "by_kind": {
                k: {
                    "n": int(m.sum()),
                    "false_reject_rate": float(np.mean(st[m] < threshold)),
                }
                for k in sorted({e.kind for e in test})
                if (m := np.asarray([e.kind == k for e in test], dtype=bool)).any()
            },
        },
    }
    if tags and any(e.slots for e in para):
        report["paraphrases"]["slots"] = paraphrase_slot_f1(
            model, tok, tags, [e for e in para if e.slots]
        )
    return report


def format_quality(q: dict[str, Any]) -> list[str]:
    """Report lines for the console."""
    c, p, o, t = q["calibration"], q["paraphrases"], q["out_of_scope"], q["in_scope_test"]
    lines = [
        f"paraphrases  intent acc {p['intent_accuracy']:.4f}  (n={p['n']}; no template "
        f"produces: {p['novel_intent_accuracy']:.4f}, n={p['novel_n']}; accepted and correct "
        f"{p['accepted_and_correct']:.4f})",
        f"threshold    {c['threshold']:.4f} on {c.get('score', MAX_SOFTMAX)} (calibrated on "
        f"validation, target false-reject {c['target_frr']:.1%})",
        f"out of scope reject rate {o['reject_rate']:.4f} (n={o['n']})  in-scope test false-"
        f"reject rate {t['false_reject_rate']:.4f} (n={t['n']})",
    ]
    if q.get("out_of_scope_validation", {}).get("n"):
        ov = q["out_of_scope_validation"]
        lines.append(
            f"  out of scope (validation set) reject rate {ov['reject_rate']:.4f} (n={ov['n']})"
        )
    lines += [
        f"  paraphrases, {k:8s} intent acc {v['intent_accuracy']:.4f} (n={v['n']})"
        for k, v in p.get("by_kind", {}).items()
    ]
    if "slots" in p:
        sl = p["slots"]
        lines.append(f"  paraphrases, slot F1 {sl['slot_f1']:.4f} (n={sl['n']})")
    lines += [
        f"  paraphrase miss: {m['gold']} -> {m['predicted']} x{m['count']}" for m in p["misses"]
    ]
    return lines
