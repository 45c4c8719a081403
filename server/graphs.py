"""The two graphs of every encoder–decoder model as ordinary v2 models (`NAME.encoder`,
`NAME.step`): v2 clients can run the encoder and drive the decoder step themselves.

Each request is checked fully against the graph's contract (names, dtypes, ranks, ids in the
vocabulary, lengths, batch agreement, limits) and runs as one onnxruntime call. numpy only;
no grpc here.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from modelspec.io import IOSpec
from modelspec.names import STATE_LIMIT
from modelspec.seq2seq import (
    ENC_INPUT_IDS,
    ENC_LENGTHS,
    ENCODER_SUFFIX,
    MEMORY,
    MEMORY_LENGTHS,
    PREV_IDS,
    STEP_H0,
    STEP_SUFFIX,
)
from server.errors import FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted
from server.generation_service import GenerationService, Seq2SeqModel
from server.requests import InferInput, InferResult
from server.seq2seq import Graph
from server.validation import ANSWER_OVERHEAD

MAX_ROWS = 256


@dataclass(frozen=True)
class GraphModel:
    """One graph of one served encoder–decoder version, under its v2 name."""

    name: str
    version: str
    graph: Graph
    owner: Seq2SeqModel

    @property
    def io(self) -> IOSpec:
        """The graph's I/O contract."""
        return self.graph.io


class GraphModels:
    """Looks the v2 names of the encoder–decoder graphs up, and runs them."""

    def __init__(self, generation: GenerationService, max_message_bytes: int = 2**31 - 1) -> None:
        self.generation = generation
        self.max_message_bytes = max_message_bytes

    def _split(self, name: str) -> tuple[str, str] | None:
        for suffix in (ENCODER_SUFFIX, STEP_SUFFIX):
            if name.endswith(suffix) and name[: -len(suffix)] in self.generation.models:
                return name[: -len(suffix)], suffix
        return None

    def owns(self, name: str) -> bool:
        """Whether `name` is the v2 name of one of the graphs."""
        return self._split(name) is not None

    def find(self, name: str, version: str = "") -> GraphModel:
        """The graph behind a v2 name (NotFound otherwise)."""
        found = self._split(name)
        if found is None:
            raise NotFound(f"unknown model {name!r}")
        versions = self.versions(name)
        if version and version not in versions:
            raise NotFound(
                f"model {name!r} has no version {version!r} (ready: {', '.join(versions)})"
            )
        owner = self.generation.find(found[0], version)
        rt = owner.runtime
        graph = rt.encoder if found[1] == ENCODER_SUFFIX else rt.step_graph
        return GraphModel(name, owner.version, graph, owner)

    def versions(self, name: str) -> list[str]:
        """Ready versions of the graph's model."""
        found = self._split(name)
        return sorted(self.generation.models[found[0]], key=int) if found else []

    def index(self) -> list[tuple[str, str]]:
        """(v2 name, version) of every graph served."""
        return [
            (m.name + suffix, m.version)
            for m in self.generation
            for suffix in (ENCODER_SUFFIX, STEP_SUFFIX)
        ]

    async def infer(self, req: InferInput) -> InferResult:
        """Check the tensors against the graph, then run it once."""
        model = self.find(req.model, req.version)
        if req.sequence is not None:  # the decoder's state travels in h0/h_n, not on the server
            raise FailedPrecondition(
                f"model {model.name!r} keeps no sequences: each request carries its own state"
            )
        feeds = _check(model, req.feeds)
        wanted = list(req.outputs) or list(model.io.output_names)
        unknown = [n for n in wanted if n not in model.io.output_names]
        if unknown:
            raise InvalidArgument(f"model {model.name!r} has no output {unknown[0]!r}")
        self._answer_fits(model, feeds, wanted)
        executor = model.owner.generator.executor
        if executor is None:
            out = model.graph.run(wanted, feeds)
        else:
            loop = asyncio.get_running_loop()
            out = await loop.run_in_executor(executor, model.graph.run, wanted, feeds)
        for arr in out:
            if not math.isfinite(float(np.asarray(arr, np.float64).sum())):
                raise InvalidArgument("the model produced non-finite values for this input")
        return InferResult(model.name, model.version, dict(zip(wanted, out)))

    def _answer_fits(
        self, model: GraphModel, feeds: Mapping[str, np.ndarray], wanted: list[str]
    ) -> None:
        """The answer fits --max-message-bytes: refuse before the run, not after it."""
        axes = {
            axis: size
            for t in model.io.inputs
            for axis, size in zip(t.shape, feeds[t.name].shape)
            if isinstance(axis, str)
        }
        size = ANSWER_OVERHEAD
        for t in model.io.outputs:
            if t.name in wanted:
                size += 4 * math.prod(axes[a] if isinstance(a, str) else a for a in t.shape)
        if size > self.max_message_bytes:
            raise ResourceExhausted(
                f"the answer would be about {size} bytes, over the {self.max_message_bytes}-byte "
                "message limit; ask for fewer outputs or send fewer rows or steps"
            )


