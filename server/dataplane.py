"""The service logic between the servicers and the models: one call per request.

A servicer turns its message into one of the plain requests of server/requests.py and makes
one call:
`parse`, `feed` (a stream chunk), `infer`, `describe`, `server_ready`/`model_ready`. The call
looks the model up once and hands the `ServedModel` down: validation, the run, decoding.
numpy and plain dataclasses; no grpc here.
"""

from __future__ import annotations

import math

import numpy as np

from modelspec.names import (
    C0,
    C_N,
    H0,
    H_N,
    INTENT_LOGITS,
    OUTPUTS,
    SLOT_LOGITS,
    has_cell_state,
)
from server.admission import Admission
from server.context import ContextMatch, context_input
from server.decoding import ParseOptions, ParseResult, TokenOut, decode
from server.errors import FailedPrecondition, InvalidArgument
from server.loader import ModelLoader
from server.model import READY, ModelRegistry, ServedModel
from server.requests import (
    InferInput,
    InferResult,
    ModelVersion,
    ParseInput,
    SequenceRef,
    StreamState,
)
from server.slot_values import finish
from server.validation import Batch


def _finite(*arrays: np.ndarray | None) -> None:
    """Never answer a non-finite number (a state at the edge of its range can still overflow):
    one sum per array answered, non-finite when any value is (or when they overflow)."""
    for a in arrays:
        if a is not None and not math.isfinite(float(a.sum())):
            raise InvalidArgument("the model produced non-finite values for this input and state")


