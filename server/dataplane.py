"""The service logic between the servicers and the models: one call per request.

A servicer turns its message into one of the plain requests below and makes one call:
`parse`, `feed` (a stream chunk), `infer`, `describe`, `server_ready`/`model_ready`. The call
looks the model up once and hands the `ServedModel` down: validation, the run, decoding.
numpy and plain dataclasses; no grpc here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

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
from server.decoding import History, ParseOptions, ParseResult, TokenOut, decode
from server.errors import FailedPrecondition, InvalidArgument
from server.model import ModelRegistry, ServedModel
from server.sequences import SequenceStore
from server.validation import Batch


@dataclass(slots=True)
class ParseInput:
    """One utterance (or stream chunk) as text or token ids, with an optional initial state."""

    model: str = ""
    text: str | None = None
    token_ids: Sequence[int] | None = None
    h0: np.ndarray | None = None
    c0: np.ndarray | None = None
    options: ParseOptions = field(default_factory=ParseOptions)


@dataclass(slots=True)
class SequenceRef:
    """A v2 request's place in a sequence (Triton's sequence_id/start/end)."""

    key: str
    start: bool = False
    end: bool = False


@dataclass(slots=True)
class InferInput:
    """A v2 request: named tensors, the outputs wanted ([] = all), an optional sequence."""

    model: str
    version: str = ""
    feeds: Mapping[str, np.ndarray] = field(default_factory=dict)
    outputs: Sequence[str] = ()
    sequence: SequenceRef | None = None


@dataclass(slots=True)
class InferResult:
    """A v2 answer."""

    model: str
    version: str
    outputs: dict[str, np.ndarray]


@dataclass
class StreamState:
    """The model, recurrent state and history of one ParseStream; lives only in the stream."""

    model: ServedModel | None = None
    h: np.ndarray | None = None
    c: np.ndarray | None = None
    history: History = field(default_factory=History)
    chunks: int = 0
    last: ParseResult | None = None


def _finite(*arrays: np.ndarray | None) -> None:
    """Never answer a non-finite number (a state at the edge of its range can still overflow):
    one sum per array answered, non-finite when any value is (or when they overflow)."""
    for a in arrays:
        if a is not None and not math.isfinite(float(a.sum())):
            raise InvalidArgument("the model produced non-finite values for this input and state")


class DataPlane:
    """Runs plain requests against the registry's models."""

    def __init__(self, registry: ModelRegistry, admission: Admission) -> None:
        self.registry = registry
        self.admission = admission

    # ------------------------------------------------------------------ readiness, metadata

    def server_ready(self) -> bool:
        """Every model is loaded and warm, and the server is not draining."""
        return self.registry.ready and not self.admission.draining

    def model_ready(self, name: str, version: str = "") -> bool:
        """This model exists (NotFound otherwise) and can take new requests."""
        self.registry.find(name, version)
        return self.server_ready()

    def describe(self, name: str, version: str = "") -> ServedModel:
        """The model to describe (ModelInfo, ModelMetadata, ModelConfig)."""
        return self.registry.find(name, version)

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
        model = self.registry.get(req.model)
        tokens, ids = self._encode(model, req, 0)
        self._steps_fit(model, req.options, len(ids))
        h0, c0 = self._state(model, req)
        batch = Batch(ids[None, :], np.asarray([len(ids)], dtype=np.int64), h0, c0)
        out = await model.run(batch)
        opts = req.options
        _finite(
            out[INTENT_LOGITS],
            out[SLOT_LOGITS],
            out[OUTPUTS] if opts.steps else None,
            out[H_N] if opts.state else None,
            out.get(C_N) if opts.state else None,
        )
        return decode(model.name, model.labels, tokens, out, opts, req.text or "")

    # ------------------------------------------------------------------ streams

    async def feed(self, stream: StreamState, chunk: ParseInput) -> ParseResult:
        """Run one chunk of a ParseStream from the state the chunks before it left."""
        if stream.model is None:
            model = self.registry.get(chunk.model)
            if model.bidirectional:
                raise FailedPrecondition(
                    f"model {model.name!r} is bidirectional: its reverse direction needs the "
                    "whole utterance, so it cannot stream; send the utterance with Parse"
                )
            stream.model = model
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
        batch = Batch(ids[None, :], np.asarray([len(ids)], dtype=np.int64), stream.h, stream.c)
        out = await model.run(batch)
        steps = out[OUTPUTS] if chunk.options.steps else None
        _finite(out[INTENT_LOGITS], out[SLOT_LOGITS], out[H_N], out.get(C_N), steps)
        result = decode(model.name, model.labels, tokens, out, chunk.options, text, stream.history)
        stream.h, stream.c = out[H_N], out.get(C_N)
        history = stream.history
        history.tokens, history.tags = history.tokens + tokens, history.tags + result.tags
        history.conf, history.text = history.conf + result.tag_conf, text
        result.chunk_index = stream.chunks
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
            tag_names=labels.tags,
            total_steps=len(stream.history.tokens),
            chunk_index=stream.chunks,
            no_intent=last.no_intent if last else True,
        )
        if opts.state and stream.h is not None:
            result.h_n, result.c_n = stream.h, stream.c
        stream.chunks += 1
        return result

    # ------------------------------------------------------------------ raw tensors (v2)

    async def infer(self, req: InferInput) -> InferResult:
        """Validate raw tensors fully, then run them (within a sequence when one is named)."""
        model = self.registry.get(req.model, req.version)
        batch = model.validator.feeds(req.feeds)
        wanted = model.validator.output_names(req.outputs)
        if req.sequence is None:
            model.validator.answer_size(wanted, batch.rows, int(batch.ids.shape[1]))
            out = await model.run(batch, list(req.outputs) or None)
            _finite(*out.values())
        else:
            out = await self._sequence_step(model, req.sequence, batch, wanted)
        return InferResult(model.name, model.version, out)

    async def _sequence_step(
        self, model: ServedModel, ref: SequenceRef, batch: Batch, wanted: list[str]
    ) -> dict[str, np.ndarray]:
        store: SequenceStore | None = model.sequences
        if store is None:
            raise FailedPrecondition(
                f"model {model.name!r} is bidirectional: it cannot carry state across requests"
            )
        if batch.h0 is not None or batch.c0 is not None:
            raise InvalidArgument("a sequence request carries no h0/c0: the server holds the state")
        if batch.rows != 1:
            raise InvalidArgument(
                f"a sequence request has one row, got shape {list(batch.ids.shape)}"
            )
        model.validator.answer_size(wanted, 1, int(batch.ids.shape[1]))
        seq = store.begin(ref.key) if ref.start else store.get(ref.key)
        try:
            async with seq.lock:
                run = Batch(batch.ids, batch.lengths, seq.h, seq.c)
                out = await model.run(run, None)
                _finite(*out.values())
                seq.h, seq.c = out[H_N], out.get(C_N)
                seq.last_used = store.clock()
        except BaseException:
            if ref.start:  # a sequence whose first request failed does not live on
                store.end(ref.key)
            raise
        if ref.end:
            store.end(ref.key)
        return {k: out[k] for k in wanted}
