"""Training: data -> IntentSlotRNN, with early stopping, gradient clipping and a test report."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from export.context_sim import EVAL_SIM, TRAIN_SIM, SimConfig, context_features, pool_values
from export.context_sim import simulate as simulate_context
from export.data import DataError, Example, bio_tags, check_labels
from export.languages import DEFAULT_LANGUAGE, get_language
from export.metrics import evaluate
from export.model import IntentSlotRNN, LogitMean, ModelConfig
from modelspec.batch import pad_rows
from modelspec.context import CONTEXT_KINDS, ContextMatcher
from modelspec.names import (
    INTENT_LOGITS,
    NUM,
    OUTSIDE_TAG,
    SLOT_LOGITS,
    SPECIAL_TOKENS,
    UNK_ID,
    has_cell_state,
    output_names,
)
from modelspec.tags import allowed_transitions, best_tags, decode_bio
from modelspec.tokenizer import Tokenizer, TokenizerRules

CHECKPOINT_FORMAT = "rnnserve-checkpoint"
CHECKPOINT_VERSION = 1
IGNORE_TAG = -100  # a tag id the slot loss skips: padding, and rows trained on their intent only


@dataclass(frozen=True)
class TrainConfig:
    """Training hyper-parameters (architecture lives in ModelConfig)."""

    seed: int = 13  # the data's pools and out-of-scope sentences; the rest unless train_seed
    train_seed: int | None = None  # initial weights, batch order, dropout (None: seed)
    epochs: int = 30
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.0
    clip_norm: float = 1.0
    patience: int = 6
    word_dropout: float = 0.03
    slot_word_dropout: float = 0.35
    slot_span_dropout: float = 0.35  # a whole slot value to <unk> (unseen multi-word names)
    # A word of a name, area or floor (not dropped) to a random vocabulary word: known words in
    # unseen names ("front music room").
    slot_word_swap: float = 0.0
    # Words inside these free-text slots do not count towards the vocabulary.
    vocab_skip_slots: tuple[str, ...] = ("message", "search_query", "item", "conversation_command")
    extra_slot_loss: bool = False  # extra templates' slot tags in the loss (off: intent only)
    min_count: int = 12  # words seen fewer times in training stay <unk> (rare words mislead)
    out_of_scope: int = 4000  # generated out-of-scope sentences trained towards uniform intents
    oos_weight: float = 0.5
    context_share: float = 1 - TRAIN_SIM.p_none  # training sentences that get a simulated home
    # Distillation (with a teacher): KL towards its intent and tag distributions on the rows
    # that get no context, at this weight and temperature; out-of-scope rows only if asked.
    distill_weight: float = 1.0
    distill_temperature: float = 1.0
    distill_out_of_scope: bool = False
    distill_online: bool = False  # run the teacher each batch on the student's (dropped) input
    distill_mix: bool = False  # the KL takes a share of those rows' cross-entropy (not added)
    threads: int = 1
    progress: bool = True
    language: str = DEFAULT_LANGUAGE  # tokenizer rules and out-of-scope sentences

    @property
    def weights_seed(self) -> int:
        """The seed of the initial weights, the batch order and the dropout."""
        return self.seed if self.train_seed is None else self.train_seed


@dataclass
class Labels:
    """Intent names and BIO tag names, in id order."""

    intents: list[str]
    tags: list[str]

    @classmethod
    def from_examples(cls, examples: Sequence[Example]) -> Labels:
        """Labels seen in the training examples (sorted, `O` first)."""
        intents = sorted({e.intent for e in examples})
        slots = sorted({s.slot for e in examples for s in e.slots})
        tags = [OUTSIDE_TAG] + [f"{p}-{s}" for s in slots for p in ("B", "I")]
        return cls(intents, tags)

    @property
    def slot_names(self) -> list[str]:
        """The slot names (without B-/I-)."""
        return sorted({t[2:] for t in self.tags if t != OUTSIDE_TAG})


@dataclass
class Encoded:
    """A split as id arrays (ragged: one list per example)."""

    ids: list[list[int]]
    tags: list[list[int]]
    intents: list[int]
    slot_mask: list[list[bool]]
    examples: list[Example]
    spans: list[list[int]] = field(default_factory=list)  # per token: slot span index or -1
    tokens: list[list[str]] = field(default_factory=list)  # token texts
    gold: list[list[tuple[str, int, int]]] = field(default_factory=list)  # name/area/floor slots


def encode(examples: Sequence[Example], tok: Tokenizer, labels: Labels, source: str) -> Encoded:
    """Tokenize and map labels to ids; raise DataError on unknown labels or empty text."""
    check_labels(examples, labels.intents, labels.slot_names, source)
    tag_index = {t: i for i, t in enumerate(labels.tags)}
    intent_index = {n: i for i, n in enumerate(labels.intents)}
    enc = Encoded([], [], [], [], list(examples))
    for n, ex in enumerate(examples, 1):
        try:
            tokens, tags = bio_tags(ex, tok)
        except DataError as exc:
            raise DataError(f"{source}: example {n}: {exc}") from None
        enc.ids.append(tok.ids(tokens))
        enc.tags.append([tag_index[t] for t in tags])
        enc.intents.append(intent_index[ex.intent])
        enc.slot_mask.append(
            [t != OUTSIDE_TAG and tok.token_key(w) != NUM for w, t in zip(tokens, tags)]
        )
        enc.spans.append(_span_index(tags))
        enc.tokens.append(tokens)
        enc.gold.append(
            [(e.slot, e.start, e.end) for e in decode_bio(tags) if e.slot in CONTEXT_KINDS]
        )
    return enc


def _vocab_text(ex: Example, skip: Sequence[str]) -> str:
    """The text of an example with the values of `skip` slots cut out (free text such as a
    broadcast message says nothing about the words' roles elsewhere)."""
    text = ex.text
    for span in sorted((s for s in ex.slots if s.slot in skip), key=lambda s: -s.start):
        text = text[: span.start] + " " + text[span.end :]
    return text


def _span_index(tags: Sequence[str]) -> list[int]:
    """Per token: the index of the slot value it belongs to, or -1 outside any."""
    out, k = [], -1
    for t in tags:
        if t.startswith("B-"):
            k += 1
        out.append(k if t != OUTSIDE_TAG else -1)
    return out


def _batches(enc: Encoded, batch_size: int, rng: random.Random | None) -> list[list[int]]:
    """Index batches of similar length (shuffled when rng is given)."""
    order = sorted(range(len(enc.ids)), key=lambda i: len(enc.ids[i]))
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if rng is not None:
        rng.shuffle(batches)
    return batches


@dataclass
class ContextPlan:
    """How rows get context features: the matcher, each split's values, the draw, a seed."""

    matcher: ContextMatcher
    pools: dict[str, list[str]]
    sim: SimConfig
    seed: int = 0
    rng: random.Random | None = None  # training: one stream; evaluation: one seed per row

    def rows(self, enc: Encoded, idx: Sequence[int]) -> list[np.ndarray]:
        """Context features of the rows `idx`."""
        return self.draw(enc, idx)[0]

    def draw(self, enc: Encoded, idx: Sequence[int]) -> tuple[list[np.ndarray], list[bool]]:
        """Context features of the rows `idx`, and per row whether it drew no context."""
        out, none = [], []
        for i in idx:
            rng = self.rng or random.Random(self.seed * 1_000_003 + i)
            ctx = simulate_context(enc.tokens[i], enc.gold[i], self.pools, rng, self.sim)
            out.append(context_features(self.matcher, enc.tokens[i], ctx))
            none.append(ctx is None)
        return out, none


def _pad_context(feats: list[np.ndarray]) -> torch.Tensor:
    """Rows of [T_i, C] features padded with zeros to [B, T, C]."""
    width = max(len(f) for f in feats)
    out = np.zeros((len(feats), width, feats[0].shape[1]), dtype=np.float32)
    for r, f in enumerate(feats):
        out[r, : len(f)] = f
    return torch.from_numpy(out)


def _tensors(
    enc: Encoded,
    idx: Sequence[int],
    dropout: tuple[float, float, float] | None,
    rng: np.random.Generator | None,
    plan: ContextPlan | None = None,
    swap: tuple[float, np.ndarray, int] | None = None,
) -> tuple[torch.Tensor, ...]:
    """Padded ids, lengths, tags, intents (and context features with a plan) of the rows
    `idx`. With `dropout` = (word, slot word, whole slot value) probabilities and an rng,
    words turn into `<unk>`; with `swap` = (probability, which tag ids it applies to,
    vocabulary size), words under those tags that stay turn into random vocabulary words."""
    rows, row_tags = [], []
    for i in idx:
        row, tag = np.asarray(enc.ids[i]), np.asarray(enc.tags[i])
        if dropout is not None and rng is not None:
            mask = np.asarray(enc.slot_mask[i])
            p = np.where(mask, dropout[1], dropout[0])
            drop = rng.random(len(row)) < p
            span = np.asarray(enc.spans[i])
            if span.size and span.max() >= 0:
                whole = rng.random(int(span.max()) + 1) < dropout[2]
                drop |= mask & (span >= 0) & whole[np.maximum(span, 0)]
            row = np.where(drop, UNK_ID, row)
            if swap is not None:
                p_swap, swappable, vocab = swap
                tag_ids = np.maximum(np.asarray(enc.tags[i]), 0)
                hit = ~drop & swappable[tag_ids] & (rng.random(len(row)) < p_swap)
                words = rng.integers(len(SPECIAL_TOKENS), vocab, len(row))
                row = np.where(hit, words, row)
        rows.append(row)
        row_tags.append(tag)
    ids, lengths = pad_rows(rows)
    tags, _ = pad_rows(row_tags, IGNORE_TAG)
    out = (
        torch.from_numpy(ids),
        torch.from_numpy(lengths),
        torch.from_numpy(tags),
        torch.tensor([enc.intents[i] for i in idx]),
    )
    return out + ((_pad_context(plan.rows(enc, idx)),) if plan is not None else ())


def encode_out_of_scope(texts: Sequence[str], tok: Tokenizer) -> Encoded:
    """Out-of-scope sentences: no slots (all `O`) and intent -1 (trained towards uniform)."""
    enc = Encoded([], [], [], [], [])
    for text in texts:
        tokens = [t.text for t in tok.tokenize(text)]
        if not tokens:
            continue
        enc.ids.append(tok.ids(tokens))
        enc.tags.append([0] * len(tokens))
        enc.intents.append(-1)
        enc.slot_mask.append([False] * len(tokens))
        enc.spans.append([-1] * len(tokens))
        enc.tokens.append(tokens)
        enc.gold.append([])
        enc.examples.append(Example(text, ""))
    return enc


def _concat(a: Encoded, b: Encoded) -> Encoded:
    return Encoded(
        a.ids + b.ids,
        a.tags + b.tags,
        a.intents + b.intents,
        a.slot_mask + b.slot_mask,
        a.examples + b.examples,
        a.spans + b.spans,
        a.tokens + b.tokens,
        a.gold + b.gold,
    )


def negatives(splits: dict[str, list[Example]], cfg: TrainConfig) -> list[str]:
    """The generated out-of-scope training sentences (none equal to an in-scope text)."""
    if cfg.out_of_scope <= 0:
        return []
    lang = get_language(cfg.language)
    pools = lang.make_pools(cfg.seed, 0)["train"]
    known = {e.text.lower() for exs in splits.values() for e in exs}
    texts = lang.out_of_scope(pools, random.Random(cfg.seed + 7), cfg.out_of_scope)
    return [t for t in texts if t.lower() not in known]


def forward_by_name(
    model: IntentSlotRNN,
    ids: torch.Tensor,
    lengths: torch.Tensor,
    context: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """The model's outputs on a padded batch, from zero initial states, keyed by output name."""
    h0 = model.zero_state(len(ids))
    c0 = model.zero_state(len(ids)) if has_cell_state(model.config.cell) else None
    out = model(ids, lengths, h0, c0, context)
    return dict(zip(output_names(model.config.cell), out, strict=True))


def _intent_loss(logits: torch.Tensor, intents: torch.Tensor, oos_weight: float) -> torch.Tensor:
    """Cross-entropy on in-scope rows; cross-entropy to the uniform distribution on rows -1."""
    return _intent_rows(logits, intents, oos_weight).mean()


def _intent_rows(logits: torch.Tensor, intents: torch.Tensor, oos_weight: float) -> torch.Tensor:
    """The intent loss of each row (see _intent_loss)."""
    logp = torch.log_softmax(logits, -1)
    inside = intents >= 0
    per_row = torch.zeros(len(intents))
    if inside.any():
        per_row[inside] = -logp[inside].gather(1, intents[inside, None]).squeeze(1)
    if (~inside).any():
        per_row[~inside] = -oos_weight * logp[~inside].mean(-1)
    return per_row


def _loss(
    out: dict[str, torch.Tensor], tags: torch.Tensor, intents: torch.Tensor, oos_weight: float
) -> torch.Tensor:
    """The intent loss plus the slot cross-entropy over tags that are not IGNORE_TAG."""
    loss = _intent_loss(out[INTENT_LOGITS], intents, oos_weight)
    if bool((tags != IGNORE_TAG).any()):  # a batch of masked rows only has no slot term
        slots = out[SLOT_LOGITS]
        loss = loss + nn.functional.cross_entropy(
            slots.reshape(-1, slots.shape[-1]), tags.reshape(-1), ignore_index=IGNORE_TAG
        )
    return loss


@dataclass
class Teacher:
    """A teacher's intent and tag distributions on the training rows, at a temperature, in the
    student's label order. The teacher reads each row in its own vocabulary with no context:
    the clean sentence, run once for all rows (`precompute`), or, online, each batch's rows
    as the student reads them (the student's word dropout applied)."""

    model: IntentSlotRNN
    ids: list[list[int]]  # per training row, the teacher's vocabulary ids of its tokens
    intent_cols: torch.Tensor
    tag_cols: torch.Tensor
    temperature: float
    cache: tuple[torch.Tensor, list[torch.Tensor]] | None = None  # intents [N, I], tags [T_i, S]
    seconds: float = 0.0  # time spent running the teacher

    def batch(
        self, idx: Sequence[int], ids: torch.Tensor, lengths: torch.Tensor, enc: Encoded
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Intent [B, I] and tag [B, T, S] distributions of the rows `idx`, whose student
        input is `ids` (used online only; zero-padded past each row's length)."""
        if self.cache is not None:
            rows = [self.cache[1][i] for i in idx]
            tags = torch.zeros(len(rows), ids.shape[1], rows[0].shape[1])
            for r, t in enumerate(rows):
                tags[r, : len(t)] = t
            return self.cache[0][list(idx)], tags
        own, _ = pad_rows([np.asarray(self.ids[i]) for i in idx])
        clean, _ = pad_rows([np.asarray(enc.ids[i]) for i in idx])
        dropped = (ids == UNK_ID) & (torch.from_numpy(clean) != UNK_ID)
        intents, tags = self._run(torch.where(dropped, UNK_ID, torch.from_numpy(own)), lengths)
        inside = torch.arange(ids.shape[1])[None, :] < lengths[:, None]
        return intents, tags * inside[..., None]

    def precompute(self, batch_size: int = 256) -> None:
        """Run the teacher once on every row's clean sentence and keep the results."""
        intents = torch.zeros(len(self.ids), len(self.intent_cols))
        tags: list[torch.Tensor] = [torch.zeros(0)] * len(self.ids)
        order = sorted(range(len(self.ids)), key=lambda i: len(self.ids[i]))
        for n in range(0, len(order), batch_size):
            idx = order[n : n + batch_size]
            ids, lengths = pad_rows([np.asarray(self.ids[i]) for i in idx])
            intents[idx], slots = self._run(torch.from_numpy(ids), torch.from_numpy(lengths))
            for r, i in enumerate(idx):
                tags[i] = slots[r, : int(lengths[r])].clone()
        self.cache = (intents, tags)

    def _run(self, ids: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        start = time.perf_counter()
        self.model.eval()
        with torch.no_grad():
            out = forward_by_name(self.model, ids, lengths)
        t = self.temperature
        result = (
            _in_student_order(out[INTENT_LOGITS], self.intent_cols, t),
            _in_student_order(out[SLOT_LOGITS], self.tag_cols, t),
        )
        self.seconds += time.perf_counter() - start
        return result


def _label_map(teacher: Sequence[str], student: Sequence[str]) -> torch.Tensor:
    """For each student label, its teacher index (-1 where the teacher lacks it)."""
    index = {name: i for i, name in enumerate(teacher)}
    return torch.tensor([index.get(name, -1) for name in student])


def _in_student_order(logits: torch.Tensor, columns: torch.Tensor, t: float) -> torch.Tensor:
    """Softmax(logits / t) over the teacher's labels, moved to the student's label order (a
    label the teacher lacks gets 0, one the student lacks is dropped) and renormalised."""
    p = torch.softmax(logits / t, -1)
    out = torch.where(columns >= 0, p[..., columns.clamp(min=0)], torch.zeros(()))
    return out / out.sum(-1, keepdim=True).clamp(min=1e-12)


def teacher_of(checkpoints: Sequence[Checkpoint]) -> Checkpoint:
    """One teacher from several checkpoints of one vocabulary, labels and architecture: the
    mean of their logits (LogitMean); ValueError when they differ."""
    first = checkpoints[0]
    for c in checkpoints[1:]:
        if c.tokenizer.to_dict() != first.tokenizer.to_dict() or c.labels != first.labels:
            raise ValueError("teachers must share their vocabulary and labels")
    if len(checkpoints) == 1:
        return first
    model = LogitMean([c.model for c in checkpoints]).eval()
    return replace(first, model=model)


def make_teacher(
    checkpoint: Checkpoint, enc: Encoded, labels: Labels, temperature: float, online: bool
) -> Teacher:
    """A Teacher for the rows of `enc` (labels matched by name); run at once unless online."""
    teacher = Teacher(
        checkpoint.model,
        [checkpoint.tokenizer.ids(tokens) for tokens in enc.tokens],
        _label_map(checkpoint.labels.intents, labels.intents),
        _label_map(checkpoint.labels.tags, labels.tags),
        temperature,
    )
    if not online:
        teacher.precompute()
    return teacher


def _kl(logits: torch.Tensor, target: torch.Tensor, t: float) -> torch.Tensor:
    """KL(target || softmax(logits / t)) per row of the last axis, times t^2 (Hinton et al.)."""
    logq = torch.log_softmax(logits / t, -1)
    return nn.functional.kl_div(logq, target, reduction="none").sum(-1) * t * t


def _distilled(
    keep: torch.Tensor, tags: torch.Tensor, intents: torch.Tensor, cfg: TrainConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows whose intent is distilled (`keep`, in scope only unless distill_out_of_scope)
    and the tokens whose tag is (every token of `keep` with a gold tag)."""
    rows = keep if cfg.distill_out_of_scope else keep & (intents >= 0)
    return rows, keep[:, None] & (tags != IGNORE_TAG)


def _distill_loss(
    out: dict[str, torch.Tensor],
    targets: tuple[torch.Tensor, torch.Tensor],
    keep: torch.Tensor,
    tags: torch.Tensor,
    intents: torch.Tensor,
    cfg: TrainConfig,
) -> torch.Tensor:
    """The mean intent KL over the rows `keep` (in scope only, unless distill_out_of_scope)
    plus the mean tag KL over their tokens that have a gold tag."""
    t = cfg.distill_temperature
    rows, tokens = _distilled(keep, tags, intents, cfg)
    loss = torch.zeros(())
    if rows.any():
        loss = loss + _kl(out[INTENT_LOGITS][rows], targets[0][rows], t).mean()
    if tokens.any():
        loss = loss + _kl(out[SLOT_LOGITS][tokens], targets[1][tokens], t).mean()
    return loss


def _mixed_loss(
    out: dict[str, torch.Tensor],
    targets: tuple[torch.Tensor, torch.Tensor],
    keep: torch.Tensor,
    tags: torch.Tensor,
    intents: torch.Tensor,
    cfg: TrainConfig,
) -> torch.Tensor:
    """_loss, where each distilled row (and each of its tokens) weighs (1 - w) of its
    cross-entropy plus w of its KL to the teacher (w = distill_weight): the rows without a
    context weigh as much as without a teacher (the distilled rows as in _distill_loss)."""
    w, t = cfg.distill_weight, cfg.distill_temperature
    rows, tokens = _distilled(keep, tags, intents, cfg)
    ce = _intent_rows(out[INTENT_LOGITS], intents, cfg.oos_weight)
    kl = torch.zeros_like(ce)
    if rows.any():
        kl[rows] = _kl(out[INTENT_LOGITS][rows], targets[0][rows], t)
    loss = torch.where(rows, (1 - w) * ce + w * kl, ce).mean()
    valid = tags != IGNORE_TAG
    if valid.any():
        slots = out[SLOT_LOGITS]
        ce_tok = nn.functional.cross_entropy(
            slots.reshape(-1, slots.shape[-1]),
            tags.reshape(-1),
            ignore_index=IGNORE_TAG,
            reduction="none",
        ).view_as(tags)
        kl_tok = torch.zeros_like(ce_tok)
        kl_tok[tokens] = _kl(slots[tokens], targets[1][tokens], t)
        mixed = torch.where(tokens, (1 - w) * ce_tok + w * kl_tok, ce_tok)
        loss = loss + mixed.sum() / valid.sum()
    return loss


def predict(
    model: IntentSlotRNN,
    enc: Encoded,
    tags_order: Sequence[str],
    batch_size: int = 256,
    plan: ContextPlan | None = None,
) -> tuple[list[int], list[list[int]]]:
    """Intent ids and tag ids for every example (eval mode, no grad), tags decoded as the
    server decodes them: the best path that obeys BIO. With a plan, rows get contexts."""
    model.eval()
    start, trans = allowed_transitions(tags_order)
    intents: list[int] = [0] * len(enc.ids)
    tags: list[list[int]] = [[] for _ in enc.ids]
    with torch.no_grad():
        for idx in _batches(enc, batch_size, None):
            ids, lengths, _, _, *ctx = _tensors(enc, idx, None, None, plan)
            out = forward_by_name(model, ids, lengths, ctx[0] if ctx else None)
            ip = out[INTENT_LOGITS].argmax(-1).tolist()
            logp = torch.log_softmax(out[SLOT_LOGITS], -1).numpy()
            for r, i in enumerate(idx):
                intents[i] = ip[r]
                tags[i] = best_tags(logp[r, : int(lengths[r])], start, trans).tolist()
    return intents, tags


def score(
    model: IntentSlotRNN, enc: Encoded, labels: Labels, plan: ContextPlan | None = None
) -> dict[str, Any]:
    """Intent accuracy and entity F1 of the model on an encoded split (with contexts drawn
    by `plan` when given)."""
    pi, pt = predict(model, enc, labels.tags, plan=plan)
    return evaluate(
        [labels.intents[i] for i in enc.intents],
        [labels.intents[i] for i in pi],
        [[labels.tags[t] for t in row] for row in enc.tags],
        [[labels.tags[t] for t in row] for row in pt],
        [e.kind for e in enc.examples],
    )


@dataclass
class TrainingData:
    """What the model is trained and scored on: the vocabulary, the labels and every split
    encoded (training with the out-of-scope rows appended)."""

    tokenizer: Tokenizer
    labels: Labels
    encoded: dict[str, Encoded]
    language: str = DEFAULT_LANGUAGE
    pools: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # per split, per kind

    def plan(self, split: str, sim: SimConfig, seed: int, stream: bool = False) -> ContextPlan:
        """Contexts for a split's rows from that split's values (pools drawn with `seed`)."""
        if not self.pools:
            pools = get_language(self.language).make_pools(seed, 0)
            self.pools = {k: pool_values(v) for k, v in pools.items()}
        rng = random.Random(seed) if stream else None
        return ContextPlan(ContextMatcher(self.tokenizer), self.pools[split], sim, seed, rng)


def prepare(splits: dict[str, list[Example]], cfg: TrainConfig) -> TrainingData:
    """Build the vocabulary (training texts and out-of-scope sentences) and the labels (training
    examples), then encode every split; DataError on a label or text the training data lacks."""
    oos = negatives(splits, cfg)
    vocab_texts = [_vocab_text(e, cfg.vocab_skip_slots) for e in splits["train"]]
    rules = get_language(cfg.language).tokenizer_rules
    tok = Tokenizer.build(vocab_texts + oos, min_count=cfg.min_count, rules=rules)
    labels = Labels.from_examples(splits["train"])
    enc = {name: encode(exs, tok, labels, name) for name, exs in splits.items()}
    if not cfg.extra_slot_loss:  # extra templates teach phrasing (intent) only
        for n, ex in enumerate(enc["train"].examples):
            if ex.template.startswith("extra:"):
                enc["train"].tags[n] = [IGNORE_TAG] * len(enc["train"].tags[n])
    enc["train"] = _concat(enc["train"], encode_out_of_scope(oos, tok))
    return TrainingData(tok, labels, enc, cfg.language)


def build_model(data: TrainingData, arch: dict[str, Any]) -> IntentSlotRNN:
    """A freshly initialised network sized for the vocabulary and labels (from torch's RNG)."""
    return IntentSlotRNN(
        ModelConfig(
            vocab_size=data.tokenizer.vocab_size,
            num_intents=len(data.labels.intents),
            num_slots=len(data.labels.tags),
            **arch,
        )
    )


def _train_epoch(
    model: IntentSlotRNN,
    data: TrainingData,
    cfg: TrainConfig,
    step: Callable[[torch.Tensor], None],
    rng: random.Random,
    nprng: np.random.Generator,
    desc: str,
    teacher: Teacher | None = None,
) -> float:
    """One pass over shuffled batches with word dropout; the sum of the batch losses. With a
    teacher, rows without a context also learn its distributions (`_distill_loss` added to the
    loss, or `_mixed_loss` with distill_mix)."""
    model.train()
    total = 0.0
    dropout = (cfg.word_dropout, cfg.slot_word_dropout, cfg.slot_span_dropout)
    sim = replace(TRAIN_SIM, p_none=1 - cfg.context_share)
    plan = data.plan("train", sim, cfg.seed, stream=True) if model.config.context_dim else None
    bar = tqdm(
        _batches(data.encoded["train"], cfg.batch_size, rng),
        desc=desc,
        disable=not cfg.progress,
        leave=False,
        unit="batch",
    )
    swap = None
    if cfg.slot_word_swap > 0:
        kinds = {f"{p}-{k}" for k in CONTEXT_KINDS for p in ("B", "I")}
        swappable = np.asarray([t in kinds for t in data.labels.tags], dtype=bool)
        swap = (cfg.slot_word_swap, swappable, data.tokenizer.vocab_size)
    for idx in bar:
        ids, lengths, tags, intents = _tensors(
            data.encoded["train"], idx, dropout, nprng, swap=swap
        )
        context, none = None, [True] * len(idx)
        if plan is not None:
            feats, none = plan.draw(data.encoded["train"], idx)
            context = _pad_context(feats)
        out = forward_by_name(model, ids, lengths, context)
        if teacher is None:
            loss = _loss(out, tags, intents, cfg.oos_weight)
        else:
            keep = torch.tensor(none)
            targets = teacher.batch(idx, ids, lengths, data.encoded["train"])
            if cfg.distill_mix:
                loss = _mixed_loss(out, targets, keep, tags, intents, cfg)
            else:
                loss = _loss(out, tags, intents, cfg.oos_weight)
                distill = _distill_loss(out, targets, keep, tags, intents, cfg)
                loss = loss + cfg.distill_weight * distill
        step(loss)
        total += loss.item()
        bar.set_postfix(loss=f"{loss.item():.3f}")
    return total


def fit(
    model: IntentSlotRNN,
    data: TrainingData,
    cfg: TrainConfig,
    log: Callable[[str], None],
    teacher: Teacher | None = None,
) -> tuple[list[dict[str, float]], int]:
    """The epoch loop: AdamW with a one-cycle schedule and gradient clipping, scored on
    validation after each epoch, stopped after `patience` epochs without gain. Leaves the
    best epoch's weights loaded (eval mode); returns the history and the best epoch."""
    rng = random.Random(cfg.weights_seed)
    nprng = np.random.default_rng(cfg.weights_seed)
    train_enc, val_enc = data.encoded["train"], data.encoded["val"]
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(train_enc.ids) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr, epochs=cfg.epochs, steps_per_epoch=steps_per_epoch
    )

    def step(loss: torch.Tensor) -> None:
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_norm)
        opt.step()
        sched.step()

    best, best_state, best_epoch, bad = -1.0, None, 0, 0
    history = []
    for epoch in range(1, cfg.epochs + 1):
        total = _train_epoch(model, data, cfg, step, rng, nprng, f"epoch {epoch}", teacher)
        loss = total / steps_per_epoch
        val = score(model, val_enc, data.labels)
        row = {
            "epoch": epoch,
            "loss": loss,
            "val_intent_accuracy": val["intent_accuracy"],
            "val_slot_f1": val["slot_f1"],
        }
        line = (
            f"epoch {epoch:2d}  loss {loss:.4f}  val intent "
            f"{val['intent_accuracy']:.4f}  val slot F1 {val['slot_f1']:.4f}"
        )
        combined = (val["intent_accuracy"] + val["slot_f1"]) / 2
        if model.config.context_dim:  # choose on validation with and without context
            vc = score(model, val_enc, data.labels, data.plan("val", EVAL_SIM, cfg.seed))
            row |= {"val_context_intent_accuracy": vc["intent_accuracy"]}
            row |= {"val_context_slot_f1": vc["slot_f1"]}
            line += f"  with context {vc['intent_accuracy']:.4f} / {vc['slot_f1']:.4f}"
            combined = (combined + (vc["intent_accuracy"] + vc["slot_f1"]) / 2) / 2
        history.append(row)
        log(line)
        if combined > best:
            best, best_epoch, bad = combined, epoch, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            bad += 1
            if bad >= cfg.patience:
                log(f"early stop: no validation gain for {cfg.patience} epochs")
                break
    assert best_state is not None
    model.load_state_dict(best_state)
    model.eval()
    return history, best_epoch


@dataclass
class TrainResult:
    """What training produced."""

    model: IntentSlotRNN
    tokenizer: Tokenizer
    labels: Labels
    metrics: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    best_epoch: int = 0


def train(
    splits: dict[str, list[Example]],
    arch: dict[str, Any],
    cfg: TrainConfig,
    log: Callable[[str], None] = print,
    teacher: Checkpoint | None = None,
) -> TrainResult:
    """Train on splits['train'], early-stop on splits['val'], report on splits['test']; with a
    teacher checkpoint, distil it into the rows trained without a context."""
    torch.manual_seed(cfg.weights_seed)
    torch.set_num_threads(cfg.threads)
    start = time.perf_counter()
    data = prepare(splits, cfg)
    model = build_model(data, arch)
    taught = None
    if teacher is not None:
        taught = make_teacher(
            teacher, data.encoded["train"], data.labels, cfg.distill_temperature, cfg.distill_online
        )
    history, best_epoch = fit(model, data, cfg, log, taught)
    if taught is not None:
        log(f"the teacher ran for {taught.seconds:.1f} s")
    metrics = {name: score(model, data.encoded[name], data.labels) for name in ("val", "test")}
    if model.config.context_dim:
        for name in ("val", "test"):
            plan = data.plan(name, EVAL_SIM, cfg.seed)
            metrics[f"{name}_context"] = score(model, data.encoded[name], data.labels, plan)
    return TrainResult(
        model,
        data.tokenizer,
        data.labels,
        metrics,
        history,
        time.perf_counter() - start,
        best_epoch,
    )


def save_checkpoint(path: str | Path, result: TrainResult, extra: dict[str, Any]) -> None:
    """state_dict + config + vocab + labels + metrics; never a pickled module."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "config": result.model.config.to_dict(),
            "state_dict": result.model.state_dict(),
            "tokenizer": result.tokenizer.to_dict(),
            "intents": result.labels.intents,
            "tags": result.labels.tags,
            "metrics": result.metrics,
            "training": {
                **extra,
                "seconds": result.seconds,
                "best_epoch": result.best_epoch,
                "history": result.history,
            },
        },
        path,
    )


@dataclass
class Checkpoint:
    """A loaded checkpoint."""

    model: IntentSlotRNN
    tokenizer: Tokenizer
    labels: Labels
    metrics: dict[str, Any]
    training: dict[str, Any]


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Load a checkpoint written by save_checkpoint (weights_only: no code is unpickled)."""
    data = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not an rnnserve checkpoint")
    model = IntentSlotRNN(ModelConfig.from_dict(data["config"]))
    model.load_state_dict(data["state_dict"])
    model.eval()
    t = data["tokenizer"]
    tok = Tokenizer(t["vocab"], TokenizerRules.from_dict(t["rules"]))
    return Checkpoint(
        model,
        tok,
        Labels(list(data["intents"]), list(data["tags"])),
        data.get("metrics", {}),
        data.get("training", {}),
    )


def train_config_dict(cfg: TrainConfig) -> dict[str, Any]:
    """TrainConfig as a dict for the report."""
    return asdict(cfg)
