"""The service logic between the servicers and the runtime: models, parsing, streams.

Works on numpy arrays and plain dataclasses; no grpc here. onnxruntime calls run in a
thread pool so they never block the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from modelspec.names import (
    C0,
    C_N,
    H0,
    H_N,
    INPUT_IDS,
    INTENT_LOGITS,
    LENGTHS,
    OUTPUTS,
    SLOT_LOGITS,
)
from modelspec.tags import best_tags, decode_bio, log_softmax
from server.batcher import Batcher
from server.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
)
from server.metrics import Metrics
from server.runtime import ModelRuntime
from server.sequences import Sequence as SequenceState
from server.sequences import SequenceStore


class TokenOut(NamedTuple):
    """A token of the answer; char offsets are -1 for token-id input."""

    text: str
    id: int
    char_start: int = -1
    char_end: int = -1


@dataclass(frozen=True)
class SlotOut:
    """A decoded slot."""

    name: str
    value: str
    token_start: int
    token_end: int
    char_start: int
    char_end: int
    confidence: float


@dataclass
class ParseResult:
    """What a Parse (or one stream chunk) produces."""

    model: str
    tokens: list[TokenOut]
    intent: tuple[str, float]
    top: list[tuple[str, float]]
    slots: list[SlotOut]
    tags: list[str]
    outputs: np.ndarray | None = None  # [time, directions*hidden]
    slot_scores: np.ndarray | None = None  # [time, tags]
    h_n: np.ndarray | None = None  # [layers*directions, 1, hidden]
    c_n: np.ndarray | None = None
    total_steps: int = 0
    tag_conf: list[float] = field(default_factory=list)  # probability of each step's best tag
    no_intent: bool = False  # best confidence below the model's calibrated threshold


@dataclass(frozen=True)
class ParseOptions:
    """What the caller wants back."""

    top_k: int = 3
    steps: bool = False
    state: bool = False


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax."""
    z = x - x.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


