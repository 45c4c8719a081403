"""Assemble the gRPC server: servicers, health, reflection, metrics, the status interceptor.

`build_app(settings)` loads the model and binds the port (0 picks one) without serving;
`serve(settings)` runs it until SIGTERM/SIGINT, then drains.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc

from rnnserve.kserve import grpc_predict_v2_pb2, grpc_predict_v2_pb2_grpc
from rnnserve.v1 import rnnserve_pb2, rnnserve_pb2_grpc
from server import repository, signals
from server.admission import Admission
from server.auth import TokenStore
from server.dataplane import DataPlane
from server.errors import ModelLoadError
from server.generation_service import GenerationService, from_repository
from server.graph_servicer import GraphInferenceServicer
from server.interceptors import (
    AdmissionInterceptor,
    AuthInterceptor,
    Layer,
    Registrar,
    StatusInterceptor,
)
from server.loader import ModelLoader
from server.metrics import Metrics
from server.model import ModelRegistry
from server.sequences import SequenceStore
from server.settings import Settings
from server.transport import bind, grpc_options, server_credentials
from server.typed_servicer import ParserServicer, deserializers

if TYPE_CHECKING:
    from server.worker import WorkerLink

log = logging.getLogger("rnnserve.server")
DRAIN_QUIET_S = 0.2

SERVICE_NAMES = (
    rnnserve_pb2.DESCRIPTOR.services_by_name["Parser"].full_name,
    grpc_predict_v2_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name,
)


@dataclass
class App:
    """A built server: bound, not yet serving until `start()`, not SERVING until `warmup()`."""

    settings: Settings
    server: grpc.aio.Server
    port: int
    registry: ModelRegistry
    loader: ModelLoader
    admission: Admission
    health: HealthServicer
    metrics: Metrics
    executor: ThreadPoolExecutor
    metrics_port: int | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    generation: GenerationService = field(default_factory=GenerationService)

    async def start(self) -> None:
        """Start accepting calls (health says NOT_SERVING until warm-up, unless warm already)."""
        if not self.registry.ready:
            for name in ("", *SERVICE_NAMES):
                await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        loop = asyncio.get_running_loop()
        for model in self.registry:
            if model.batcher is not None:
                model.batcher.start()
        self.tasks.append(loop.create_task(self.registry.sequences.reaper()))
        if self.settings.model_control_mode == "poll":
            poll = self.loader.poll(self.settings.repository_poll_seconds)
            self.tasks.append(loop.create_task(poll))
        await self.server.start()

    async def warmup(self, runs: int | None = None) -> None:
        """Run the model a few times (`runs`, default --warmup-runs), then report SERVING."""
        loop = asyncio.get_running_loop()
        runs = self.settings.warmup_runs if runs is None else runs
        await self.loader.warm_all(runs, self.executor)  # a version whose runs fail: retired
        await loop.run_in_executor(self.executor, self.generation.warmup, runs)
        self.registry.ready = True
        self.metrics.ready.set(1)
        for name in ("", *SERVICE_NAMES):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)

    async def drain(self, grace: float) -> None:
        """NOT_SERVING, refuse new work, let in-flight calls finish within `grace` seconds.

        While calls are in progress the server keeps its port open and answers new calls
        UNAVAILABLE itself (a clear, retryable status), then closes the transport.
        """
        self.metrics.ready.set(0)
        await self.health.enter_graceful_shutdown()
        deadline = time.monotonic() + grace
        # Calls queued in gRPC's core but not yet started would be cancelled by stop(): keep
        # answering until none is running and none has started for a quiet moment.
        await self.admission.drain(grace, min(DRAIN_QUIET_S, grace))
        # No work is left (or no time): what may remain are health watches, which never end
        # by themselves. A quiet moment for them, not the rest of the grace.
        await self.server.stop(min(DRAIN_QUIET_S, max(0.0, deadline - time.monotonic())))
        for model in self.registry:
            if model.batcher is not None:
                await model.batcher.stop()
        await self.generation.stop()
        for task in self.tasks:
            task.cancel()
        self.loader.close()
        self.executor.shutdown(wait=True)


def _models(
    settings: Settings, metrics: Metrics, executor: ThreadPoolExecutor
) -> tuple[ModelRegistry, ModelLoader]:
    """The registry, filled from the repository (or the one --model file) by the loader."""
    if settings.model_repository:
        root = Path(settings.model_repository)
        try:
            repository.scan(root)  # a repository that cannot be read fails here
        except repository.RepositoryError as exc:
            raise ModelLoadError(str(exc)) from None
        default = settings.default_model  # none: the first model by name that loads

        def source() -> dict[str, repository.ModelSource]:
            return repository.scan(root)

    else:
        default = settings.default_model or settings.name

        def source() -> dict[str, repository.ModelSource]:
            return repository.single(settings.model, settings.name)

    limits = settings.limits
    sequences = SequenceStore(
        limits.max_sequences,
        limits.sequence_idle_timeout,
        on_change=metrics.live_sequences.set,
        workers=settings.workers,
    )
    registry = ModelRegistry(
        default=default,
        sequences=sequences,
        on_ready=lambda name, version, up: metrics.model_ready.labels(name, version).set(up),
    )
    loader = ModelLoader(
        registry,
        source=source,
        mode=settings.model_control_mode,
        runtime=settings.runtime,
        batching=settings.batching,
        limits=limits,
        executor=None if settings.inference_threads == 0 else executor,
        metrics=metrics,
    )
    loader.load_initial()
    return registry, loader


def build_app(settings: Settings, worker: WorkerLink | None = None) -> App:
    """Load the model (ModelLoadError on a bad file) and bind the server; call inside a loop.

    A worker process (`worker`) names itself in every answer's `rnnserve-worker` trailer."""
    metrics = Metrics(auth_tokens=bool(settings.auth_token_file))
    tokens = None  # the cheap checks first: files named in flags, before the model loads
    if metrics.auth_tokens is not None:
        try:
            tokens = TokenStore(settings.auth_token_file, on_change=metrics.auth_tokens.set)
        except ValueError as exc:
            raise ModelLoadError(str(exc)) from None
    credentials = server_credentials(settings)
    runtime = settings.runtime
    executor = ThreadPoolExecutor(
        max_workers=max(1, runtime.inference_threads), thread_name_prefix="onnxruntime"
    )
    registry, loader = _models(settings, metrics, executor)
    admission = Admission(
        max_queue=settings.max_queue,
        max_streams=settings.max_streams,
        on_streams=metrics.open_streams.set,
    )
    plane = DataPlane(registry, admission, loader)
    generation = from_repository(settings, executor, metrics)
    tag = None if worker is None else str(os.getpid())
    layers: list[Layer] = [StatusInterceptor(metrics, tag)]
    if tokens is not None:
        layers.append(AuthInterceptor(tokens))
    layers.append(AdmissionInterceptor(admission))
    server = grpc.aio.server(options=grpc_options(settings))
    services = Registrar(server, layers, deserializers())  # wrapped once, not on every call
    rnnserve_pb2_grpc.add_ParserServicer_to_server(ParserServicer(plane, generation), services)
    grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
        GraphInferenceServicer(plane, generation, settings.max_message_bytes), services
    )
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, services)
    reflected = (
        *SERVICE_NAMES,
        health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
        reflection.SERVICE_NAME,
    )
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
        reflection.aio.ReflectionServicer(reflected), services
    )
    port = bind(server, settings, credentials)
    app = App(settings, server, port, registry, loader, admission, health, metrics, executor)
    app.generation = generation
    if settings.metrics_port >= 0:
        try:
            app.metrics_port = metrics.serve(settings.host, settings.metrics_port)
        except OSError as exc:
            where = f"{settings.host}:{settings.metrics_port}"
            reason = exc.strerror or str(exc)
            raise OSError(f"cannot bind the metrics port {where} ({reason})") from None
    return app


