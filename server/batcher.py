"""Dynamic batching with exact padding: concurrent requests become one onnxruntime call.

Requests wait in a queue while every onnxruntime worker is busy; when a worker frees up, the
batcher takes what is queued (up to `max_rows` rows, optionally waiting `max_delay` for more),
pads the rows to the longest one, runs them once with per-row `lengths` and a per-row state,
and hands each request its own rows back. Because the exported graph packs rows by `lengths`,
each answer equals the answer of that request run alone. numpy only; no grpc here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from modelspec.batch import pad_rows
from modelspec.names import C_N, H_N, OUTPUTS, SLOT_LOGITS
from server.runtime import ModelRuntime

log = logging.getLogger("rnnserve.batcher")

PER_STEP = (OUTPUTS, SLOT_LOGITS)
STATES = (H_N, C_N)
# A lone small request on an idle server runs on the event loop's thread: the two thread hops
# cost more than its run (docs/performance.md). "Idle": since the previous request reached the
# batcher, the loop's thread spent at least this long off the CPU (waiting for calls). Under
# load it never waits that long, and batches go to the workers, beside its gRPC work.
INLINE_AFTER_IDLE_S = 250e-6
INLINE_MAX_ELEMENTS = 64  # rows x steps of an inline run


@dataclass
class _Item:
    """One request's rows waiting for a batch."""

    ids: np.ndarray  # [rows, time]
    lengths: np.ndarray  # [rows]
    h0: np.ndarray | None  # [L*D, rows or 1, H]
    c0: np.ndarray | None
    context: np.ndarray | None  # [rows, time, features]: the caller's home, matched
    future: asyncio.Future[dict[str, np.ndarray]] = field(repr=False)

    @property
    def rows(self) -> int:
        return int(self.ids.shape[0])


def _state_block(
    states: list[np.ndarray | None], rows: list[int], rt: ModelRuntime
) -> np.ndarray | None:
    """The batch's initial state: each item's own rows, zeros (the graph's default) elsewhere."""
    if all(s is None for s in states):
        return None
    ld, h = rt.state_shape
    out = np.zeros((ld, sum(rows), h), dtype=np.float32)
    r = 0
    for s, n in zip(states, rows):
        if s is not None:
            out[:, r : r + n] = s  # broadcasts a batch-1 state over the item's rows
        r += n
    return out


def _context_block(items: list[_Item], ids: np.ndarray) -> np.ndarray | None:
    """The batch's context features: each item's own, zeros (the graph's default) elsewhere."""
    given = [it.context for it in items if it.context is not None]
    if not given:
        return None
    out = np.zeros((*ids.shape, given[0].shape[-1]), dtype=np.float32)
    r = 0
    for it in items:
        if it.context is not None:
            out[r : r + it.rows, : it.context.shape[1]] = it.context
        r += it.rows
    return out


def run_batch(rt: ModelRuntime, items: list[_Item]) -> list[dict[str, np.ndarray]]:
    """Pad, run once, split back (runs in a worker thread)."""
    if len(items) == 1:
        it = items[0]
        return [rt.run(it.ids, it.lengths, it.h0, it.c0, context=it.context)]
    ids, _ = pad_rows([it.ids for it in items])
    lengths = np.concatenate([it.lengths for it in items])
    rows = [it.rows for it in items]
    h0 = _state_block([it.h0 for it in items], rows, rt)
    c0 = _state_block([it.c0 for it in items], rows, rt)
    out = rt.run(ids, lengths, h0, c0, context=_context_block(items, ids))
    results = []
    r = 0
    for it in items:
        t = int(it.ids.shape[1])
        part: dict[str, np.ndarray] = {}
        for name, arr in out.items():
            if name in STATES:
                part[name] = arr[:, r : r + it.rows]
            elif name in PER_STEP:
                part[name] = arr[r : r + it.rows, :t]
            else:
                part[name] = arr[r : r + it.rows]
        results.append(part)
        r += it.rows
    return results


