"""Assemble the gRPC server: servicers, health, reflection, metrics, the status interceptor.

`build_app(settings)` loads the model and binds the port (0 picks one) without serving;
`serve(settings)` runs it until SIGTERM/SIGINT, then drains.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from rnnserve.kserve import grpc_predict_v2_pb2, grpc_predict_v2_pb2_grpc
from rnnserve.v1 import rnnserve_pb2, rnnserve_pb2_grpc
from server import repository
from server.admission import Admission
from server.auth import TokenStore
from server.dataplane import DataPlane
from server.errors import ModelLoadError
from server.interceptors import AdmissionInterceptor, AuthInterceptor, StatusInterceptor
from server.kserve_servicer import InferenceServicer
from server.loader import ModelLoader
from server.metrics import Metrics
from server.model import ModelRegistry
from server.sequences import SequenceStore
from server.settings import Settings
from server.transport import bind, grpc_options, server_credentials
from server.typed_servicer import ParserServicer

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

    async def start(self) -> None:
        """Start accepting calls (health says NOT_SERVING until warm-up)."""
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

    async def warmup(self) -> None:
        """Run the model a few times, then report SERVING."""
        loop = asyncio.get_running_loop()
        for model in self.registry:
            await loop.run_in_executor(
                self.executor, model.runtime.warmup, self.settings.warmup_runs
            )
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
        await self.server.stop(max(0.0, deadline - time.monotonic()))
        for model in self.registry:
            if model.batcher is not None:
                await model.batcher.stop()
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
            names = sorted(repository.scan(root))
        except repository.RepositoryError as exc:
            raise ModelLoadError(str(exc)) from None
        default = settings.default_model or (names[0] if names else "")

        def source() -> dict[str, repository.ModelSource]:
            return repository.scan(root)

    else:
        default = settings.default_model or settings.name

        def source() -> dict[str, repository.ModelSource]:
            return repository.single(settings.model, settings.name)

    limits = settings.limits
    sequences = SequenceStore(
        limits.max_sequences, limits.sequence_idle_timeout, on_change=metrics.live_sequences.set
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


def build_app(settings: Settings) -> App:
    """Load the model (ModelLoadError on a bad file) and bind the server; call inside a loop."""
    metrics = Metrics()
    tokens = None  # the cheap checks first: files named in flags, before the model loads
    if settings.auth_token_file:
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
    interceptors: list[grpc.aio.ServerInterceptor] = [StatusInterceptor(metrics)]
    if tokens is not None:
        interceptors.append(AuthInterceptor(tokens))
    interceptors.append(AdmissionInterceptor(admission))
    server = grpc.aio.server(interceptors=interceptors, options=grpc_options(settings))
    rnnserve_pb2_grpc.add_ParserServicer_to_server(ParserServicer(plane), server)
    grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
        InferenceServicer(plane), server
    )
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        (
            *SERVICE_NAMES,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    port = bind(server, settings, credentials)
    app = App(settings, server, port, registry, loader, admission, health, metrics, executor)
    if settings.metrics_port >= 0:
        try:
            app.metrics_port = metrics.serve(settings.host, settings.metrics_port)
        except OSError as exc:
            where = f"{settings.host}:{settings.metrics_port}"
            reason = exc.strerror or str(exc)
            raise OSError(f"cannot bind the metrics port {where} ({reason})") from None
    return app


async def serve(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT, then drain within settings.drain_seconds."""
    t0 = time.perf_counter()
    app = build_app(settings)
    await app.start()
    rt = app.registry.find("")
    models = sorted({f"{m.name}:{m.version}" for m in app.registry})
    log.info(
        "listening",
        extra={
            "host": settings.host,
            "port": app.port,
            "metrics_port": app.metrics_port,
            "model": rt.name,
            "models": models,
            "cell": rt.cell,
            "provider": rt.provider,
        },
    )
    await app.warmup()
    log.info("serving", extra={"model": rt.name, "startup_s": round(time.perf_counter() - t0, 3)})
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("draining", extra={"grace_s": settings.drain_seconds})
    await app.drain(settings.drain_seconds)
    log.info("stopped")