def _describe(app: App) -> dict[str, object]:
    rt = app.registry.find("")
    return {
        "model": rt.name,
        "models": sorted({f"{m.name}:{m.version}" for m in app.registry}),
        "cell": rt.cell,
        "provider": rt.provider,
    }


async def serve(settings: Settings, worker: WorkerLink | None = None) -> None:
    """Run until SIGTERM or SIGINT, then drain within settings.drain_seconds.

    A worker process (`worker`) reports to its parent instead of logging 'listening' and
    'serving'; it is warm before it binds, so the kernel hands it no connection before it can
    answer (server/workers.py)."""
    t0 = time.perf_counter()
    stop = asyncio.Event()
    try:
        # From the start: a SIGTERM while the models load is kept and drains once they have
        # (as PID 1 in a container, a signal without a handler is dropped, not fatal).
        signals.stop_on(stop, None if worker is None else worker.parent_fd)
        await _run(settings, worker, stop, t0)
    finally:
        signals.release()


async def _run(
    settings: Settings, worker: WorkerLink | None, stop: asyncio.Event, t0: float
) -> None:
    app = build_app(settings, worker)
    try:
        if worker is None:
            await app.start()
            log.info(
                "listening",
                extra={
                    "host": settings.host,
                    "port": app.port,
                    "metrics_port": app.metrics_port,
                    **_describe(app),
                },
            )
            if not stop.is_set():  # a signal caught while loading: drain without warming up
                await app.warmup()
                log.info(
                    "serving",
                    extra={"model": app.registry.find("").name, "startup_s": _since(t0)},
                )
        else:
            await app.warmup()  # before the socket listens: no connection waits on a cold worker
            worker.send("listening", **_describe(app))
            await app.start()
            worker.send("serving", startup_s=_since(t0))
    except ModelLoadError:  # no default model survived its warm-up runs: stop cleanly
        await app.server.stop(0)
        raise
    await stop.wait()
    log.info("draining", extra={"grace_s": settings.drain_seconds})
    await app.drain(settings.drain_seconds)
    log.info("stopped")


def _since(t0: float) -> float:
    return round(time.perf_counter() - t0, 3)
