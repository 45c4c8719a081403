"""The Generate service: encoder–decoder models by name and version, request checks, and one
call per RPC into a model's generation loop (server/generation.py). No grpc here."""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from prometheus_client import Histogram

from modelspec.names import STATE_LIMIT
from modelspec.seq2seq import MEMORY, STEP_H0
from server.beam import Hypothesis, Job, TokenEvent, make_job
from server.errors import InvalidArgument, ModelLoadError, NotFound, ResourceExhausted, load_error
from server.generation import ADMIT_STEP, Generator
from server.generation_config import generation_config
from server.metrics import Metrics
from server.model import UNAVAILABLE
from server.repository import ModelSource, scan_seq2seq
from server.seq2seq import GenerationLimits, Seq2SeqRuntime
from server.settings import RuntimeSettings, Settings
from server.validation import ANSWER_OVERHEAD

log = logging.getLogger("rnnserve.generation")


@dataclass
class GenerateInput:
    """One Generate request: a word (text or ids) or, for 1 vs N, a context (memory, h0)."""

    model: str = ""
    version: str = ""
    text: str | None = None
    token_ids: Sequence[int] | None = None
    h0: np.ndarray | None = None
    memory: np.ndarray | None = None
    beam_size: int = 0  # 0 or 1: greedy
    max_steps: int = 0  # 0: the model's default
    num_results: int = 0  # 0: 1
    return_states: bool = False
    deadline: float | None = None  # time.monotonic() by which the answer is due


@dataclass
class GenerateResult:
    """The hypotheses of one request (best first) and the names of their tokens."""

    model: str
    version: str
    source_tokens: list[str]
    hypotheses: list[Hypothesis]
    target_vocab: list[str] = field(default_factory=list)

    def tokens(self, hyp: Hypothesis) -> list[str]:
        """Token names of a hypothesis."""
        return [self.target_vocab[i] for i in hyp.ids]


class Seq2SeqModel:
    """One served version of an encoder–decoder: its graphs and its running batch."""

    def __init__(
        self, name: str, version: str, runtime: Seq2SeqRuntime, generator: Generator
    ) -> None:
        self.name = name
        self.version = version
        self.runtime = runtime
        self.generator = generator
        self.limits = generator.limits


