"""Admission: the one owner of the queue, stream and drain limits.

Every guarded call enters here before any work: while draining, new work is refused
UNAVAILABLE; beyond --max-queue unary calls or --max-streams streams, RESOURCE_EXHAUSTED.
Probes (v2 liveness, readiness and descriptions) answer in both cases. The drain awaits the
moment no call is in progress, without polling.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from server.errors import ResourceExhausted, Unavailable


class Admission:
    """Counts calls in progress and refuses what is over a limit or arrives while draining."""

    def __init__(
        self,
        *,
        max_queue: int,
        max_streams: int,
        on_streams: Callable[[int], None] | None = None,
    ) -> None:
        self.max_queue = max_queue
        self.max_streams = max_streams
        self.on_streams = on_streams
        self.unary = 0  # guarded unary calls in progress (probes apart)
        self.probes = 0  # probes in progress: never refused, counted only for the drain
        self.streams = 0  # guarded streams open
        self.draining = False
        self.last_start = 0.0  # monotonic time the last guarded call started
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def active(self) -> int:
        """Guarded calls in progress."""
        return self.unary + self.streams + self.probes

    def _started(self, work: bool) -> None:
        if self.draining and work:
            raise Unavailable("the server is shutting down")
        self.last_start = time.monotonic()

    def enter_probe(self, work: bool = False) -> None:
        """A probe (ServerLive, ServerReady, ModelReady, ...) started: it answers while draining
        and at capacity, so liveness and readiness checks do not fail under load. It does not
        restart the drain's quiet period: a balancer probing many times a second would hold
        every drain open for its whole grace."""
        self.probes += 1
        self._idle.clear()

    def leave_probe(self) -> None:
        """A probe ended."""
        self.probes -= 1
        if not self.active:
            self._idle.set()

    def enter_unary(self, work: bool) -> None:
        """Admit a unary call (`work`: refused while draining); raise to refuse."""
        self._started(work)
        if self.unary >= self.max_queue:
            raise ResourceExhausted(
                f"the server is at capacity ({self.max_queue} requests in progress); "
                "retry with backoff"
            )
        self.unary += 1
        self._idle.clear()

    def leave_unary(self) -> None:
        """A unary call ended."""
        self.unary -= 1
        if not self.active:
            self._idle.set()

    def enter_stream(self, work: bool) -> None:
        """Admit a stream; raise to refuse."""
        self._started(work)
        if self.streams >= self.max_streams:
            raise ResourceExhausted(f"{self.max_streams} streams are open; retry later")
        self.streams += 1
        self._idle.clear()
        if self.on_streams is not None:
            self.on_streams(self.streams)

    def leave_stream(self) -> None:
        """A stream ended."""
        self.streams -= 1
        if self.on_streams is not None:
            self.on_streams(self.streams)
        if not self.active:
            self._idle.set()

    async def drain(self, grace: float, quiet: float) -> None:
        """Refuse new work, then return once no call is in progress and none has started for
        `quiet` seconds (calls queued in gRPC's core get answered), or after `grace`."""
        self.draining = True
        deadline = time.monotonic() + grace
        while (left := deadline - time.monotonic()) > 0:
            try:
                await asyncio.wait_for(self._idle.wait(), left)
            except TimeoutError:
                return
            since = time.monotonic() - self.last_start
            if since >= quiet:
                return
            await asyncio.sleep(min(quiet - since, max(0.0, deadline - time.monotonic())))
