"""Pure decoding of one row of model outputs: intent scores, the best BIO tag path, slots.

numpy in, plain dataclasses out; no onnxruntime, no grpc. A stream's chunk is decoded with
the history of the chunks before it, so its slots may span chunks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from modelspec.calibration import MAX_SOFTMAX, in_scope_scores, score_name
from modelspec.context import Match, snap_tags
from modelspec.meta import ModelMetadata
from modelspec.names import C_N, H_N, INTENT_LOGITS, OUTPUTS, SLOT_LOGITS
from modelspec.tags import allowed_transitions, best_tags, decode_bio, log_softmax, softmax


class TokenOut(NamedTuple):
    """A token of the answer; char offsets are -1 for token-id input."""

    text: str
    id: int
    char_start: int = -1
    char_end: int = -1


@dataclass(frozen=True)
class SlotOut:
    """A decoded slot (char offsets -1 unless the whole span came from text)."""

    name: str
    value: str
    token_start: int
    token_end: int
    char_start: int
    char_end: int
    confidence: float
    canonical: str = ""  # the value Home Assistant acts on (server/values.py)
    entry_id: str = ""  # name, area, floor: the context entry it names
    entry_name: str = ""
    entry_ids: tuple[str, ...] = ()  # every entry it names (entry_id first)


@dataclass(slots=True)
class ParseOptions:
    """What the caller wants back (top_k 0: the server's default)."""

    top_k: int = 0
    steps: bool = False
    state: bool = False


@dataclass
class ParseResult:
    """What a Parse (or one stream chunk) produces."""

    model: str
    tokens: list[TokenOut]
    intent: tuple[str, float]
    top: list[tuple[str, float]]
    slots: list[SlotOut]
    tags: list[str]
    no_intent_threshold: float = 0.0
    no_intent_score: str = MAX_SOFTMAX  # what the threshold is compared with
    tag_names: list[str] = field(default_factory=list)
    outputs: np.ndarray | None = None  # [time, directions*hidden]
    slot_scores: np.ndarray | None = None  # [time, tags]
    h_n: np.ndarray | None = None  # [layers*directions, 1, hidden]
    c_n: np.ndarray | None = None
    total_steps: int = 0
    chunk_index: int = 0
    tag_conf: list[float] = field(default_factory=list)  # probability of each step's best tag
    no_intent: bool = False  # in_scope_score below the model's calibrated threshold
    in_scope_score: float = 0.0  # the model's no-intent score of this utterance
    version: str = ""  # the model version that answered
    implied: list[tuple[str, str]] = field(default_factory=list)  # (slot, value) no word carries


@dataclass
class History:
    """What a stream has seen: its tokens, their tags and confidences, and its text so far."""

    tokens: list[TokenOut] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    conf: list[float] = field(default_factory=list)
    text: str = ""


class Labels:
    """What decoding needs of a model: its intents, tags, BIO constraints and threshold."""

    def __init__(self, meta: ModelMetadata, default_top_k: int) -> None:
        self.intents = list(meta.intents)
        self.tags = list(meta.slots)
        self.tag_index = {t: i for i, t in enumerate(self.tags)}
        # Below this score the answer is "no intent" (calibrated at training).
        self.no_intent_threshold = float(meta.calibration.get("threshold", 0.0) or 0.0)
        self.no_intent_score = score_name(meta.calibration)
        self.tag_start, self.tag_trans = allowed_transitions(self.tags)
        self.default_top_k = default_top_k


def _slots(tokens: Sequence[TokenOut], tags: Sequence[str], conf: Sequence[float], text: str):
    out = []
    for ent in decode_bio(tags):
        span = tokens[ent.start : ent.end]
        first, last = span[0], span[-1]
        if all(t.char_start >= 0 for t in span):  # the whole span came from text
            value, start, end = (
                text[first.char_start : last.char_end],
                first.char_start,
                last.char_end,
            )
        else:
            value, start, end = " ".join(t.text for t in span), -1, -1
        score = sum(conf[ent.start : ent.end]) / (ent.end - ent.start)
        out.append(SlotOut(ent.slot, value, ent.start, ent.end, start, end, score))
    return out


def decode(
    model: str,
    labels: Labels,
    tokens: list[TokenOut],
    out: dict[str, np.ndarray],
    opts: ParseOptions,
    text: str,
    history: History | None = None,
    matches: Sequence[Match] = (),
) -> ParseResult:
    """One row of model outputs as a ParseResult; with a history, slots span earlier chunks.
    `matches` (the context's, over the whole utterance so far) snap the names, areas and floors
    of this row's tags to the context's spans (modelspec.context.snap_tags)."""
    past = history or History()
    logits = out[INTENT_LOGITS][0]
    probs = softmax(logits)
    k = max(1, min(opts.top_k or labels.default_top_k, len(labels.intents)))
    order = np.argsort(-probs)[:k].tolist()
    plist = probs.tolist()
    top = [(labels.intents[i], plist[i]) for i in order]
    n = len(tokens)
    logp = log_softmax(out[SLOT_LOGITS][0, :n])
    scores = np.exp(logp)
    start = labels.tag_start
    if past.tags:  # a stream's chunk continues the tags of the chunks before it
        start = labels.tag_trans[labels.tag_index[past.tags[-1]]]
    best = best_tags(logp, start, labels.tag_trans)
    tags = [labels.tags[i] for i in best.tolist()]
    offset = len(past.tokens)
    inside = [
        Match(m.start - offset, m.end - offset, m.entries)
        for m in matches
        if m.start >= offset and m.end <= offset + n
    ]
    snapped = snap_tags(tags, inside) if inside else tags
    if snapped != tags and all(t in labels.tag_index for t in snapped):
        tags = snapped
        best = np.asarray([labels.tag_index[t] for t in tags])
    conf = scores[np.arange(n), best].tolist()
    all_tokens = past.tokens + tokens
    slots = _slots(all_tokens, past.tags + tags, past.conf + conf, text)
    in_scope = (
        top[0][1]  # the answer's confidence, exactly
        if labels.no_intent_score == MAX_SOFTMAX
        else float(in_scope_scores(logits, labels.no_intent_score))
    )
    no_intent = in_scope < labels.no_intent_threshold
    result = ParseResult(
        model,
        tokens,
        ("", top[0][1]) if no_intent else top[0],
        top,
        slots,
        tags,
        no_intent_threshold=labels.no_intent_threshold,
        no_intent_score=labels.no_intent_score,
        tag_names=labels.tags,
        total_steps=len(all_tokens),
        tag_conf=conf,
        no_intent=no_intent,
        in_scope_score=in_scope,
    )
    if opts.steps:
        result.outputs = out[OUTPUTS][0, :n]
        result.slot_scores = scores.astype(np.float32)
    if opts.state:
        result.h_n = out[H_N]
        result.c_n = out.get(C_N)
    return result