class GenerationService:
    """Every encoder–decoder model the server holds, and the Generate calls on them."""

    def __init__(self, limits: GenerationLimits | None = None) -> None:
        self.models: dict[str, dict[str, Seq2SeqModel]] = {}
        self.failed: dict[tuple[str, str], str] = {}
        self.limits = limits or GenerationLimits()
        self.on_step: Callable[[str, str, int], None] | None = None  # (model, version, rows)
        self.max_message_bytes = 2**31 - 1  # --max-message-bytes: an answer's size at most

    def load(
        self,
        sources: dict[str, ModelSource],
        runtime: RuntimeSettings,
        executor: Executor | None,
        admit: str = ADMIT_STEP,
    ) -> list[str]:
        """Load every version of every source; returns what failed (and why)."""
        problems = []
        for src in sources.values():
            if src.error:  # clients read the reason, the log the error (with the paths)
                self.failed[(src.name, "")] = src.reason
                problems.append(src.error)
                continue
            try:
                limits, mode = generation_config(src, self.limits, admit)
            except ModelLoadError as exc:
                self.failed[(src.name, "")] = exc.public
                problems.append(str(exc))
                continue
            for version, vf in src.versions.items():
                try:
                    rt = Seq2SeqRuntime(
                        vf.path.parent,
                        device=runtime.device,
                        intra_op_threads=runtime.intra_op_threads,
                        cuda_tf32=runtime.cuda_tf32,
                    )
                except ModelLoadError as exc:
                    self.failed[(src.name, version)] = exc.public
                    problems.append(str(exc))
                    continue
                gen = Generator(rt, limits, executor, mode)
                if self.on_step is not None:
                    gen.on_step = functools.partial(self.on_step, src.name, version)
                model = Seq2SeqModel(src.name, version, rt, gen)
                self.models.setdefault(src.name, {})[version] = model
                log.info("model loaded", extra={"model": src.name, "version": version})
        return problems

    def index(self) -> list[tuple[str, str, str, str]]:
        """(name, version, state, reason) of every model that failed to load or warm up, as
        ModelRegistry.index has them; the loaded ones are served as their graphs."""
        return [(n, v, UNAVAILABLE, why) for (n, v), why in sorted(self.failed.items())]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter([m for versions in self.models.values() for m in versions.values()])

    def start(self) -> None:
        """Start every model's stepping task (inside the event loop)."""
        for m in self:
            m.generator.start()

    async def stop(self) -> None:
        """Stop every model's stepping task."""
        for m in self:
            await m.generator.stop()

    def find(self, name: str, version: str = "") -> Seq2SeqModel:
        """A model by name ('' when the server holds one) and version ('' = newest)."""
        if not name and len(self.models) == 1:
            name = next(iter(self.models))
        versions = self.models.get(name)
        if not versions:
            why = sorted({r for (n, _), r in self.failed.items() if n == name and r})
            if why:
                raise NotFound(f"model {name!r} has no version loaded ({'; '.join(why)})")
            known = ", ".join(sorted(self.models)) or "none"
            what = f"unknown generation model {name!r}" if name else "the request names no model"
            raise NotFound(f"{what} (generation models served: {known})")
        if not version:
            return versions[max(versions, key=int)]
        if version not in versions:
            ready = ", ".join(sorted(versions, key=int))
            raise NotFound(f"model {name!r} has no version {version!r} (ready: {ready})")
        return versions[version]

    # ------------------------------------------------------------------ requests

    def _job(self, model: Seq2SeqModel, req: GenerateInput) -> tuple[Job, list[str]]:
        """Check a request against the model and its limits (its longest answer included)."""
        lim = model.limits
        beam = req.beam_size or 1
        if not 1 <= beam <= lim.max_beam_size:
            raise InvalidArgument(f"beam_size {beam} is outside [1, {lim.max_beam_size}]")
        steps = req.max_steps or lim.default_steps
        if not 1 <= steps <= lim.max_steps:
            raise InvalidArgument(f"max_steps {steps} is outside [1, {lim.max_steps}]")
        results = req.num_results or 1
        if not 1 <= results <= beam:
            raise InvalidArgument(f"num_results {results} is outside [1, beam_size {beam}]")
        per_step = 16 + (4 * model.runtime.hidden if req.return_states else 0)
        size = ANSWER_OVERHEAD + (results + 1) * steps * per_step
        if size > self.max_message_bytes:
            raise ResourceExhausted(
                f"the answer could be about {size} bytes, over the {self.max_message_bytes}-byte "
                "message limit; ask for fewer max_steps or num_results, or no return_states"
            )
        opts = {
            "beam_size": beam,
            "max_steps": steps,
            "num_results": results,
            "return_states": req.return_states,
            "deadline": req.deadline,
        }
        rt = model.runtime
        if req.text is not None:
            ids = rt.source_ids(req.text, lim)
        elif req.token_ids is not None:
            ids = rt.check_ids(list(req.token_ids), lim)
        elif req.h0 is not None or req.memory is not None:
            memory, h0 = self._context(rt, req, lim)
            return make_job(None, memory=memory, h0=h0, **opts), []  # type: ignore[arg-type]
        else:
            raise InvalidArgument("the request needs text, token_ids or a context")
        return make_job(ids, **opts), [rt.source_vocab[i] for i in ids]  # type: ignore[arg-type]

    @staticmethod
    def _context(
        rt: Seq2SeqRuntime, req: GenerateInput, lim: GenerationLimits
    ) -> tuple[np.ndarray, np.ndarray]:
        """1 vs N: memory [T,M] (one vector [M] is T=1; none is one zero vector) and h0 [1,H]
        (none: zeros)."""
        m = rt.memory_size
        memory = np.zeros((1, m), np.float32) if req.memory is None else req.memory
        if memory.ndim == 1:
            memory = memory[None]
        if memory.ndim != 2 or memory.shape[1] != m or not 1 <= len(memory) <= lim.max_source_chars:
            raise InvalidArgument(
                f"context.memory has shape {list(memory.shape)}; expected [{m}] or "
                f"[source <= {lim.max_source_chars}, {m}]"
            )
        h0 = np.zeros((1, rt.hidden), np.float32) if req.h0 is None else req.h0
        if h0.size != rt.hidden:
            raise InvalidArgument(
                f"context.h0 has shape {list(h0.shape)}; expected [{rt.hidden}] (or [1, 1, "
                f"{rt.hidden}])"
            )
        for name, arr in ((MEMORY, memory), (STEP_H0, h0)):
            top = float(np.abs(arr).max())
            if not math.isfinite(top) or top > STATE_LIMIT:
                raise InvalidArgument(f"context.{name} holds NaN or values beyond ±{STATE_LIMIT:g}")
        return np.ascontiguousarray(memory, np.float32), h0.reshape(1, rt.hidden).astype(np.float32)

    def _result(self, model: Seq2SeqModel, tokens: list[str], hyps: list[Hypothesis]):  # type: ignore[no-untyped-def]
        return GenerateResult(
            model.name, model.version, tokens, hyps, list(model.runtime.target_vocab)
        )

    async def generate(self, req: GenerateInput) -> GenerateResult:
        """Generate one sequence (greedy) or the best of a beam search."""
        model = self.find(req.model, req.version)
        job, tokens = self._job(model, req)
        hyps = await model.generator.run(job)
        return self._result(model, tokens, hyps)

    async def generate_stream(
        self, req: GenerateInput
    ) -> AsyncIterator[tuple[Seq2SeqModel, TokenEvent | GenerateResult]]:
        """Each greedy step as it is decoded (none for a beam search), then the result."""
        model = self.find(req.model, req.version)
        job, tokens = self._job(model, req)
        async for item in model.generator.stream(job):
            if isinstance(item, TokenEvent):
                yield model, item
            else:
                yield model, self._result(model, tokens, item)

    def warmup(self, runs: int) -> None:
        """A few calls of each graph of each model. A version whose runs fail (a graph that
        loads but cannot run) stops being served and is reported like a failed load."""
        for m in list(self):
            try:
                m.runtime.warmup(runs)
            except Exception as exc:  # onnxruntime raises several unrelated types
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                err = load_error(m.runtime.folder, "failed its warm-up runs", first)
                versions = self.models[m.name]
                del versions[m.version]
                if not versions:
                    del self.models[m.name]
                self.failed[(m.name, m.version)] = err.public
                log.warning(
                    "model version not loaded",
                    extra={"model": m.name, "version": m.version, "reason": str(err)},
                )


def from_repository(
    settings: Settings, executor: Executor | None, metrics: Metrics | None = None
) -> GenerationService:
    """The encoder–decoder models of --model-repository, loaded (a failed one is logged)."""
    service = GenerationService()
    service.max_message_bytes = settings.max_message_bytes
    if metrics is not None:
        rows = Histogram(
            "rnnserve_generate_step_rows",
            "rows per decoder step of an encoder-decoder model (per-step batching)",
            ["model", "version"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=metrics.registry,
        )
        service.on_step = lambda m, v, n: rows.labels(m, v).observe(n)
    if settings.model_repository:
        sources = scan_seq2seq(Path(settings.model_repository))
        run_on = None if settings.inference_threads == 0 else executor
        for problem in service.load(sources, settings.runtime, run_on):
            log.warning("model not loaded", extra={"reason": problem})
    return service
