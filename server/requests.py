"""The plain requests and results the servicers exchange with the data plane (no grpc)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from server.decoding import History, ParseOptions, ParseResult

if TYPE_CHECKING:
    from modelspec.context import HomeContext
    from server.context import ContextMatch
    from server.model import ServedModel


@dataclass(slots=True)
class ParseInput:
    """One utterance (or stream chunk) as text or token ids, with an optional initial state."""

    model: str = ""
    version: str = ""
    text: str | None = None
    token_ids: Sequence[int] | None = None
    h0: np.ndarray | None = None
    c0: np.ndarray | None = None
    options: ParseOptions = field(default_factory=ParseOptions)
    context: HomeContext | None = None  # the caller's home (a stream's first chunk only)


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
class ModelVersion:
    """A model version the repository knows of, and whether it serves."""

    name: str
    version: str
    state: str
    reason: str = ""


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
    home: ContextMatch | None = None  # the context of the stream's first message
