"""Evaluation of an exported model as the server runs it: intent, slots and rejection with and
without a context, canonical values per slot, and which context entry each name, area and floor
resolves to.

The model runs in onnxruntime with the server's own pieces (modelspec: tokenizer, matcher,
BIO decoding, value tables). Gold canonical values come from Home Assistant's matcher: hassil
recognises each sentence with its intent's templates (the utterance's own names, areas and
floors as its lists), and its slot values, fixed ones (`domain`) included, are what Home
Assistant would act on.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from export.context_sim import EVAL_SIM, context_features, pool_values, simulate
from export.data import Example, bio_tags, package_intents, without_context
from export.languages import DEFAULT_LANGUAGE, get_language
from modelspec.batch import pad_rows
from modelspec.calibration import in_scope_scores, score_name
from modelspec.context import (
    CONFIG_CONTEXT_DIM,
    CONTEXT_DIM,
    CONTEXT_KINDS,
    ContextMatcher,
    HomeContext,
    snap_tags,
)
from modelspec.meta import ModelMetadata
from modelspec.names import CONTEXT, INPUT_IDS, INTENT_LOGITS, LENGTHS, METADATA_KEY, SLOT_LOGITS
from modelspec.tags import (
    Entity,
    allowed_transitions,
    best_tags,
    decode_bio,
    log_softmax,
    softmax,
)
from modelspec.values import DOMAIN, NONE, SlotValues, implied_words, with_slots

# Free text and names: no canonical value of their own.
FREE = {"message", "search_query", "item", "conversation_command", "name", "area", "floor"}


def gold_values(
    examples: Sequence[Example], language: str = DEFAULT_LANGUAGE
) -> list[dict[str, Any]]:
    """Per example, the slot values hassil recognises (each intent's own templates, the
    example's names, areas and floors as lists); {} where it recognises nothing."""
    from hassil import Intents, recognize
    from hassil.intents import SlotList, TextSlotList

    raw = package_intents(language).raw
    grammars: dict[str, Any] = {}
    out: list[dict[str, Any]] = []
    for ex in examples:
        if ex.intent not in raw["intents"]:
            out.append({})
            continue
        if ex.intent not in grammars:
            one = {**raw, "intents": {ex.intent: raw["intents"][ex.intent]}}
            grammars[ex.intent] = Intents.from_dict(without_context(one))
        lists: dict[str, SlotList] = {
            n: TextSlotList.from_strings(
                [ex.text[s.start : s.end] for s in ex.slots if s.slot == n] or ["-"]
            )
            for n in CONTEXT_KINDS
        }
        r = recognize(ex.text, grammars[ex.intent], slot_lists=lists, language=language)
        out.append({k: v.value for k, v in r.entities.items()} if r else {})
    return out


def _same(pred: str, gold: Any) -> bool:
    """A canonical value equals the gold one (numbers as numbers; hassil reads "fifty-nine" as
    -59, so a sign the text never says is ignored)."""
    if isinstance(gold, (int, float)):
        try:
            return abs(float(pred)) == abs(float(gold))
        except ValueError:
            return False
    return pred == str(gold)


class Runner:
    """An exported model in onnxruntime, with the server's tokenizer, matcher and tables."""

    def __init__(self, path: str | Path) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.log_severity_level = 3
        self.sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        raw = self.sess.get_modelmeta().custom_metadata_map[METADATA_KEY]
        self.meta = ModelMetadata.from_json(raw)
        self.tok = self.meta.make_tokenizer()
        self.matcher = ContextMatcher(self.tok)
        self.values = SlotValues.from_dict(self.meta.values)
        self.takes_context = bool(self.meta.config.get(CONFIG_CONTEXT_DIM))
        self.start, self.trans = allowed_transitions(self.meta.slots)
        self.threshold = float(self.meta.calibration.get("threshold", 0.0) or 0.0)
        self.score = score_name(self.meta.calibration)

    def run(
        self, tokens: list[list[str]], contexts: list[HomeContext | None], batch: int = 128
    ) -> list[dict[str, Any]]:
        """Per utterance: intent, confidence, tags, the matches of its context."""
        out: list[dict[str, Any]] = []
        for s in range(0, len(tokens), batch):
            rows = tokens[s : s + batch]
            ids, lengths = pad_rows([self.tok.ids(r) for r in rows])
            feeds = {INPUT_IDS: ids, LENGTHS: lengths}
            matches = []
            feats = np.zeros((len(rows), ids.shape[1], CONTEXT_DIM), dtype=np.float32)
            for r, (toks, ctx) in enumerate(zip(rows, contexts[s : s + batch])):
                m = self.matcher.match(ctx, toks) if ctx is not None else []
                matches.append(m)
                feats[r, : len(toks)] = context_features(self.matcher, toks, ctx)
            if self.takes_context and any(contexts[s : s + batch]):
                feeds[CONTEXT] = feats
            il, sl = self.sess.run([INTENT_LOGITS, SLOT_LOGITS], feeds)
            for r, toks in enumerate(rows):
                p = softmax(il[r])
                tags = best_tags(log_softmax(sl[r, : len(toks)]), self.start, self.trans)
                named = [self.meta.slots[t] for t in tags.tolist()]
                if self.takes_context and matches[r]:  # as the server decodes
                    named = snap_tags(named, matches[r])
                out.append(
                    {
                        "intent": self.meta.intents[int(p.argmax())],
                        "confidence": float(p.max()),
                        "in_scope": float(in_scope_scores(il[r], self.score)),
                        "tags": named,
                        "matches": matches[r],
                    }
                )
        return out


def _f1(gold: list[set], pred: list[set]) -> float:
    tp = sum(len(g & p) for g, p in zip(gold, pred))
    ng, np_ = sum(len(g) for g in gold), sum(len(p) for p in pred)
    return 2 * tp / (ng + np_) if ng + np_ else 0.0


def evaluate(
    runner: Runner,
    examples: Sequence[Example],
    golds: Sequence[dict[str, Any]],
    pools: dict[str, list[str]] | None,
    seed: int = 13,
) -> dict[str, Any]:
    """Intent accuracy, slot F1, rejections, canonical accuracy per slot and entry resolution,
    with contexts drawn from `pools` (EVAL_SIM) or without any (pools None)."""
    tokens, gold_tags, contexts = [], [], []
    for i, ex in enumerate(examples):
        toks, tags = bio_tags(ex, runner.tok)
        tokens.append(toks)
        gold_tags.append(tags)
        spans = [(e.slot, e.start, e.end) for e in decode_bio(tags) if e.slot in CONTEXT_KINDS]
        rng = random.Random(seed * 1_000_003 + i)
        contexts.append(simulate(toks, spans, pools, rng, EVAL_SIM) if pools else None)
    res = runner.run(tokens, contexts)
    canon: dict[str, Counter[str]] = defaultdict(Counter)
    entries: Counter[str] = Counter()
    gold_sets, pred_sets = [], []
    for ex, toks, tags, r, gold, ctx in zip(examples, tokens, gold_tags, res, golds, contexts):
        offsets = runner.tok.tokenize(ex.text)  # the tokens of bio_tags, with their offsets
        pred_ents = decode_bio(r["tags"])
        gold_sets.append({(e.slot, e.start, e.end) for e in decode_bio(tags)})
        pred_sets.append({(e.slot, e.start, e.end) for e in pred_ents})
        found = runner.values.untagged(r["intent"], toks, r["tags"])
        marked = with_slots(r["tags"], found)
        implied = runner.values.implied_value(r["intent"], implied_words(toks, marked))
        implied_name = runner.values.implied_name(r["intent"])
        domain = implied if implied_name == DOMAIN else NONE
        if DOMAIN in gold or domain != NONE:
            canon[DOMAIN]["n"] += DOMAIN in gold
            canon[DOMAIN]["ok"] += DOMAIN in gold and domain == gold[DOMAIN]
            canon[DOMAIN]["extra"] += DOMAIN not in gold
        by_slot = {
            runner.values.slot_for(r["intent"], e.slot, toks[e.start : e.end]): e for e in pred_ents
        }
        for slot, start, end, _ in found:
            by_slot[slot] = Entity(slot, start, end)
        for slot, value in gold.items():
            if slot in FREE or slot == DOMAIN:
                continue
            e = by_slot.get(slot)
            span = toks[e.start : e.end] if e else []
            # as the server answers: the list value or number, else the words as said
            said = ex.text[offsets[e.start].start : offsets[e.end - 1].end] if e else ""
            pred = (runner.values.canonical(slot, span, domain) or said) if e else ""
            if e is None and slot == implied_name and implied != NONE:
                pred = implied  # a value the template implies without a word (zh volume_step)
            canon[slot]["n"] += 1
            canon[slot]["ok"] += _same(pred, value)
        if ctx is not None:
            for e in decode_bio(tags):
                if e.slot not in CONTEXT_KINDS:
                    continue
                entries["n"] += 1
                m = next((m for m in r["matches"] if (m.start, m.end) == (e.start, e.end)), None)
                ok = (
                    m is not None
                    and e.slot in m.entries
                    and (e.slot, e.start, e.end) in pred_sets[-1]
                )
                entries["ok"] += ok
    n = len(examples)
    values_kind = [i for i, ex in enumerate(examples) if ex.kind == "values"]
    reject = [r["in_scope"] < runner.threshold for r in res]
    out: dict[str, Any] = {
        "n": n,
        "intent_accuracy": float(
            np.mean([r["intent"] == ex.intent for r, ex in zip(res, examples)])
        ),
        "slot_f1": _f1(gold_sets, pred_sets),
        "reject_rate": float(np.mean(reject)),
        "canonical": {
            k: {"n": c["n"], "accuracy": c["ok"] / c["n"] if c["n"] else 0.0}
            | ({"implied_without_gold": c["extra"]} if k == DOMAIN else {})
            for k, c in sorted(canon.items())
        },
    }
    if values_kind:
        sub = values_kind
        out["values"] = {
            "n": len(sub),
            "intent_accuracy": float(
                np.mean([res[i]["intent"] == examples[i].intent for i in sub])
            ),
            "slot_f1": _f1([gold_sets[i] for i in sub], [pred_sets[i] for i in sub]),
            "reject_rate": float(np.mean([reject[i] for i in sub])),
        }
    if entries["n"]:
        out["entries"] = {"n": entries["n"], "resolved": entries["ok"] / entries["n"]}
    return out


def out_of_scope_rejection(runner: Runner, texts: Sequence[str]) -> float:
    """Share of out-of-scope sentences the threshold rejects (no context)."""
    toks = [[t.text for t in runner.tok.tokenize(x)] for x in texts]
    keep = [t for t in toks if t]
    res = runner.run(keep, [None] * len(keep))
    return float(np.mean([r["in_scope"] < runner.threshold for r in res]))


def split_pools(
    seed: int = 13, language: str = DEFAULT_LANGUAGE
) -> dict[str, dict[str, list[str]]]:
    """The value pools of each split, per context kind."""
    return {k: pool_values(v) for k, v in get_language(language).make_pools(seed, 0).items()}
