"""rnnserve.v1 Generate messages <-> the generation service's plain types (no onnxruntime)."""

from __future__ import annotations

import time

import numpy as np

from modelspec.seq2seq import MEMORY, STEP_H0
from rnnserve.v1 import rnnserve_pb2 as pb
from server.beam import Hypothesis, TokenEvent
from server.generation_service import GenerateInput, GenerateResult
from server.tensor_codec import from_tensor, to_tensor


def generate_input(req: pb.GenerateRequest, time_remaining: float | None) -> GenerateInput:
    """A GenerateRequest (and the call's remaining time) as the service's GenerateInput."""
    which = req.WhichOneof("input")
    ctx = req.context

    def given(field: str) -> bool:  # the context's fields are named after the step's tensors
        return which == "context" and ctx.HasField(field)

    return GenerateInput(
        model=req.model,
        version=req.version,
        text=req.text if which == "text" else None,
        token_ids=list(req.token_ids.ids) if which == "token_ids" else None,
        h0=from_tensor(ctx.h0, "context.h0", max_rank=3) if given(STEP_H0) else None,
        memory=from_tensor(ctx.memory, "context.memory", max_rank=3) if given(MEMORY) else None,
        beam_size=req.beam_size,
        max_steps=req.max_steps,
        num_results=req.num_results,
        return_states=req.return_states,
        deadline=None if time_remaining is None else time.monotonic() + time_remaining,
    )


def _hypothesis(res: GenerateResult, hyp: Hypothesis) -> pb.Hypothesis:
    msg = pb.Hypothesis(
        tokens=res.tokens(hyp),
        token_ids=hyp.ids,
        scores=hyp.scores,
        score=hyp.total,
        finished=hyp.finished,
    )
    if hyp.states:
        msg.states.CopyFrom(to_tensor(np.stack(hyp.states)))
    return msg


def response(res: GenerateResult) -> pb.GenerateResponse:
    """The GenerateResponse of a result: the best hypothesis on top, all of them listed."""
    hyps = [_hypothesis(res, h) for h in res.hypotheses]
    best = hyps[0]
    return pb.GenerateResponse(
        model=res.model,
        model_version=res.version,
        tokens=best.tokens,
        token_ids=best.token_ids,
        scores=best.scores,
        score=best.score,
        finished=best.finished,
        hypotheses=hyps,
        input_tokens=res.source_tokens,
    )


def stream_message(
    item: TokenEvent | GenerateResult, target_vocab: list[str]
) -> pb.GenerateStreamResponse:
    """One GenerateStream message: a decoded token, or the last message with the answer."""
    if isinstance(item, TokenEvent):
        return pb.GenerateStreamResponse(
            step=item.step,
            token="" if item.end else target_vocab[item.token_id],
            token_id=item.token_id,
            score=item.score,
            end=item.end,
        )
    best = item.hypotheses[0]
    return pb.GenerateStreamResponse(
        step=len(best.scores), end=best.finished, result=response(item)
    )
