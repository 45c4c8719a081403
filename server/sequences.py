"""v2 sequences (Triton's sequence-batcher contract): recurrent state kept between requests.

numpy only; no grpc here.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from server.errors import FailedPrecondition, InvalidArgument, ResourceExhausted

SequenceKey = tuple[str, str]  # (model name, sequence id)


@dataclass
class Sequence:
    """One live sequence: its state after the last request, and a lock that orders requests."""

    key: SequenceKey
    model: Any = None  # the ServedModel version it started on: it ends on that version too
    h: np.ndarray | None = None
    c: np.ndarray | None = None
    last_used: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class SequenceStore:
    """Live sequences of every model, capped in number and freed when idle."""

    def __init__(
        self,
        max_sequences: int,
        idle_timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[int], None] | None = None,
        workers: int = 1,
    ) -> None:
        self.max_sequences = max_sequences
        self.workers = workers  # worker processes on the port: another may hold the sequence
        self.idle_timeout_s = idle_timeout_s
        self.clock = clock
        self.on_change = on_change
        self.live: dict[SequenceKey, Sequence] = {}

    def __len__(self) -> int:
        return len(self.live)

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(len(self.live))

    def reap(self) -> int:
        """Free sequences idle longer than the timeout; returns how many."""
        cutoff = self.clock() - self.idle_timeout_s
        idle = [k for k, s in self.live.items() if s.last_used < cutoff and not s.lock.locked()]
        for k in idle:
            del self.live[k]
        if idle:
            self._changed()
        return len(idle)

    def begin(self, key: SequenceKey) -> Sequence:
        """Start (or restart) a sequence; RESOURCE_EXHAUSTED when the cap is reached."""
        seq = self.live.get(key)
        if seq is not None:
            seq.h = seq.c = None
            seq.last_used = self.clock()
            return seq
        if len(self.live) >= self.max_sequences:
            self.reap()
            if len(self.live) >= self.max_sequences:
                raise ResourceExhausted(
                    f"{self.max_sequences} sequences are live; end one (sequence_end) or wait "
                    f"for idle ones to expire"
                )
        seq = Sequence(key, last_used=self.clock())
        self.live[key] = seq
        self._changed()
        return seq

    def get(self, key: SequenceKey) -> Sequence:
        """A live sequence; INVALID_ARGUMENT when it never started or has expired (with several
        worker processes, FAILED_PRECONDITION: it may live on another one)."""
        seq = self.live.get(key)
        if seq is None:
            expiry = f"idle sequences expire after {self.idle_timeout_s:g} s"
            if self.workers > 1:
                raise FailedPrecondition(
                    f"sequence {key[1]} of model {key[0]!r} is not live on this worker process: "
                    f"it may live on another of the server's {self.workers} workers (send every "
                    f"request of a sequence on one channel), or it never started "
                    f"(sequence_start=true), or it expired ({expiry})"
                )
            raise InvalidArgument(
                f"sequence {key[1]} of model {key[0]!r} is not live: start it with "
                f"sequence_start=true ({expiry})"
            )
        return seq

    def end(self, key: SequenceKey) -> None:
        """Free a sequence."""
        if self.live.pop(key, None) is not None:
            self._changed()

    async def reaper(self) -> None:
        """Free idle sequences periodically (run as a task)."""
        period = max(0.05, min(1.0, self.idle_timeout_s / 4))
        while True:
            await asyncio.sleep(period)
            self.reap()
