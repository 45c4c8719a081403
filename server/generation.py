"""Sequence generation with per-step batching: one running batch per encoder–decoder model.

Every decoder step runs the rows of all running requests as one batch. Before a step, waiting
requests join (their words are encoded first, in one call: the encoder stops at each row's
length, so a row's memory never depends on its neighbours) and requests that were cancelled
or whose deadline passed leave; after it, each request takes its token(s), and a request that
reached its end token (or max_steps) leaves with its answer at once. The step graph treats
every row on its own (padded memory is masked to exact zeros, in whole blocks), so a request's
answer does not depend on who shared its steps. numpy and asyncio; no grpc here.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor

import numpy as np

from modelspec.seq2seq import MEMORY, MEMORY_LENGTHS, PREV_IDS, STEP_H0
from server.beam import (
    Hypothesis,
    Job,
    TokenEvent,
    flush,
    greedy_step,
    log_softmax,
    ranked,
    step_job,
)
from server.errors import INTERNAL_MESSAGE, DeadlineExceeded, ServeError, Unavailable
from server.seq2seq import GenerationLimits, Seq2SeqRuntime

log = logging.getLogger("rnnserve.generation")

# How the running batch takes in new requests: at every step (per-step batching), only when it
# is empty (whole-request batching), or one request at a time.
ADMIT_STEP, ADMIT_REQUEST, ADMIT_ONE = "step", "request", "one"
ADMIT_MODES = (ADMIT_STEP, ADMIT_REQUEST, ADMIT_ONE)
# The memory is padded to a multiple of this many steps. Attention sums over the padded width:
# zeros past a row's length add exactly nothing, but a width that is not a whole number of
# vector blocks changes the order of the sums (differences of 1e-7 were measured); in whole
# blocks a row's numbers are the same in any batch, alone included.
MEMORY_BLOCK = 16
# A step of one request alone, or of any request decoded one at a time (at most this many rows:
# a beam), runs on the event loop's thread (about 0.2 ms): a thread hop would cost more than its
# run. Shared batches step on the executor, so the loop takes in new requests meanwhile (inline
# steps of small shared batches kept the batch at ~2.3 rows with 16 callers).
INLINE_ROWS = 4


class Generator:
    """The running batch of one model version and the task that steps it."""

    def __init__(
        self,
        runtime: Seq2SeqRuntime,
        limits: GenerationLimits,
        executor: Executor | None,
        admit: str = ADMIT_STEP,
    ) -> None:
        self.runtime = runtime
        self.limits = limits
        self.executor = executor
        self.admit = admit
        self.waiting: deque[Job] = deque()
        self.active: list[Job] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._serials = itertools.count()  # names jobs in the memory cache's key
        self._memory_key: tuple[tuple[int, int], ...] = ()
        self._memory: tuple[np.ndarray, np.ndarray] | None = None
        self.steps_run = 0
        self.rows_run = 0
        self.on_step: Callable[[int], None] | None = None  # rows of each step

    def start(self) -> None:
        """Start the stepping task (inside the event loop)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        """Stop stepping; requests still in the batch answer UNAVAILABLE."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        for job in [*self.active, *self.waiting]:
            self._fail(job, Unavailable("the server is shutting down"))
        self.active.clear()
        self.waiting.clear()

    async def run(self, job: Job) -> list[Hypothesis]:
        """Queue a request and wait for its hypotheses (best first)."""
        loop = asyncio.get_running_loop()
        job.future = loop.create_future()
        self.start()  # the first request starts the stepping task
        self.waiting.append(job)
        self._wake.set()
        try:
            return await job.future
        finally:
            job.cancelled = True  # cancelled callers leave the batch before the next step

    async def stream(self, job: Job) -> AsyncIterator[TokenEvent | list[Hypothesis]]:
        """Queue a request; yield each greedy step as decoded, then the hypotheses."""
        job.events = asyncio.Queue()
        task = asyncio.ensure_future(self.run(job))
        try:
            while True:
                get = asyncio.ensure_future(job.events.get())
                done, _ = await asyncio.wait({get, task}, return_when=asyncio.FIRST_COMPLETED)
                if get in done:
                    yield get.result()
                    continue
                get.cancel()
                while not job.events.empty():
                    yield job.events.get_nowait()
                yield task.result()
                return
        finally:
            job.cancelled = True
            task.cancel()

    # ------------------------------------------------------------------ the loop

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self.active and not self.waiting:
                self._wake.clear()
                await self._wake.wait()
            joined = self._admit()
            self._leave_expired()
            if not self.active:
                continue
            joined = [j for j in joined if j.left < 0]
            rows = sum(j.rows for j in self.active)
            try:  # the joiners' encoding and the step in one call: one thread hop, not two
                logits, h_n, _ = await self._call(loop, self._encode_and_step, joined, rows)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("generation step failed")
                for job in self.active:
                    self._fail(job, ServeError(INTERNAL_MESSAGE))
                self.active = []
                continue
            self.steps_run += 1
            self.rows_run += len(logits)
            if self.on_step is not None:
                self.on_step(len(logits))
            self._advance(logits, h_n[0])

    async def _call(self, loop: asyncio.AbstractEventLoop, fn, arg, rows: int):  # type: ignore[no-untyped-def]
        """One request alone (or any request, one at a time) runs on the loop: a thread hop
        costs more than its run; then the calls waiting on the loop go in. Shared batches run
        on the executor, so the loop takes in new requests meanwhile."""
        alone = self.admit == ADMIT_ONE or (len(self.active) == 1 and not self.waiting)
        if self.executor is None or (alone and rows <= INLINE_ROWS):
            out = fn(arg)
            await asyncio.sleep(0)
            return out
        return await loop.run_in_executor(self.executor, fn, arg)

    def _admit(self) -> list[Job]:
        """Move waiting requests into the running batch as the admission mode allows."""
        joined: list[Job] = []
        if self.admit != ADMIT_STEP and self.active:
            return joined
        cap = 1 if self.admit == ADMIT_ONE else self.limits.max_batch_rows
        rows = sum(j.rows for j in self.active)
        while self.waiting and len(self.active) < cap:
            job = self.waiting[0]
            if job.cancelled:
                self.waiting.popleft()
                continue
            if self.active and rows + job.beam_size > cap:
                break
            self.waiting.popleft()
            job.joined = self.steps_run
            job.serial = next(self._serials)
            self.active.append(job)
            joined.append(job)
            rows += job.beam_size
        return joined

    def _encode_and_step(self, joined: list[Job]) -> list[np.ndarray]:
        """Encode the requests that joined before this step, then run the step."""
        if joined:
            self._encode(joined)
        return self.runtime.step(self._feeds())

    def _encode(self, jobs: list[Job]) -> None:
        """Encode the joiners' words in one call (the encoder's rows are exact in any padded
        batch: its GRU stops at each row's length)."""
        todo = [j for j in jobs if j.source is not None]
        if todo:
            memory, h, lengths = self.runtime.encode([j.source or [] for j in todo])
            for i, job in enumerate(todo):
                job.memory, job.h = memory[i, : lengths[i]], h[0, i : i + 1]
        for job in jobs:
            job.prev = [self.runtime.bos_id]

    def _leave_expired(self) -> None:
        """Cancelled requests and those past their deadline leave before the next step."""
        now = time.monotonic()
        keep = []
        for job in self.active:
            if job.cancelled:
                job.left = self.steps_run
                continue
            if job.deadline is not None and now >= job.deadline:
                self._fail(
                    job, DeadlineExceeded(f"the deadline passed after {job.steps} decoder steps")
                )
                continue
            keep.append(job)
        self.active = keep

    def _feeds(self) -> dict[str, np.ndarray]:
        """The step's inputs: every live row of every running request."""
        key = tuple((j.serial, j.rows) for j in self.active)
        if key != self._memory_key or self._memory is None:
            longest = max(len(j.memory) for j in self.active if j.memory is not None)
            width = -(-longest // MEMORY_BLOCK) * MEMORY_BLOCK
            rows = sum(j.rows for j in self.active)
            memory = np.zeros((rows, width, self.runtime.memory_size), dtype=np.float32)
            lengths = np.empty(rows, dtype=np.int64)
            r = 0
            for job in self.active:
                assert job.memory is not None
                n = len(job.memory)
                memory[r : r + job.rows, :n] = job.memory
                lengths[r : r + job.rows] = n
                r += job.rows
            self._memory_key, self._memory = key, (memory, lengths)
        memory, lengths = self._memory
        prev = np.fromiter(itertools.chain.from_iterable(j.prev for j in self.active), np.int64)
        h = np.concatenate([j.h for j in self.active if j.h is not None])[None]
        return {PREV_IDS: prev, STEP_H0: h, MEMORY: memory, MEMORY_LENGTHS: lengths}

    def _advance(self, logits: np.ndarray, h_n: np.ndarray) -> None:
        """Each request takes its step's tokens; finished requests answer at once."""
        r = 0
        keep = []
        eos = self.runtime.eos_id
        logits = logits.copy()
        logits[:, self.runtime.never_ids] = -np.inf  # <pad> and <s> are never generated
        logp = log_softmax(logits)  # one call for the whole batch
        toks = logp.argmax(axis=1)  # the greedy choice of every row, also at once
        best = logp[np.arange(len(toks)), toks].tolist()
        tok_list = toks.tolist()
        for job in self.active:
            n = job.rows
            if n == 1 and job.beam_size == 1:
                done = greedy_step(job, tok_list[r], best[r], h_n[r : r + 1], eos)
            else:
                done = step_job(job, logp[r : r + n], h_n[r : r + n], eos)
            r += n
            if done:
                self._finish(job)
            else:
                keep.append(job)
        self.active = keep

    def _finish(self, job: Job) -> None:
        job.left = self.steps_run
        answer = ranked(job)
        flush(job, answer[0], self.runtime.eos_id)
        if job.future is not None and not job.future.done():
            job.future.set_result(answer)

    def _fail(self, job: Job, exc: BaseException) -> None:
        job.left = self.steps_run
        if job.future is not None and not job.future.done():
            job.future.set_exception(exc)