class DataPlane:
    """Runs plain requests against the registry's models."""

    def __init__(self, registry: ModelRegistry, admission: Admission, loader: ModelLoader) -> None:
        self.registry = registry
        self.admission = admission
        self.loader = loader

    # ------------------------------------------------------------------ readiness, metadata

    def server_ready(self) -> bool:
        """Every model is loaded and warm, and the server is not draining."""
        return self.registry.ready and not self.admission.draining

    def model_ready(self, name: str, version: str = "") -> bool:
        """This model (version) is known (NotFound otherwise) and can take new requests."""
        return self.registry.serves(name, version) and self.server_ready()

    def describe(self, name: str, version: str = "") -> tuple[ServedModel, list[str]]:
        """The model version to describe, and every ready version of it."""
        model = self.registry.find(name, version)
        return model, self.registry.versions(model.name)

    # ------------------------------------------------------------------ the repository

    def repository_index(self, ready_only: bool) -> list[ModelVersion]:
        """Every model version the server knows of (only the ready ones when asked)."""
        out = [ModelVersion(*row) for row in self.registry.index()]
        return [m for m in out if m.state == READY] if ready_only else out

    async def load_model(self, name: str) -> None:
        """Load or reload a model from the repository (explicit control mode)."""
        await self.loader.load(name)

    async def unload_model(self, name: str) -> None:
        """Stop serving a model (explicit control mode)."""
        await self.loader.unload(name)

    # ------------------------------------------------------------------ typed parse

    def _encode(
        self, model: ServedModel, req: ParseInput, offset: int, *, allow_empty: bool = False
    ) -> tuple[list[TokenOut], np.ndarray]:
        """Tokens (char offsets shifted by `offset`) and ids, checked before any work."""
        limits = model.limits
        if req.text is not None:
            text = req.text
            if len(text) > limits.max_text_chars:
                raise InvalidArgument(
                    f"text has {len(text)} characters; the limit is {limits.max_text_chars}"
                )
            toks = model.tokenizer.tokenize(text, limit=limits.max_tokens + 1)
            if not toks and not allow_empty:
                reason = "is empty" if not text.strip() else "has no words or numbers to parse"
                raise InvalidArgument(f"text {reason}")
            model.validator.token_count(len(toks))
            ids = model.tokenizer.ids(toks)
            out = [TokenOut(t.text, i, t.start + offset, t.end + offset) for t, i in zip(toks, ids)]
            return out, np.asarray(ids, dtype=np.int64)
        if req.token_ids is None:
            raise InvalidArgument("the request needs text or token_ids")
        if len(req.token_ids) == 0:
            raise InvalidArgument("token_ids is empty")
        model.validator.token_count(len(req.token_ids))
        arr = np.asarray(req.token_ids, dtype=np.int64)
        model.validator.ids(arr)
        vocab = model.tokenizer.vocab
        return [TokenOut(vocab[i], int(i)) for i in arr], arr

    def _state(self, model: ServedModel, req: ParseInput) -> tuple[np.ndarray | None, ...]:
        if req.h0 is None and req.c0 is None:
            return None, None
        if model.bidirectional:
            raise FailedPrecondition(
                f"model {model.name!r} is bidirectional: an initial state cannot continue an "
                "utterance in its reverse direction; send the whole utterance without one"
            )
        if not has_cell_state(model.cell) and req.c0 is not None:
            raise InvalidArgument(f"c0 is only for LSTM models; this model is {model.cell}")
        if has_cell_state(model.cell) and (req.h0 is None) != (req.c0 is None):
            raise InvalidArgument("an LSTM state needs both h and c")
        h0 = None if req.h0 is None else model.validator.state(H0, req.h0, 1)
        c0 = None if req.c0 is None else model.validator.state(C0, req.c0, 1)
        return h0, c0

    @staticmethod
    def _steps_fit(model: ServedModel, opts: ParseOptions, n: int) -> None:
        if opts.steps:  # per-step outputs grow with the tokens: refuse before the run
            model.validator.answer_size([OUTPUTS, SLOT_LOGITS], 1, n)

    async def parse(self, req: ParseInput) -> ParseResult:
        """Run one utterance and decode intent and slots."""
        model = self.registry.get(req.model, req.version)
        tokens, ids = self._encode(model, req, 0)
        self._steps_fit(model, req.options, len(ids))
        h0, c0 = self._state(model, req)
        home = None if req.context is None else ContextMatch(req.context, model.contexts)
        ctx = context_input(model, home, tokens, len(tokens))
        batch = Batch(ids[None, :], np.asarray([len(ids)], dtype=np.int64), h0, c0, ctx)
        out = await model.run(batch)
        opts = req.options
        _finite(
            out[INTENT_LOGITS],
            out[SLOT_LOGITS],
            out[OUTPUTS] if opts.steps else None,
            out[H_N] if opts.state else None,
            out.get(C_N) if opts.state else None,
        )
        matches = home.matches if home is not None and model.takes_context else ()
        result = decode(model.name, model.labels, tokens, out, opts, req.text or "", None, matches)
        finish(result, model.values, home, tokens, result.intent[0], result.tags, req.text or "")
        result.version = model.version
        return result

    # ------------------------------------------------------------------ streams

    async def feed(self, stream: StreamState, chunk: ParseInput) -> ParseResult:
        """Run one chunk of a ParseStream from the state the chunks before it left."""
        if stream.model is None:  # the stream stays on this version to its end
            model = self.registry.get(chunk.model, chunk.version)
            if model.bidirectional:
                raise FailedPrecondition(
                    f"model {model.name!r} is bidirectional: its reverse direction needs the "
                    "whole utterance, so it cannot stream; send the utterance with Parse"
                )
            stream.model = model
            if chunk.context is not None:
                stream.home = ContextMatch(chunk.context, model.contexts)
        model = stream.model
        offset = len(stream.history.text)
        tokens, ids = self._encode(model, chunk, offset, allow_empty=True)
        total = len(stream.history.tokens) + len(tokens)
        if total > model.limits.max_stream_tokens:
            raise InvalidArgument(
                f"the stream would hold {total} tokens; the limit is "
                f"{model.limits.max_stream_tokens} (start a new stream)"
            )
        self._steps_fit(model, chunk.options, len(tokens))
        text = stream.history.text + (chunk.text or "")
        if not tokens:  # punctuation only: nothing to run; the answer stands as it was
            stream.history.text = text
            return self._repeat(stream, chunk.options)
        ctx = context_input(model, stream.home, stream.history.tokens + tokens, len(tokens))
        batch = Batch(ids[None, :], np.asarray([len(ids)], dtype=np.int64), stream.h, stream.c, ctx)
        out = await model.run(batch)
        steps = out[OUTPUTS] if chunk.options.steps else None
        _finite(out[INTENT_LOGITS], out[SLOT_LOGITS], out[H_N], out.get(C_N), steps)
        home = stream.home
        matches = home.matches if home is not None and model.takes_context else ()
        result = decode(
            model.name, model.labels, tokens, out, chunk.options, text, stream.history, matches
        )
        history = stream.history
        every, tags = history.tokens + tokens, history.tags + result.tags
        finish(result, model.values, stream.home, every, result.intent[0], tags, text)
        stream.h, stream.c = out[H_N], out.get(C_N)
        history.tokens, history.tags = history.tokens + tokens, history.tags + result.tags
        history.conf, history.text = history.conf + result.tag_conf, text
        result.chunk_index, result.version = stream.chunks, model.version
        stream.chunks += 1
        stream.last = result
        if chunk.options.state:
            result.h_n, result.c_n = stream.h, stream.c
        return result

    @staticmethod
    def _repeat(stream: StreamState, opts: ParseOptions) -> ParseResult:
        """The answer to a chunk without tokens: the stream's last answer, no new tokens."""
        assert stream.model is not None
        last = stream.last
        labels = stream.model.labels
        result = ParseResult(
            stream.model.name,
            [],
            last.intent if last else ("", 0.0),
            last.top if last else [],
            last.slots if last else [],
            [],
            no_intent_threshold=labels.no_intent_threshold,
            no_intent_score=labels.no_intent_score,
            tag_names=labels.tags,
            total_steps=len(stream.history.tokens),
            chunk_index=stream.chunks,
            no_intent=last.no_intent if last else True,
            in_scope_score=last.in_scope_score if last else 0.0,
            version=stream.model.version,
            implied=last.implied if last else [],
        )
        if opts.state and stream.h is not None:
            result.h_n, result.c_n = stream.h, stream.c
        stream.chunks += 1
        return result

    # ------------------------------------------------------------------ raw tensors (v2)

    async def infer(self, req: InferInput) -> InferResult:
        """Validate raw tensors fully, then run them (within a sequence when one is named)."""
        if req.sequence is not None:
            return await self._sequence_step(req, req.sequence)
        model = self.registry.get(req.model, req.version)
        batch = model.validator.feeds(req.feeds)
        wanted = model.validator.output_names(req.outputs)
        model.validator.answer_size(wanted, batch.rows, int(batch.ids.shape[1]))
        out = await model.run(batch, list(req.outputs) or None)
        _finite(*out.values())
        return InferResult(model.name, model.version, out)

    async def _sequence_step(self, req: InferInput, ref: SequenceRef) -> InferResult:
        """One request of a v2 sequence; the sequence stays on the version it started on."""
        store = self.registry.sequences
        named = self.registry.get(req.model, req.version)
        key = (named.name, ref.key)
        if not named.streaming and key not in store.live:  # never one of its sequences
            raise FailedPrecondition(
                f"model {named.name!r} is bidirectional: it cannot carry state across requests"
            )
        seq = None if ref.start else store.get(key)
        model: ServedModel = named if seq is None else seq.model
        if not model.streaming:
            raise FailedPrecondition(
                f"model {model.name!r} is bidirectional: it cannot carry state across requests"
            )
        batch = model.validator.feeds(req.feeds)
        wanted = model.validator.output_names(req.outputs)
        if batch.h0 is not None or batch.c0 is not None:
            raise InvalidArgument("a sequence request carries no h0/c0: the server holds the state")
        if batch.rows != 1:
            shape = list(batch.ids.shape)
            raise InvalidArgument(f"a sequence request has one row, got shape {shape}")
        model.validator.answer_size(wanted, 1, int(batch.ids.shape[1]))
        if seq is None:  # fully valid: only now does the sequence (re)start
            seq = store.begin(key)
            seq.model = model
        try:
            async with seq.lock:
                run = Batch(batch.ids, batch.lengths, seq.h, seq.c, batch.context)
                out = await model.run(run, None)
                _finite(*out.values())
                seq.h, seq.c = out[H_N], out.get(C_N)
                seq.last_used = store.clock()
        except BaseException:
            if ref.start:  # a sequence whose first request failed does not live on
                store.end(key)
            raise
        if ref.end:
            store.end(key)
        return InferResult(model.name, model.version, {k: out[k] for k in wanted})
