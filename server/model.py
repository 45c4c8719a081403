"""A served model (session, validator, labels, batcher, sequences) and the registry of them.

Code below the servicers receives a `ServedModel`, never a model name. numpy only; no grpc.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Iterator
from concurrent.futures import Executor
from pathlib import Path

import numpy as np

from server.batcher import Batcher
from server.decoding import Labels
from server.errors import NotFound, Unavailable
from server.metrics import Metrics
from server.runtime import ModelRuntime
from server.sequences import SequenceStore
from server.settings import BatchSettings, LimitSettings, RuntimeSettings
from server.validation import Batch, InputValidator

log = logging.getLogger("rnnserve.runtime")

VERSION = "1"  # one version per model until the repository serves several


class ServedModel:
    """Everything the data plane needs of one model version, looked up once per request."""

    def __init__(
        self,
        runtime: ModelRuntime,
        *,
        name: str,
        executor: Executor | None,
        batching: BatchSettings,
        limits: LimitSettings,
        instances: int,
        metrics: Metrics,
    ) -> None:
        self.runtime = runtime
        self.name = name
        self.version = VERSION
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
        self._tokens = metrics.tokens.labels(name)
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
        self.sequences: SequenceStore | None = None
        if self.streaming:  # a unidirectional model carries its state across v2 requests
            self.sequences = SequenceStore(
                limits.max_sequences,
                limits.sequence_idle_timeout,
                on_change=metrics.live_sequences.set,
            )

    @property
    def provider(self) -> str:
        """The onnxruntime execution provider the model runs on."""
        return self.runtime.provider

    async def run(self, batch: Batch, outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        """One validated batch through the batcher, a worker thread, or inline."""
        if self.batcher is not None:
            full = await self.batcher.submit(batch.ids, batch.lengths, batch.h0, batch.c0)
            out = {k: full[k] for k in outputs} if outputs else full
        elif self._executor is None:
            out = self.runtime.run(batch.ids, batch.lengths, batch.h0, batch.c0, outputs)
        else:
            loop = asyncio.get_running_loop()
            out = await loop.run_in_executor(
                self._executor,
                self.runtime.run,
                batch.ids,
                batch.lengths,
                batch.h0,
                batch.c0,
                outputs,
            )
        self._tokens.inc(int(batch.lengths.sum()))
        return out


def load_model(
    path: Path,
    *,
    name: str,
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
    )
    log.info(
        "model loaded",
        extra={"model": name, "path": str(path), "provider": rt.provider, "cell": rt.cell},
    )
    return ServedModel(
        rt,
        name=name,
        executor=executor,
        batching=batching,
        limits=limits,
        instances=max(1, runtime.inference_threads),
        metrics=metrics,
    )


class ModelRegistry:
    """The served models by name; lookups check the version and readiness."""

    def __init__(self, models: Iterable[ServedModel]) -> None:
        self.models = {m.name: m for m in models}
        self.default = next(iter(self.models))
        self.ready = False

    def __iter__(self) -> Iterator[ServedModel]:
        return iter(self.models.values())

    def find(self, name: str, version: str = "") -> ServedModel:
        """A model by name ('' means the default) and version ('' means the newest); NotFound."""
        model = self.models.get(name or self.default)
        if model is None:
            raise NotFound(f"unknown model {name!r}")
        if version not in ("", model.version):
            raise NotFound(
                f"model {model.name!r} has no version {version!r} (versions: {model.version})"
            )
        return model

    def get(self, name: str, version: str = "") -> ServedModel:
        """A model ready to take requests; UNAVAILABLE before warm-up."""
        model = self.find(name, version)
        if not self.ready:
            raise Unavailable("the model is not ready yet")
        return model
