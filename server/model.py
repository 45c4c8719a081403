"""A served model (session, validator, labels, batcher, sequences) and the registry of them.

Code below the servicers receives a `ServedModel`, never a model name. numpy only; no grpc.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from modelspec.context import ContextMatcher
from modelspec.names import CONTEXT
from modelspec.values import SlotValues
from server import device_parity
from server.batcher import Batcher
from server.context import PreparedContexts
from server.decoding import Labels
from server.device_parity import DeviceParity
from server.errors import NotFound, Unavailable
from server.metrics import Metrics
from server.runtime import ModelRuntime
from server.sequences import SequenceStore
from server.settings import BatchSettings, LimitSettings, RuntimeSettings
from server.validation import Batch, InputValidator

log = logging.getLogger("rnnserve.runtime")

READY = "READY"
UNAVAILABLE = "UNAVAILABLE"


class ServedModel:
    """Everything the data plane needs of one model version, looked up once per request."""

    def __init__(
        self,
        runtime: ModelRuntime,
        *,
        name: str,
        version: str,
        executor: Executor | None,
        batching: BatchSettings,
        limits: LimitSettings,
        instances: int,
        metrics: Metrics,
    ) -> None:
        self.runtime = runtime
        self.name = name
        self.version = version
        self.meta = runtime.meta
        self.io = runtime.io
        self.tokenizer = runtime.tokenizer
        self.cell = runtime.cell
        self.bidirectional = runtime.bidirectional
        self.streaming = not runtime.bidirectional
        self.batching = batching
        self.limits = limits
        self.instances = instances
        self.labels = Labels(runtime.meta, limits.default_top_k)
        self.validator = InputValidator(
            runtime.io,
            vocab_size=len(runtime.meta.vocab),
            cell=runtime.cell,
            nonlinearity=str(runtime.meta.config.get("nonlinearity", "tanh")),
            max_tokens=limits.max_tokens,
            max_rows=limits.max_batch_rows,
            max_message_bytes=limits.max_message_bytes,
        )
        self._executor = executor
        # Off CPU: how exactly the provider runs the model, measured at load (device_parity.py).
        self.device_parity: DeviceParity | None = None
        self.contexts = PreparedContexts(ContextMatcher(runtime.tokenizer))
        self.takes_context = CONTEXT in runtime.io.input_names
        self.values = SlotValues.from_dict(runtime.meta.values)
        self._tokens = metrics.tokens.labels(name, version)
        self.batcher: Batcher | None = None
        if batching.max_batch_size > 1:
            self.batcher = Batcher(
                runtime,
                executor=executor,
                workers=instances,
                max_rows=batching.max_batch_size,
                max_delay_s=batching.max_batch_delay_us / 1e6,
                on_batch=metrics.record_batch,
            )

    @property
    def provider(self) -> str:
        """The onnxruntime execution provider the model runs on."""
        return self.runtime.provider

    async def run(self, batch: Batch, outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        """One validated batch through the batcher, a worker thread, or inline."""
        if self.batcher is not None:
            full = await self.batcher.submit(
                batch.ids, batch.lengths, batch.h0, batch.c0, batch.context
            )
            out = {k: full[k] for k in outputs} if outputs else full
        else:
            out = await self._run_alone(batch, outputs)
        self._tokens.inc(int(batch.lengths.sum()))
        return out

    async def _run_alone(self, b: Batch, outputs: list[str] | None) -> dict[str, np.ndarray]:
        """One onnxruntime call for this batch alone, on a worker thread or inline."""
        args = (b.ids, b.lengths, b.h0, b.c0, outputs, b.context)
        if self._executor is None:
            return self.runtime.run(*args)
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, self.runtime.run, *args
        )


def load_model(
    path: Path,
    *,
    name: str,
    version: str = "1",
    runtime: RuntimeSettings,
    batching: BatchSettings,
    limits: LimitSettings,
    executor: Executor | None,
    metrics: Metrics,
) -> ServedModel:
    """Load and check one model file (ModelLoadError on a bad one)."""
    rt = ModelRuntime(
        path,
        device=runtime.device,
        intra_op_threads=runtime.intra_op_threads,
        allow_missing_parity=runtime.allow_missing_parity,
        cuda_tf32=runtime.cuda_tf32,
    )
    figures = device_parity.check(rt)  # None on CPU
    log.info(
        "model loaded",
        extra={
            "model": name,
            "version": version,
            "path": str(path),
            "provider": rt.provider,
            "cell": rt.cell,
            **(asdict(figures) if figures is not None else {}),
        },
    )
    served = ServedModel(
        rt,
        name=name,
        version=version,
        executor=executor,
        batching=batching,
        limits=limits,
        instances=max(1, runtime.inference_threads),
        metrics=metrics,
    )
    served.device_parity = figures
    return served


@dataclass
class ModelEntry:
    """One model name: its ready versions, and the state of every version it has tried."""

    name: str
    versions: dict[str, ServedModel] = field(default_factory=dict)
    status: dict[str, tuple[str, str]] = field(default_factory=dict)  # version: (state, reason)

    def newest(self) -> ServedModel | None:
        """The ready version with the highest number."""
        if not self.versions:
            return None
        return self.versions[max(self.versions, key=int)]


class ModelRegistry:
    """The served models by name and version; lookups check readiness. Versions are swapped in
    and out whole: a request holds the ServedModel it looked up until it ends."""

    def __init__(
        self,
        *,
        default: str,
        sequences: SequenceStore,
        on_ready: Callable[[str, str, bool], None] | None = None,
    ) -> None:
        self.entries: dict[str, ModelEntry] = {}
        self.on_ready = on_ready  # (model, version, serving) on every change
        self.default = default
        self.sequences = sequences
        self.ready = False

    def __iter__(self) -> Iterator[ServedModel]:
        return iter([m for e in self.entries.values() for m in e.versions.values()])

    def entry(self, name: str) -> ModelEntry:
        """The entry of a name, created on first use."""
        entry = self.entries.get(name)
        if entry is None:
            entry = self.entries[name] = ModelEntry(name)
        return entry

    def add(self, model: ServedModel) -> None:
        """Serve a loaded, warmed version (replacing one of the same number)."""
        entry = self.entry(model.name)
        entry.versions[model.version] = model
        entry.status[model.version] = (READY, "")
        if self.on_ready is not None:
            self.on_ready(model.name, model.version, True)

    def remove(self, name: str, version: str, reason: str) -> None:
        """Stop routing new requests to a version; calls holding it finish on it."""
        entry = self.entry(name)
        entry.versions.pop(version, None)
        entry.status[version] = (UNAVAILABLE, reason)
        if self.on_ready is not None:
            self.on_ready(name, version, False)

    def fail(self, name: str, version: str, reason: str) -> None:
        """Record a version that could not be loaded (a ready one of that number stays)."""
        entry = self.entry(name)
        if version not in entry.versions:
            entry.status[version] = (UNAVAILABLE, reason)
        else:
            entry.status[version] = (READY, f"a newer file failed to load: {reason}")

    def versions(self, name: str) -> list[str]:
        """Ready versions of a model, oldest first."""
        entry = self.entries.get(name or self.default)
        return sorted(entry.versions, key=int) if entry else []

    def find(self, name: str, version: str = "") -> ServedModel:
        """A model by name ('' means the default) and version ('' means the newest ready one);
        NotFound otherwise."""
        entry = self.entries.get(name or self.default)
        if entry is None:
            raise NotFound(f"unknown model {name or self.default!r}")
        if not entry.versions:
            why = sorted({reason for _, reason in entry.status.values() if reason})
            said = f" ({'; '.join(why)})" if why else ""
            raise NotFound(f"model {entry.name!r} has no version loaded{said}")
        if not version:
            model = entry.newest()
            assert model is not None
            return model
        model = entry.versions.get(version)
        if model is None:
            ready = ", ".join(sorted(entry.versions, key=int))
            raise NotFound(f"model {entry.name!r} has no version {version!r} (ready: {ready})")
        return model

    def serves(self, name: str, version: str = "") -> bool:
        """Whether a model (version) takes requests now; NotFound for one never heard of
        (an unloaded or failed version is known: it answers False)."""
        entry = self.entries.get(name or self.default)
        if entry is None:
            raise NotFound(f"unknown model {name or self.default!r}")
        if version and version not in entry.status:
            held = sorted((v for v in entry.status if v), key=int)  # "": the model's own failure
            known = ", ".join(held) or "none"
            raise NotFound(f"model {entry.name!r} has no version {version!r} (known: {known})")
        return bool(entry.versions.get(version) if version else entry.versions)

    def get(self, name: str, version: str = "") -> ServedModel:
        """A model ready to take requests; UNAVAILABLE before warm-up."""
        model = self.find(name, version)
        if not self.ready:
            raise Unavailable("the model is not ready yet")
        return model

    def index(self) -> list[tuple[str, str, str, str]]:
        """(name, version, state, reason) of every version the server knows of."""
        return [
            (e.name, v, state, reason)
            for e in sorted(self.entries.values(), key=lambda e: e.name)
            for v, (state, reason) in sorted(e.status.items(), key=lambda kv: int(kv[0] or -1))
        ]
