"""One validator per model, built from the metadata's I/O contract; typed and v2 paths share it.

numpy only; no grpc, no onnxruntime. Every check raises InvalidArgument (or ResourceExhausted
for an answer too large to send) with a message safe to show a client.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from modelspec.io import ACCEPTED_DTYPES, DATATYPE_NAMES, IOSpec, TensorSpec, by_name
from modelspec.names import (
    BATCH_AXIS,
    C0,
    CONTEXT,
    H0,
    INPUT_IDS,
    LENGTHS,
    TIME_AXIS,
    state_range,
)
from server.errors import InvalidArgument, ResourceExhausted

ANSWER_OVERHEAD = 4096  # bytes of an answer that are not tensor values (names, shapes, framing)


@dataclass(slots=True)
class Batch:
    """Validated inputs of one onnxruntime call."""

    ids: np.ndarray  # [batch, time] int64
    lengths: np.ndarray  # [batch] int64
    h0: np.ndarray | None = None  # [layers*dirs, batch or 1, hidden] float32
    c0: np.ndarray | None = None
    context: np.ndarray | None = None  # [batch, time, features] float32

    @property
    def rows(self) -> int:
        """Number of rows."""
        return int(self.ids.shape[0])


def _type_name(dtype: str) -> str:
    return DATATYPE_NAMES.get(dtype, dtype.upper())


class InputValidator:
    """Checks requests against one model's inputs, vocabulary, state ranges and limits."""

    def __init__(
        self,
        spec: IOSpec,
        *,
        vocab_size: int,
        cell: str,
        nonlinearity: str,
        max_tokens: int,
        max_rows: int,
        max_message_bytes: int,
    ) -> None:
        self.spec = spec.served()
        self.inputs = by_name(self.spec.inputs)
        self.outputs = by_name(self.spec.outputs)
        self.vocab_size = vocab_size
        self.max_tokens = max_tokens
        self.max_rows = max_rows
        self.max_message_bytes = max_message_bytes
        # Per output: (product of its fixed dims, whether it has the batch axis, the time axis).
        self._sizes = {
            t.name: (
                math.prod(d for d in t.shape if isinstance(d, int)),
                BATCH_AXIS in t.shape,
                TIME_AXIS in t.shape,
            )
            for t in self.spec.outputs
        }
        self.ranges: dict[str, tuple[float, float]] = {
            n: state_range(cell, nonlinearity, n) for n in (H0, C0) if n in self.inputs
        }

    # ------------------------------------------------------------------ pieces

    def token_count(self, n: int) -> None:
        """An utterance, chunk or row of `n` tokens is within --max-tokens."""
        if n > self.max_tokens:
            raise InvalidArgument(f"{n} tokens is over the limit of {self.max_tokens}")

    def ids(self, ids: np.ndarray) -> None:
        """Every id is inside the vocabulary."""
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0 or hi >= self.vocab_size:
            bad = lo if lo < 0 else hi
            raise InvalidArgument(
                f"token id {bad} is outside the vocabulary [0, {self.vocab_size})"
            )

    def state(self, name: str, state: np.ndarray, batch: int) -> np.ndarray:
        """A state is [layers*dirs, batch or 1, hidden] and inside the range its cell produces."""
        spec = self.inputs.get(name)
        if spec is None:
            raise InvalidArgument(f"this model has no {name} input")
        want = [batch if d == BATCH_AXIS else d for d in spec.shape]
        got = list(state.shape)
        batch_at = spec.shape.index(BATCH_AXIS)
        fits = len(got) == len(want) and all(
            g == w or (i == batch_at and g == 1) for i, (g, w) in enumerate(zip(got, want))
        )
        if not fits:
            raise InvalidArgument(f"{name} must have shape {want}, got {got}")
        lo, hi = self.ranges[name]
        if not np.isfinite(state).all():
            raise InvalidArgument(f"{name} contains NaN or infinity")
        if state.size and (state.min() < lo or state.max() > hi):
            raise InvalidArgument(
                f"{name} holds values outside [{lo:g}, {hi:g}], the range this cell produces"
            )
        return np.ascontiguousarray(state, dtype=np.float32)

    def output_names(self, names: Sequence[str]) -> list[str]:
        """Requested outputs exist (empty: all of them, in graph order)."""
        for name in names:
            if name not in self.outputs:
                raise InvalidArgument(
                    f"unknown output {name!r}; outputs: {', '.join(self.outputs)}"
                )
        return list(names) or list(self.outputs)

    def answer_size(self, names: Sequence[str], batch: int, time: int) -> None:
        """The answer fits --max-message-bytes: refuse before the run, not after it."""
        size = ANSWER_OVERHEAD
        for name in names:
            fixed, by_batch, by_time = self._sizes[name]
            size += 4 * fixed * (batch if by_batch else 1) * (time if by_time else 1)
        if size > self.max_message_bytes:
            raise ResourceExhausted(
                f"the answer would be about {size} bytes, over the {self.max_message_bytes}-byte "
                "message limit; ask for fewer outputs or send fewer rows or tokens"
            )

    # ------------------------------------------------------------------ whole requests

    def _tensor(self, spec: TensorSpec, arr: np.ndarray) -> np.ndarray:
        accepted = ACCEPTED_DTYPES.get(spec.dtype, (spec.dtype,))
        if arr.dtype.name not in accepted:
            names = " or ".join(_type_name(d) for d in accepted)
            raise InvalidArgument(
                f"input {spec.name!r} must be {names}, not {_type_name(arr.dtype.name)}"
            )
        if arr.ndim != spec.rank:
            raise InvalidArgument(
                f"input {spec.name!r} must have {spec.rank} dims {spec.dims}, got {list(arr.shape)}"
            )
        return arr.astype(spec.dtype, copy=False)

    def feeds(self, feeds: Mapping[str, np.ndarray]) -> Batch:
        """Raw named tensors (v2) as a validated Batch."""
        for name in feeds:
            if name not in self.inputs:
                raise InvalidArgument(f"unknown input {name!r}; inputs: {', '.join(self.inputs)}")
        missing = [n for n, s in self.inputs.items() if not s.optional and n not in feeds]
        if missing:
            raise InvalidArgument(f"input {missing[0]!r} is required")
        ids = self._tensor(self.inputs[INPUT_IDS], feeds[INPUT_IDS])
        batch, time = ids.shape
        if batch < 1 or time < 1:
            raise InvalidArgument(f"{INPUT_IDS} is empty (shape [{batch}, {time}])")
        if batch > self.max_rows:
            raise InvalidArgument(f"{batch} rows is over the limit of {self.max_rows}")
        self.token_count(time)
        if LENGTHS in feeds:
            lengths = self._tensor(self.inputs[LENGTHS], feeds[LENGTHS])
            if lengths.shape != (batch,):
                raise InvalidArgument(
                    f"{LENGTHS} must have shape [{batch}], got {list(lengths.shape)}"
                )
            if lengths.min() < 1 or lengths.max() > time:
                raise InvalidArgument(f"each of {LENGTHS} must be between 1 and {time}")
        else:  # no padding: every row is full length
            lengths = np.full((batch,), time, dtype=np.int64)
        self.ids(ids)
        states = {}
        for name in (H0, C0):
            if name in feeds:
                states[name] = self.state(name, self._tensor(self.inputs[name], feeds[name]), batch)
        context = self.context(feeds[CONTEXT], batch, time) if CONTEXT in feeds else None
        return Batch(ids, lengths, states.get(H0), states.get(C0), context)

    def context(self, feats: np.ndarray, batch: int, time: int) -> np.ndarray:
        """A context input is [batch, time, features] float32 of values in [0, 1]."""
        spec = self.inputs[CONTEXT]
        arr = self._tensor(spec, feats)
        want = [batch, time, spec.shape[-1]]
        if list(arr.shape) != want:
            raise InvalidArgument(f"{CONTEXT} must have shape {want}, got {list(arr.shape)}")
        if arr.size and not (np.isfinite(arr).all() and arr.min() >= 0.0 and arr.max() <= 1.0):
            raise InvalidArgument(f"{CONTEXT} holds values outside [0, 1]")
        return np.ascontiguousarray(arr)