def _int(feeds: Mapping[str, np.ndarray], name: str, rank: int) -> np.ndarray:
    arr = feeds[name]
    if arr.dtype not in (np.int64, np.int32) or arr.ndim != rank:
        raise InvalidArgument(f"input {name!r} must be INT64 (or INT32) of rank {rank}")
    return arr.astype(np.int64)


def _float(feeds: Mapping[str, np.ndarray], name: str, rank: int) -> np.ndarray:
    arr = feeds[name]
    if arr.dtype != np.float32 or arr.ndim != rank:
        raise InvalidArgument(f"input {name!r} must be FP32 of rank {rank}")
    top = float(np.abs(arr).max()) if arr.size else 0.0
    if not math.isfinite(top) or top > STATE_LIMIT:
        raise InvalidArgument(f"input {name!r} holds NaN or values beyond ±{STATE_LIMIT:g}")
    return arr


def _ids(arr: np.ndarray, name: str, vocab: int) -> None:
    if arr.size and (arr.min() < 0 or arr.max() >= vocab):
        raise InvalidArgument(f"input {name!r} holds ids outside [0, {vocab})")


def _lengths(arr: np.ndarray, name: str, rows: int, width: int) -> None:
    if arr.shape != (rows,):
        raise InvalidArgument(f"input {name!r} must have shape [{rows}]")
    if arr.size and (arr.min() < 1 or arr.max() > width):
        raise InvalidArgument(f"input {name!r} must hold lengths in [1, {width}]")


def _check(model: GraphModel, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every input present, of its dtype and rank, consistent with the others."""
    names = model.io.input_names
    missing = [n for n in names if n not in feeds]
    extra = [n for n in feeds if n not in names]
    if missing:
        raise InvalidArgument(f"input {missing[0]!r} is required (inputs: {', '.join(names)})")
    if extra:
        raise InvalidArgument(f"unknown input {extra[0]!r}; inputs: {', '.join(names)}")
    rt = model.owner.runtime
    limits = model.owner.limits
    if ENC_INPUT_IDS in names:  # the encoder
        ids = _int(feeds, ENC_INPUT_IDS, 2)
        rows, width = ids.shape
        if not (1 <= rows <= MAX_ROWS and 1 <= width <= limits.max_source_chars):
            raise InvalidArgument(
                f"input {ENC_INPUT_IDS!r} has shape {[rows, width]}; rows must be in "
                f"[1, {MAX_ROWS}], time in [1, {limits.max_source_chars}]"
            )
        _ids(ids, ENC_INPUT_IDS, len(rt.source_vocab))
        lengths = _int(feeds, ENC_LENGTHS, 1)
        _lengths(lengths, ENC_LENGTHS, rows, width)
        return {ENC_INPUT_IDS: ids, ENC_LENGTHS: lengths}
    prev = _int(feeds, PREV_IDS, 1)
    memory = _float(feeds, MEMORY, 3)
    h0 = _float(feeds, STEP_H0, 3)
    rows = len(prev)
    width = memory.shape[1]
    if not 1 <= rows <= MAX_ROWS:
        raise InvalidArgument(f"input {PREV_IDS!r} must have 1 to {MAX_ROWS} rows")
    _ids(prev, PREV_IDS, len(rt.target_vocab))
    if memory.shape[0] != rows or memory.shape[2] != rt.memory_size or width < 1:
        raise InvalidArgument(
            f"input {MEMORY!r} must have shape [{rows}, source, {rt.memory_size}]"
        )
    if width > limits.max_source_chars:
        raise InvalidArgument(f"input {MEMORY!r} has more than {limits.max_source_chars} steps")
    if h0.shape != (1, rows, rt.hidden):
        raise InvalidArgument(f"input {STEP_H0!r} must have shape [1, {rows}, {rt.hidden}]")
    lengths = _int(feeds, MEMORY_LENGTHS, 1)
    _lengths(lengths, MEMORY_LENGTHS, rows, width)
    return {PREV_IDS: prev, STEP_H0: h0, MEMORY: memory, MEMORY_LENGTHS: lengths}