class DataPlane:
    """Holds the served models and runs requests against them."""

    def __init__(
        self,
        runtimes: Sequence[ModelRuntime],
        executor: ThreadPoolExecutor,
        default_top_k: int = 3,
        metrics: Metrics | None = None,
        batchers: dict[str, Batcher] | None = None,
        inline: bool = False,
        sequences: dict[str, SequenceStore] | None = None,
        max_streams: int = 128,
    ) -> None:
        self.models = {rt.name: rt for rt in runtimes}
        self.batchers = batchers or {}
        self.inline = inline
        self.sequences = sequences or {}
        self.max_streams = max_streams
        self.streams = 0
        self.default = runtimes[0].name
        self.executor = executor
        self.default_top_k = default_top_k
        self.metrics = metrics
        self.ready = False
        self.draining = False

    # ------------------------------------------------------------------ lookup

    def model(self, name: str, in_stream: bool = False) -> ModelRuntime:
        """The runtime for a model name ('' means the default); NotFound otherwise.

        While draining, new work is UNAVAILABLE; requests on an already open stream go on.
        """
        rt = self.models.get(name or self.default)
        if rt is None:
            raise NotFound(f"unknown model {name!r}")
        if self.draining and not in_stream:
            raise Unavailable("the server is shutting down")
        if not self.ready:
            raise Unavailable("the model is not ready yet")
        return rt

    async def run(
        self,
        rt: ModelRuntime,
        ids: np.ndarray,
        lengths: np.ndarray,
        h0: np.ndarray | None,
        c0: np.ndarray | None,
        outputs: list[str] | None = None,
    ) -> dict[str, np.ndarray]:
        """An onnxruntime call, through the model's batcher when it has one.

        (Admission is bounded before this, where calls enter: server/app.py, --max-queue.)
        """
        batcher = self.batchers.get(rt.name)
        if batcher is not None:
            full = await batcher.submit(ids, lengths, h0, c0)
            out = {k: full[k] for k in outputs} if outputs else full
        elif self.inline:
            out = rt.run(ids, lengths, h0, c0, outputs)
        else:
            loop = asyncio.get_running_loop()
            out = await loop.run_in_executor(self.executor, rt.run, ids, lengths, h0, c0, outputs)
        if self.metrics is not None:
            self.metrics.tokens.labels(rt.name).inc(int(lengths.sum()))
        return out

    @contextlib.contextmanager
    def stream_slot(self) -> Iterator[None]:
        """Hold one of `max_streams` stream slots for the life of a stream."""
        if self.draining:
            raise Unavailable("the server is shutting down")
        if self.streams >= self.max_streams:
            raise ResourceExhausted(f"{self.max_streams} streams are open; retry later")
        self.streams += 1
        if self.metrics is not None:
            self.metrics.open_streams.set(self.streams)
        try:
            yield
        finally:
            self.streams -= 1
            if self.metrics is not None:
                self.metrics.open_streams.set(self.streams)

    # ------------------------------------------------------------------ typed parse

    def encode_text(
        self, rt: ModelRuntime, text: str, offset: int = 0
    ) -> tuple[list[TokenOut], np.ndarray]:
        """Tokens (char offsets shifted by `offset`) and ids of a text."""
        if not text.strip():
            raise InvalidArgument("text is empty")
        toks = rt.tokenizer.tokenize(text)
        if not toks:
            raise InvalidArgument("text has no words or numbers to parse")
        rt.check_token_count(len(toks))
        ids = rt.tokenizer.ids(toks)
        out = [TokenOut(t.text, i, t.start + offset, t.end + offset) for t, i in zip(toks, ids)]
        return out, np.asarray(ids, dtype=np.int64)

    def encode_ids(self, rt: ModelRuntime, ids: Sequence[int]) -> tuple[list[TokenOut], np.ndarray]:
        """Tokens and ids of a token-id request (validated against the vocabulary)."""
        if len(ids) == 0:
            raise InvalidArgument("token_ids is empty")
        rt.check_token_count(len(ids))
        arr = np.asarray(ids, dtype=np.int64)
        rt.check_ids(arr)
        vocab = rt.tokenizer.vocab
        return [TokenOut(vocab[i], int(i)) for i in arr], arr

    def state_arrays(
        self, rt: ModelRuntime, h: np.ndarray | None, c: np.ndarray | None
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Validate an initial state for one row."""
        if h is not None:
            rt.check_state(H0, h, 1)
        if c is not None:
            if rt.cell != "lstm":
                raise InvalidArgument(f"{C0} is only for LSTM models; this model is {rt.cell}")
            rt.check_state(C0, c, 1)
        if rt.cell == "lstm" and (h is None) != (c is None):
            raise InvalidArgument("an LSTM state needs both h and c")
        return h, c

    async def parse(
        self,
        model: str,
        tokens: list[TokenOut],
        ids: np.ndarray,
        h0: np.ndarray | None,
        c0: np.ndarray | None,
        opts: ParseOptions,
        text: str | None,
    ) -> ParseResult:
        """Run one utterance and decode intent and slots."""
        rt = self.model(model)
        out = await self.run(rt, ids[None, :], np.asarray([len(ids)], dtype=np.int64), h0, c0)
        return self.decode(rt, tokens, out, opts, text, [])

    def decode(
        self,
        rt: ModelRuntime,
        tokens: list[TokenOut],
        out: dict[str, np.ndarray],
        opts: ParseOptions,
        text: str | None,
        prev_tags: list[str],
        prev_tokens: Sequence[TokenOut] = (),
        prev_scores: list[float] | None = None,
    ) -> ParseResult:
        """Turn one row of model outputs into a ParseResult (slots span earlier chunks too)."""
        meta = rt.meta
        probs = softmax(out[INTENT_LOGITS][0])
        k = max(1, min(opts.top_k or self.default_top_k, len(meta.intents)))
        order = np.argsort(-probs)[:k].tolist()
        plist = probs.tolist()
        top = [(meta.intents[i], plist[i]) for i in order]
        n = len(tokens)
        logp = log_softmax(out[SLOT_LOGITS][0, :n])
        scores = np.exp(logp)
        start = rt.tag_start
        if prev_tags:  # a stream's chunk continues the tags of the chunks before it
            start = rt.tag_trans[meta.slots.index(prev_tags[-1])]
        best_arr = best_tags(logp, start, rt.tag_trans)
        best = best_arr.tolist()
        tags = [meta.slots[i] for i in best]
        conf = scores[np.arange(n), best_arr].tolist()
        all_tags = prev_tags + tags
        all_tokens = list(prev_tokens) + tokens
        all_conf = (prev_scores or []) + conf
        slots = []
        for ent in decode_bio(all_tags):
            first, last = all_tokens[ent.start], all_tokens[ent.end - 1]
            if text is not None and first.char_start >= 0:
                value = text[first.char_start : last.char_end]
            else:
                value = " ".join(t.text for t in all_tokens[ent.start : ent.end])
            slots.append(
                SlotOut(
                    ent.slot,
                    value,
                    ent.start,
                    ent.end,
                    first.char_start,
                    last.char_end,
                    sum(all_conf[ent.start : ent.end]) / (ent.end - ent.start),
                )
            )
        no_intent = top[0][1] < rt.no_intent_threshold
        result = ParseResult(
            rt.name,
            tokens,
            ("", top[0][1]) if no_intent else top[0],
            top,
            slots,
            tags,
            total_steps=len(all_tokens),
            tag_conf=conf,
            no_intent=no_intent,
        )
        if opts.steps:
            result.outputs = out[OUTPUTS][0, :n]
            result.slot_scores = scores.astype(np.float32)
        if opts.state:
            result.h_n = out[H_N]
            result.c_n = out.get(C_N)
        return result

    # ------------------------------------------------------------------ raw tensors (v2)

    async def infer(
        self,
        model: str,
        feeds: dict[str, np.ndarray],
        outputs: list[str] | None,
        in_stream: bool = False,
    ) -> dict[str, np.ndarray]:
        """Validate raw tensors and run them."""
        rt = self.model(model, in_stream)
        ids = feeds[INPUT_IDS]
        if ids.ndim != 2:
            raise InvalidArgument(
                f"{INPUT_IDS} must have 2 dimensions [batch, time], got {ids.ndim}"
            )
        lengths = feeds.get(LENGTHS)
        if lengths is None:  # no padding: every row is full length
            lengths = np.full((ids.shape[0],), ids.shape[1], dtype=np.int64)
        rt.check_batch(ids, lengths)
        batch = ids.shape[0]
        h0, c0 = feeds.get(H0), feeds.get(C0)
        if h0 is not None:
            rt.check_state(H0, h0, batch)
        if c0 is not None:
            rt.check_state(C0, c0, batch)
        for name in outputs or []:
            if name not in rt.output_names:
                raise InvalidArgument(
                    f"unknown output {name!r}; outputs: {', '.join(rt.output_names)}"
                )
        return await self.run(rt, ids, lengths, h0, c0, outputs or None)

    async def infer_sequence(
        self,
        model: str,
        key: str,
        start: bool,
        end: bool,
        feeds: dict[str, np.ndarray],
        outputs: list[str] | None,
        in_stream: bool = False,
    ) -> dict[str, np.ndarray]:
        """One request of a v2 sequence: its state comes from, and goes back to, the store."""
        rt = self.model(model, in_stream)
        store = self.sequences.get(rt.name)
        if store is None:
            raise FailedPrecondition(
                f"model {rt.name!r} is bidirectional: it cannot carry state across requests"
            )
        if H0 in feeds or C0 in feeds:
            raise InvalidArgument("a sequence request carries no h0/c0: the server holds the state")
        ids = feeds[INPUT_IDS]
        if ids.ndim != 2 or ids.shape[0] != 1:
            raise InvalidArgument(f"a sequence request has one row, got shape {list(ids.shape)}")
        seq = store.begin(key) if start else store.get(key)
        async with seq.lock:
            want = list(rt.output_names)
            out = await self.infer(model, {**feeds, **self._state_feeds(seq)}, want, in_stream)
            seq.h, seq.c = out[H_N], out.get(C_N)
            seq.last_used = store.clock()
        if end:
            store.end(key)
        return {k: out[k] for k in outputs} if outputs else out

    @staticmethod
    def _state_feeds(seq: SequenceState) -> dict[str, np.ndarray]:
        feeds = {}
        if seq.h is not None:
            feeds[H0] = seq.h
        if seq.c is not None:
            feeds[C0] = seq.c
        return feeds

    # ------------------------------------------------------------------ streams

    def open_stream(self, model: str) -> StreamState:
        """State for one ParseStream; FailedPrecondition for bidirectional models."""
        rt = self.model(model)
        if rt.bidirectional:
            raise FailedPrecondition(
                f"model {rt.name!r} is bidirectional: its reverse direction needs the whole "
                "utterance, so it cannot stream; send the utterance with Parse"
            )
        return StreamState(rt)


@dataclass
class StreamState:
    """The recurrent state and the history of one stream; lives only inside the stream."""

    rt: ModelRuntime
    h: np.ndarray | None = None
    c: np.ndarray | None = None
    tags: list[str] = field(default_factory=list)
    tokens: list[TokenOut] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    text: str = ""
    chunks: int = 0

    async def feed(
        self, plane: DataPlane, text: str | None, ids: Sequence[int] | None, opts: ParseOptions
    ) -> ParseResult:
        """Run one chunk from the carried state."""
        rt = self.rt
        if text is not None:
            tokens, arr = plane.encode_text(rt, text, offset=len(self.text))
        elif ids is not None:
            tokens, arr = plane.encode_ids(rt, ids)
        else:
            raise InvalidArgument("a stream chunk needs text or token_ids")
        want = [OUTPUTS, SLOT_LOGITS, INTENT_LOGITS, H_N] + ([C_N] if rt.cell == "lstm" else [])
        out = await plane.run(
            rt, arr[None, :], np.asarray([len(arr)], dtype=np.int64), self.h, self.c, want
        )
        full_text = self.text + text if text is not None else None
        result = plane.decode(rt, tokens, out, opts, full_text, self.tags, self.tokens, self.scores)
        self.h, self.c = out[H_N], out.get(C_N)
        self.tags = self.tags + result.tags
        self.tokens = self.tokens + tokens
        self.scores = self.scores + result.tag_conf
        if text is not None:
            self.text = full_text or ""
        self.chunks += 1
        if opts.state:
            result.h_n, result.c_n = self.h, self.c
        return result
