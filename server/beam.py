"""Pure decoding of the generation loop: hypotheses, one greedy step, one beam-search step.

numpy only; no grpc, no onnxruntime.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Hypothesis:
    """One output sequence: token ids (without </s>), a log-probability per step (the </s>
    step's last when finished), whether it ended with </s>, and the decoder state per step."""

    ids: list[int] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    finished: bool = False
    states: list[np.ndarray] = field(default_factory=list)
    total: float = 0.0

    def extend(self, token: int, score: float, state: np.ndarray | None, end: bool) -> Hypothesis:
        """A copy one step longer."""
        states = self.states + [state] if state is not None else self.states
        ids = self.ids if end else self.ids + [token]
        return Hypothesis(ids, self.scores + [score], end, states, self.total + score)


@dataclass
class TokenEvent:
    """One greedy step as it is decoded (GenerateStream)."""

    step: int
    token_id: int
    score: float
    end: bool


@dataclass
class Job:
    """One request in (or waiting for) the running batch."""

    source: list[int] | None  # character ids, or None when memory/h0 were given (1 vs N)
    beam_size: int
    max_steps: int
    num_results: int
    return_states: bool
    deadline: float | None
    memory: np.ndarray | None = None  # [T, M]
    h: np.ndarray | None = None  # [rows, H]: one row per live hypothesis
    alive: list[Hypothesis] = field(default_factory=lambda: [Hypothesis()])
    finished: list[Hypothesis] = field(default_factory=list)
    prev: list[int] = field(default_factory=list)
    steps: int = 0
    serial: int = -1  # the order in which the request joined its batch
    emitted: int = 0  # beam search: tokens already streamed
    joined: int = -1  # the generator's step count when the request joined the batch ...
    left: int = -1  # ... and when it left
    cancelled: bool = False
    future: asyncio.Future[list[Hypothesis]] | None = None
    events: asyncio.Queue[TokenEvent] | None = None

    @property
    def rows(self) -> int:
        """Rows this request takes in the next step."""
        return len(self.alive)


def log_softmax(x: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax in float64 (-inf entries stay -inf: never chosen)."""
    x = x.astype(np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def step_job(job: Job, logp: np.ndarray, h: np.ndarray, eos: int) -> bool:
    """Advance one request by one step (greedy, or beam search); True when it is done."""
    if job.beam_size == 1:
        tok = int(np.argmax(logp[0]))
        return greedy_step(job, tok, float(logp[0, tok]), h[:1], eos)
    job.steps += 1
    return beam_step(job, logp, h, eos, job.steps >= job.max_steps)


def greedy_step(job: Job, tok: int, score: float, h: np.ndarray, eos: int) -> bool:
    """A greedy request takes its step's token (the best, chosen by the caller) and state
    h [1,H]; its one hypothesis grows in place. True when it is done."""
    job.steps += 1
    hyp = job.alive[0]
    end = tok == eos
    hyp.scores.append(score)
    hyp.total += score
    if job.return_states:
        hyp.states.append(h[0].copy())
    if job.events is not None:
        job.events.put_nowait(TokenEvent(job.steps - 1, tok, score, end))
    job.h, job.prev = h, [tok]
    if end:
        hyp.finished = True
        job.finished, job.alive = [hyp], []
        return True
    hyp.ids.append(tok)
    return job.steps >= job.max_steps


def beam_step(job: Job, logp: np.ndarray, h: np.ndarray, eos: int, last: bool) -> bool:
    """One beam-search step: the k best extensions by total log-probability; a hypothesis
    that ends with </s> among the k best is kept aside. Done when no live one can overtake
    the num_results-th finished one (scores only fall), none lives, or at max_steps."""
    k, vocab = job.beam_size, logp.shape[1]
    totals = np.array([hyp.total for hyp in job.alive])[:, None] + logp
    order = np.argsort(-totals.ravel(), kind="stable")[: 2 * k]
    alive: list[Hypothesis] = []
    rows: list[int] = []
    for rank, c in enumerate(order):
        parent, tok = divmod(int(c), vocab)
        state = h[parent].copy() if job.return_states else None
        hyp = job.alive[parent].extend(tok, float(logp[parent, tok]), state, tok == eos)
        if tok == eos:
            if rank < k:
                job.finished.append(hyp)
        elif len(alive) < k:
            alive.append(hyp)
            rows.append(parent)
    job.finished = sorted(job.finished, key=lambda x: -x.total)[: max(k, job.num_results)]
    job.alive, job.h = alive, h[rows]
    job.prev = [hyp.ids[-1] for hyp in alive]
    enough = len(job.finished) >= job.num_results
    if enough and alive:  # log-probabilities only fall: no live one can overtake
        enough = job.finished[job.num_results - 1].total >= max(a.total for a in alive)
    settle(job)
    return not alive or enough or last


def settle(job: Job) -> None:
    """Beam search, streaming: send the tokens every candidate (live or finished) agrees on;
    the answer is one of them or grows from one, so those tokens are final."""
    cands = job.alive + job.finished
    if job.events is None or not cands:
        return
    first = cands[0].ids
    agree = 0
    while agree < min(len(c.ids) for c in cands) and all(
        c.ids[agree] == first[agree] for c in cands
    ):
        agree += 1
    for pos in range(job.emitted, agree):
        job.events.put_nowait(TokenEvent(pos, first[pos], cands[0].scores[pos], False))
    job.emitted = max(job.emitted, agree)


def flush(job: Job, best: Hypothesis, eos: int) -> None:
    """Beam search, streaming: at the end, send the answer's tokens not sent yet (and its end
    token's message when it has one)."""
    if job.events is None or job.beam_size == 1:
        return
    for pos in range(job.emitted, len(best.ids)):
        job.events.put_nowait(TokenEvent(pos, best.ids[pos], best.scores[pos], False))
    if best.finished:
        job.events.put_nowait(TokenEvent(len(best.ids), eos, best.scores[-1], True))
    job.emitted = len(best.ids)


def ranked(job: Job) -> list[Hypothesis]:
    """A done job's hypotheses, best first: finished ones, then (at max_steps) unfinished."""
    out = sorted(job.finished, key=lambda x: -x.total)
    out += sorted(job.alive, key=lambda x: -x.total)
    return out[: job.num_results]


def make_job(
    source: Sequence[int] | None,
    *,
    memory: np.ndarray | None = None,
    h0: np.ndarray | None = None,
    beam_size: int = 1,
    max_steps: int,
    num_results: int = 1,
    return_states: bool = False,
    deadline: float | None = None,
) -> Job:
    """A job from checked inputs (source ids, or memory [T,M] and h0 [1,H] for 1 vs N)."""
    job = Job(
        list(source) if source is not None else None,
        beam_size,
        max_steps,
        num_results,
        return_states,
        deadline,
    )
    if source is None:
        job.memory, job.h = memory, h0
    return job
