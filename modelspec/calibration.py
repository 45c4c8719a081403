"""The no-intent decision: the score of an utterance's intent logits that a model's calibrated
threshold is compared with.

A model's metadata `calibration` holds `threshold` and `score` (the name of one of SCORES);
an utterance whose score is below the threshold is answered "no intent". A calibration that
names no score is `max_softmax`, the only score before the key existed. numpy only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

# The top intent's softmax probability: the answer's confidence.
MAX_SOFTMAX = "max_softmax"
# The largest intent logit (MaxLogit: Hendrycks et al., "Scaling Out-of-Distribution Detection
# for Real-World Settings", 2022): unlike the probability, it falls when no intent's evidence is
# strong, even if one intent is far ahead of the others.
MAX_LOGIT = "max_logit"
# The log-sum-exp of the intent logits (the negative free energy: Liu et al., "Energy-based
# Out-of-distribution Detection", 2020, temperature 1).
ENERGY = "energy"
SCORES = (MAX_SOFTMAX, MAX_LOGIT, ENERGY)


class UnknownScore(ValueError):
    """A calibration names a score this code does not compute."""


def score_name(calibration: Mapping[str, Any]) -> str:
    """The score a calibration's threshold applies to; UnknownScore for a name not in SCORES."""
    name = calibration.get("score") or MAX_SOFTMAX
    if name not in SCORES:
        raise UnknownScore(f"calibration score {name!r} is not one of {', '.join(SCORES)}")
    return str(name)


def in_scope_scores(intent_logits: np.ndarray, score: str) -> np.ndarray:
    """The score of each row of intent logits [..., intents] -> [...] (float64)."""
    logits = np.asarray(intent_logits, dtype=np.float64)
    top = logits.max(axis=-1)
    if score == MAX_LOGIT:
        return top
    total = np.exp(logits - top[..., None]).sum(axis=-1)
    if score == MAX_SOFTMAX:
        return 1.0 / total
    if score == ENERGY:
        return top + np.log(total)
    raise UnknownScore(f"calibration score {score!r} is not one of {', '.join(SCORES)}")