class Batcher:
    """Gathers concurrent requests for one model into padded batches.

    No task sits between a request and onnxruntime: `submit` queues the rows and, when a
    worker is free, starts a batch with everything queued; when a batch finishes, its
    callback starts the next one from what queued up meanwhile. With `executor=None` the
    batch runs on the event loop itself (one callback per batch, no thread hand-off); with
    workers, a lone small request on an idle server runs there too (`_idle_for`).
    """

    def __init__(
        self,
        rt: ModelRuntime,
        *,
        executor: Executor | None,
        workers: int,
        max_rows: int,
        max_delay_s: float,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> None:
        self.rt = rt
        self.executor = executor
        self.max_rows = max_rows
        self.max_delay_s = max_delay_s
        self.on_batch = on_batch
        self.free = max(1, workers) if executor is not None else 1
        self.pending: deque[_Item] = deque()
        self.pending_rows = 0
        self._timer: asyncio.TimerHandle | None = None
        self._inflight: set[Future[Any]] = set()
        self._stopped: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.workers = self.free
        self._last = (time.perf_counter(), time.thread_time())  # the previous submit
        self.inline_runs = 0

    def start(self) -> None:
        """Bind to the running loop."""
        self._loop = asyncio.get_running_loop()

    async def stop(self) -> None:
        """Wait for running batches to finish."""
        if self._inflight:
            self._stopped = asyncio.Event()
            await self._stopped.wait()

    async def submit(
        self,
        ids: np.ndarray,
        lengths: np.ndarray,
        h0: np.ndarray | None,
        c0: np.ndarray | None,
        context: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        """Queue validated rows and wait for their outputs (at once on an idle server)."""
        if self._idle_for(ids):
            return self._run_inline(ids, lengths, h0, c0, context)
        loop = self._loop or asyncio.get_running_loop()
        fut: asyncio.Future[dict[str, np.ndarray]] = loop.create_future()
        item = _Item(ids, lengths, h0, c0, context, fut)
        self.pending.append(item)
        self.pending_rows += item.rows
        if self.free > 0:
            if self.max_delay_s > 0 and self.pending_rows < self.max_rows:
                if self._timer is None:
                    self._timer = loop.call_later(self.max_delay_s, self._on_timer)
            elif self.executor is None:
                if self._timer is None:  # let requests of this loop iteration join the batch
                    self._timer = loop.call_soon(self._on_timer)  # type: ignore[assignment]
            else:
                self._dispatch()
        return await fut

    def _idle_for(self, ids: np.ndarray) -> bool:
        """Whether this request may run on the loop's thread: workers idle, nothing queued, no
        batching delay asked for, a small input, and the loop thread idle before it came."""
        wall, cpu = time.perf_counter(), time.thread_time()  # called on the loop's thread
        idle = (wall - self._last[0]) - (cpu - self._last[1])
        self._last = (wall, cpu)
        return (
            self.executor is not None
            and self.free == self.workers
            and not self.pending
            and self.max_delay_s <= 0
            and ids.size <= INLINE_MAX_ELEMENTS
            and idle >= INLINE_AFTER_IDLE_S
        )

    def _run_inline(
        self,
        ids: np.ndarray,
        lengths: np.ndarray,
        h0: np.ndarray | None,
        c0: np.ndarray | None,
        context: np.ndarray | None,
    ) -> dict[str, np.ndarray]:
        """Run one request now, on the calling (loop) thread: a batch of its own rows."""
        self.inline_runs += 1
        try:
            out = self.rt.run(ids, lengths, h0, c0, context=context)
        except Exception:
            log.error("batch of 1 request failed", exc_info=True)
            raise
        if self.on_batch is not None:
            self.on_batch(int(ids.shape[0]), 1)
        return out

    def _on_timer(self) -> None:
        self._timer = None
        self._dispatch()

    def _take(self) -> list[_Item]:
        batch: list[_Item] = []
        rows = 0
        while self.pending:
            item = self.pending[0]
            if batch and rows + item.rows > self.max_rows:
                break
            self.pending.popleft()
            self.pending_rows -= item.rows
            if item.future.done():  # cancelled while queued
                continue
            batch.append(item)
            rows += item.rows
        return batch

    def _dispatch(self) -> None:
        """Start batches while workers are free and rows are queued."""
        loop = self._loop or asyncio.get_running_loop()
        while self.free > 0 and self.pending:
            batch = self._take()
            if not batch:
                continue
            if self.executor is None:
                try:
                    self._deliver(batch, run_batch(self.rt, batch), None)
                except Exception as exc:
                    self._deliver(batch, None, exc)
                continue
            self.free -= 1
            done = self.executor.submit(run_batch, self.rt, batch)
            self._inflight.add(done)
            # One hop back: the worker thread schedules the delivery on the loop itself
            # (cheaper than run_in_executor's chained asyncio future).
            done.add_done_callback(partial(self._schedule, loop, batch))

    def _schedule(
        self, loop: asyncio.AbstractEventLoop, batch: list[_Item], done: Future[Any]
    ) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
            loop.call_soon_threadsafe(self._finished, batch, done)

    def _finished(self, batch: list[_Item], done: Future[Any]) -> None:
        self._inflight.discard(done)
        self.free += 1
        exc = done.exception()
        self._deliver(batch, None if exc else done.result(), exc)
        if self.pending and self._timer is None:
            self._dispatch()
        if not self._inflight and self._stopped is not None:
            self._stopped.set()

    def _deliver(
        self,
        batch: list[_Item],
        results: list[dict[str, np.ndarray]] | None,
        exc: BaseException | None,
    ) -> None:
        if exc is not None or results is None:  # a failed batch fails only its own requests
            log.error("batch of %d requests failed", len(batch), exc_info=exc)
            for it in batch:
                if not it.future.done():
                    it.future.set_exception(exc or RuntimeError("batch failed"))
            return
        if self.on_batch is not None:
            self.on_batch(sum(it.rows for it in batch), len(batch))
        for it, res in zip(batch, results):
            if not it.future.done():
                it.future.set_result(res)
