"""Assemble the gRPC server: servicers, health, reflection, metrics, the status interceptor.

`build_app(settings)` loads the model and binds the port (0 picks one) without serving;
`serve(settings)` runs it until SIGTERM/SIGINT, then drains.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
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
from server.admission import Admission
from server.auth import TokenStore
from server.dataplane import DataPlane
from server.errors import ModelLoadError
from server.interceptors import AdmissionInterceptor, AuthInterceptor, StatusInterceptor
from server.kserve_servicer import InferenceServicer
from server.metrics import Metrics
from server.model import ModelRegistry, load_model
from server.settings import Settings
from server.typed_servicer import ParserServicer

log = logging.getLogger("rnnserve.server")
DRAIN_QUIET_S = 0.2
PENDING_FLOOR = 4096  # calls gRPC's core may hold before the server takes them

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
            if model.sequences is not None:
                self.tasks.append(loop.create_task(model.sequences.reaper()))
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
        self.executor.shutdown(wait=True)


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ModelLoadError(f"{path}: cannot read the {what} ({exc.strerror})") from None


def _server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS (and mutual TLS with --tls-client-ca) credentials, or None for plaintext."""
    if not settings.tls_cert:
        return None
    cert = _read(settings.tls_cert, "TLS certificate")
    key = _read(settings.tls_key, "TLS key")
    client_ca = _read(settings.tls_client_ca, "client CA") if settings.tls_client_ca else None
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


def _grpc_options(settings: Settings) -> list[tuple[str, int]]:
    pending = max(PENDING_FLOOR, 16 * (settings.max_queue + settings.max_streams))
    opts = [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.so_reuseport", 0),
        # gRPC's core cancels calls beyond this backlog (1,000 by default) before the server
        # sees them; let admission see every call and answer RESOURCE_EXHAUSTED itself.
        ("grpc.server.max_pending_requests", pending),
        ("grpc.server.max_pending_requests_hard_limit", pending),
    ]
    if settings.max_connection_age > 0:  # GOAWAY after this age; calls in flight get the grace
        opts += [
            ("grpc.max_connection_age_ms", int(settings.max_connection_age * 1000)),
            ("grpc.max_connection_age_grace_ms", int(settings.drain_seconds * 1000)),
        ]
    return opts


def _probe(host: str, port: int, what: str) -> None:
    """OSError naming the address when `port` cannot be bound (before gRPC's core tries and
    logs its own lines)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        for family, kind, proto, _, addr in infos:
            with socket.socket(family, kind, proto) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(addr)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise OSError(f"cannot bind the {what} port {host}:{port} ({reason})") from None


def _bind(
    server: grpc.aio.Server, settings: Settings, credentials: grpc.ServerCredentials | None
) -> int:
    """Bind the gRPC port (TLS when configured); OSError naming the address when it is taken."""
    address = f"{settings.host}:{settings.port}"
    if settings.port:
        _probe(settings.host, settings.port, "gRPC")
    try:
        if credentials is None:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, credentials)
    except RuntimeError:  # grpcio raises instead of returning 0 on some failures
        port = 0
    if port == 0:
        raise OSError(f"cannot bind the gRPC port {address}")
    return port


def build_app(settings: Settings) -> App:
    """Load the model (ModelLoadError on a bad file) and bind the server; call inside a loop."""
    metrics = Metrics()
    tokens = None  # the cheap checks first: files named in flags, before the model loads
    if settings.auth_token_file:
        try:
            tokens = TokenStore(settings.auth_token_file, on_change=metrics.auth_tokens.set)
        except ValueError as exc:
            raise ModelLoadError(str(exc)) from None
    credentials = _server_credentials(settings)
    runtime = settings.runtime
    executor = ThreadPoolExecutor(
        max_workers=max(1, runtime.inference_threads), thread_name_prefix="onnxruntime"
    )
    model = load_model(
        settings.model,
        name=settings.name,
        runtime=runtime,
        batching=settings.batching,
        limits=settings.limits,
        executor=None if runtime.inference_threads == 0 else executor,
        metrics=metrics,
    )
    registry = ModelRegistry([model])
    admission = Admission(
        max_queue=settings.max_queue,
        max_streams=settings.max_streams,
        on_streams=metrics.open_streams.set,
    )
    plane = DataPlane(registry, admission)
    interceptors: list[grpc.aio.ServerInterceptor] = [StatusInterceptor(metrics)]
    if tokens is not None:
        interceptors.append(AuthInterceptor(tokens))
    interceptors.append(AdmissionInterceptor(admission))
    server = grpc.aio.server(interceptors=interceptors, options=_grpc_options(settings))
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
    port = _bind(server, settings, credentials)
    app = App(settings, server, port, registry, admission, health, metrics, executor)
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
    rt = app.registry.find(settings.name)
    log.info(
        "listening",
        extra={
            "host": settings.host,
            "port": app.port,
            "metrics_port": app.metrics_port,
            "model": settings.name,
            "cell": rt.cell,
            "provider": rt.provider,
        },
    )
    await app.warmup()
    log.info(
        "serving", extra={"model": settings.name, "startup_s": round(time.perf_counter() - t0, 3)}
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("draining", extra={"grace_s": settings.drain_seconds})
    await app.drain(settings.drain_seconds)
    log.info("stopped")
