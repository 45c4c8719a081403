"""Simulated homes for training and evaluating the context input.

A training utterance gets a context as a caller would send it: its true names, areas and floors
present most of the time (sometimes as an alias of an entry registered under another name),
other values of the split's pools as distractors, now and then a misleading entry (a word of a
name registered as an area, a slot's text under another kind, a word outside the slots as a
name), and sometimes no context at all, so the model uses the features without leaning on them.
The features come from the same matcher the server runs (modelspec/context.py).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from export.pools import Pools
from modelspec.context import (
    AREA,
    CONTEXT_DIM,
    CONTEXT_KINDS,
    FLOOR,
    NAME,
    ContextMatcher,
    Entry,
    HomeContext,
    features,
)

Gold = tuple[str, int, int]  # (kind, first token, end token) of a name, area or floor slot


@dataclass(frozen=True)
class SimConfig:
    """How contexts are drawn."""

    p_none: float = 0.5  # no context at all
    p_present: float = 0.85  # each true name, area or floor is in the context
    p_alias: float = 0.15  # ... as an alias of an entry registered under another name
    distractors: int = 12  # up to this many other entries of each kind
    p_confuser: float = 0.25  # one misleading entry


TRAIN_SIM = SimConfig()
# Evaluation "with context": every true value registered under its own name, 20 distractors.
EVAL_SIM = SimConfig(p_none=0.0, p_present=1.0, p_alias=0.0, distractors=20, p_confuser=0.0)


def pool_values(pools: Pools) -> dict[str, list[str]]:
    """The split's values per context kind (every domain's device names for `name`)."""
    return {
        NAME: sorted({n for names in pools.names.values() for n in names}),
        AREA: list(pools.areas),
        FLOOR: list(pools.floors),
    }


def simulate(
    tokens: Sequence[str],
    gold: Sequence[Gold],
    pools: dict[str, list[str]],
    rng: random.Random,
    cfg: SimConfig,
) -> HomeContext | None:
    """A context for one utterance (token texts and its true slots), or None for none."""
    if rng.random() < cfg.p_none:
        return None
    entries: dict[str, list[Entry]] = {k: [] for k in CONTEXT_KINDS}
    for kind, s, e in gold:
        if rng.random() < cfg.p_present:
            text = " ".join(tokens[s:e])
            if rng.random() < cfg.p_alias:
                entries[kind].append(Entry(rng.choice(pools[kind]), aliases=(text,)))
            else:
                entries[kind].append(Entry(text))
    for kind in CONTEXT_KINDS:
        for value in rng.sample(
            pools[kind], min(len(pools[kind]), rng.randint(0, cfg.distractors))
        ):
            entries[kind].append(Entry(value))
    if rng.random() < cfg.p_confuser:
        _confuse(tokens, gold, entries, rng)
    for kind in CONTEXT_KINDS:
        rng.shuffle(entries[kind])
    return HomeContext(tuple(entries[FLOOR]), tuple(entries[AREA]), tuple(entries[NAME]))


def _confuse(
    tokens: Sequence[str], gold: Sequence[Gold], entries: dict[str, list[Entry]], rng: random.Random
) -> None:
    """Add one misleading entry: a word of a slot value under another kind, a slot's whole text
    under another kind, or a word outside the slots as an entity name."""
    inside = {i for _, s, e in gold for i in range(s, e)}
    outside = [i for i in range(len(tokens)) if i not in inside]
    r = rng.random()
    if gold and r < 0.7:
        kind, s, e = rng.choice(list(gold))
        other = rng.choice([k for k in CONTEXT_KINDS if k != kind])
        if e - s > 1 and r < 0.4:
            i = rng.randrange(s, e)
            entries[other].append(Entry(tokens[i]))
        else:
            entries[other].append(Entry(" ".join(tokens[s:e])))
    elif outside:
        entries[NAME].append(Entry(tokens[rng.choice(outside)]))


def context_features(
    matcher: ContextMatcher, tokens: Sequence[str], context: HomeContext | None
) -> np.ndarray:
    """[len(tokens), CONTEXT_DIM] features of one utterance (zeros without a context)."""
    if context is None:
        return np.zeros((len(tokens), CONTEXT_DIM), dtype=np.float32)
    return features(matcher.match(context, tokens), len(tokens))
