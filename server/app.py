"""Assemble the gRPC server: servicers, health, reflection, metrics, the status interceptor.

`build_app(settings)` loads the model and binds the port (0 picks one) without serving;
`serve(settings)` runs it until SIGTERM/SIGINT, then drains.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from rnnserve.kserve import grpc_predict_v2_pb2, grpc_predict_v2_pb2_grpc
from rnnserve.v1 import rnnserve_pb2, rnnserve_pb2_grpc
from server.auth import OPEN_PREFIXES, TokenStore, check_metadata
from server.batcher import Batcher
from server.dataplane import DataPlane
from server.errors import (
    INTERNAL_MESSAGE,
    DeadlineExceeded,
    ModelLoadError,
    ResourceExhausted,
    ServeError,
)
from server.kserve_servicer import InferenceServicer
from server.metrics import Metrics
from server.runtime import ModelRuntime
from server.sequences import SequenceStore
from server.settings import Settings
from server.typed_servicer import ParserServicer

log = logging.getLogger("rnnserve.server")
DRAIN_QUIET_S = 0.2

SERVICE_NAMES = (
    rnnserve_pb2.DESCRIPTOR.services_by_name["Parser"].full_name,
    grpc_predict_v2_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name,
)


class StatusInterceptor(grpc.aio.ServerInterceptor):
    """The one interceptor: bearer-token check, errors to status codes, counts and timing.

    The wrapped handler of each method is built once and cached: the per-call cost is one
    coroutine frame, a token check when tokens are configured, and two metric updates.
    """

    def __init__(
        self, metrics: Metrics, tokens: TokenStore | None = None, max_queue: int = 0
    ) -> None:
        self.metrics = metrics
        self.tokens = tokens
        self.max_queue = max_queue  # unary calls in progress at once; 0: no bound here
        self.unary_active = 0
        self.active = 0  # calls in progress, health and reflection excepted (drain waits on it)
        self.last_start = 0.0  # monotonic time the last such call started
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}
        self._counters: dict[tuple[str, str], Any] = {}
        self._latency: dict[str, Any] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method: str = details.method  # type: ignore[attr-defined]
        cached = self._handlers.get(method)
        if cached is not None:
            return cached
        handler = await continuation(details)
        if handler is None:
            return handler
        wrapped = self._wrap(method, handler)
        self._handlers[method] = wrapped
        return wrapped

    def _wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        short = method.rsplit("/", 1)[-1]
        guarded = not method.startswith(OPEN_PREFIXES)
        kw = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(short, handler.unary_unary, guarded), **kw
            )
        if handler.stream_stream:
            return grpc.stream_stream_rpc_method_handler(
                self._stream(short, handler.stream_stream, guarded), **kw
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self._stream(short, handler.unary_stream, guarded), **kw
            )
        return handler

    def _admit(self, context: Any, guarded: bool) -> None:
        """Token and deadline checks before any work (raise ServeError to refuse)."""
        if guarded:
            self.last_start = time.monotonic()
            if self.tokens is not None:
                check_metadata(self.tokens, context.invocation_metadata())
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:
            raise DeadlineExceeded("the deadline passed before the request ran")

    def _record(self, method: str, code: str, start: float, context: Any) -> None:
        elapsed = time.perf_counter() - start
        counter = self._counters.get((method, code))
        if counter is None:
            counter = self._counters[(method, code)] = self.metrics.requests.labels(method, code)
        counter.inc()
        hist = self._latency.get(method)
        if hist is None:
            hist = self._latency[method] = self.metrics.latency.labels(method)
        hist.observe(elapsed)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "request",
                extra={
                    "method": method,
                    "code": code,
                    "ms": round(elapsed * 1000, 3),
                    "peer": context.peer(),
                },
            )

    async def _fail(self, method: str, start: float, context: Any, exc: BaseException) -> None:
        """Record a failed call; abort with the mapped status when `exc` is an error of ours."""
        abort: tuple[grpc.StatusCode, str] | None = None
        if isinstance(exc, ServeError):
            code, abort = exc.code, (getattr(grpc.StatusCode, exc.code), str(exc))
        elif isinstance(exc, asyncio.CancelledError):
            code = "CANCELLED"
        elif isinstance(exc, grpc.aio.AbortError):
            code = context.code().name if context.code() else "UNKNOWN"
        else:
            log.error("%s failed", method, exc_info=exc)
            code, abort = "INTERNAL", (grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)
        self._record(method, code, start, context)
        if abort is not None:
            await context.abort(*abort)

    def _unary(self, method: str, behavior: Callable[..., Any], guarded: bool) -> Any:
        async def wrapped(request: Any, context: Any) -> Any:
            start = time.perf_counter()
            self.active += guarded
            self.unary_active += guarded
            try:
                if guarded and self.max_queue and self.unary_active > self.max_queue:
                    raise ResourceExhausted(
                        f"the server is at capacity ({self.max_queue} requests in progress); "
                        "retry with backoff"
                    )
                self._admit(context, guarded)
                response = await behavior(request, context)
            except BaseException as exc:
                await self._fail(method, start, context, exc)
                raise
            finally:
                self.active -= guarded
                self.unary_active -= guarded
            self._record(method, "OK", start, context)
            return response

        return wrapped

    def _stream(self, method: str, behavior: Callable[..., Any], guarded: bool) -> Any:
        async def wrapped(request: Any, context: Any) -> AsyncIterator[Any]:
            start = time.perf_counter()
            self.active += guarded
            try:
                self._admit(context, guarded)
                async for response in behavior(request, context):
                    yield response
            except GeneratorExit:  # the caller went away mid-stream: nothing to answer
                self._record(method, "CANCELLED", start, context)
                raise
            except BaseException as exc:
                await self._fail(method, start, context, exc)
                raise
            finally:
                self.active -= guarded
            self._record(method, "OK", start, context)

        return wrapped


@dataclass
class App:
    """A built server: bound, not yet serving until `start()`, not SERVING until `warmup()`."""

    settings: Settings
    server: grpc.aio.Server
    port: int
    plane: DataPlane
    health: HealthServicer
    metrics: Metrics
    executor: ThreadPoolExecutor
    interceptor: StatusInterceptor
    metrics_port: int | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self) -> None:
        """Start accepting calls (health says NOT_SERVING until warm-up)."""
        for name in ("", *SERVICE_NAMES):
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        for batcher in self.plane.batchers.values():
            batcher.start()
        loop = asyncio.get_running_loop()
        self.tasks = [loop.create_task(s.reaper()) for s in self.plane.sequences.values()]
        await self.server.start()

    async def warmup(self) -> None:
        """Run the model a few times, then report SERVING."""
        loop = asyncio.get_running_loop()
        for rt in self.plane.models.values():
            await loop.run_in_executor(self.executor, rt.warmup, self.settings.warmup_runs)
        self.plane.ready = True
        self.metrics.ready.set(1)
        for name in ("", *SERVICE_NAMES):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)

    async def drain(self, grace: float) -> None:
        """NOT_SERVING, refuse new work, let in-flight calls finish within `grace` seconds.

        While calls are in progress the server keeps its port open and answers new calls
        UNAVAILABLE itself (a clear, retryable status), then closes the transport.
        """
        self.plane.draining = True
        self.metrics.ready.set(0)
        await self.health.enter_graceful_shutdown()
        deadline = time.monotonic() + grace
        quiet = min(DRAIN_QUIET_S, grace)
        # Calls queued in gRPC's core but not yet started would be cancelled by stop(): keep
        # answering until none is running and none has started for `quiet` seconds.
        while time.monotonic() < deadline and (
            self.interceptor.active or time.monotonic() - self.interceptor.last_start < quiet
        ):
            await asyncio.sleep(0.005)
        await self.server.stop(max(0.0, deadline - time.monotonic()))
        for batcher in self.plane.batchers.values():
            await batcher.stop()
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


def build_app(settings: Settings) -> App:
    """Load the model (ModelLoadError on a bad file) and bind the server; call inside a loop."""
    runtime = ModelRuntime(
        settings.model,
        settings.name,
        settings.device,
        settings.intra_op_threads,
        settings.allow_missing_parity,
        settings.max_tokens,
    )
    executor = ThreadPoolExecutor(
        max_workers=max(1, settings.inference_threads), thread_name_prefix="onnxruntime"
    )
    inline = settings.inference_threads == 0  # onnxruntime on the event loop thread
    metrics = Metrics()
    batchers = {}
    if settings.max_batch_size > 1:
        batchers[runtime.name] = Batcher(
            runtime,
            None if inline else executor,
            settings.inference_threads,
            settings.max_batch_size,
            settings.max_batch_delay_us / 1e6,
            metrics.record_batch,
        )
    sequences = {}
    if not runtime.bidirectional:
        sequences[runtime.name] = SequenceStore(
            settings.max_sequences,
            settings.sequence_idle_timeout,
            on_change=metrics.live_sequences.set,
        )
    plane = DataPlane(
        [runtime],
        executor,
        settings.default_top_k,
        metrics,
        batchers,
        inline,
        sequences,
        settings.max_streams,
    )
    opts = [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.so_reuseport", 0),
    ]
    if settings.max_connection_age > 0:  # GOAWAY after this age; calls in flight get the grace
        opts += [
            ("grpc.max_connection_age_ms", int(settings.max_connection_age * 1000)),
            ("grpc.max_connection_age_grace_ms", int(settings.drain_seconds * 1000)),
        ]
    tokens = None
    if settings.auth_token_file:
        try:
            tokens = TokenStore(settings.auth_token_file)
        except ValueError as exc:
            raise ModelLoadError(str(exc)) from None
    status = StatusInterceptor(metrics, tokens, settings.max_queue)
    interceptors: list[grpc.aio.ServerInterceptor] = [status]
    credentials = _server_credentials(settings)
    server = grpc.aio.server(interceptors=interceptors, options=opts)
    rnnserve_pb2_grpc.add_ParserServicer_to_server(ParserServicer(plane), server)
    grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
        InferenceServicer(
            plane,
            max(1, settings.inference_threads),
            settings.max_batch_rows,
            settings.max_batch_size,
            settings.max_batch_delay_us,
        ),
        server,
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
    address = f"{settings.host}:{settings.port}"
    if credentials is None:
        port = server.add_insecure_port(address)
    else:
        port = server.add_secure_port(address, credentials)
    if port == 0:
        raise OSError(f"cannot bind {settings.host}:{settings.port}")
    app = App(settings, server, port, plane, health, metrics, executor, status)
    if settings.metrics_port >= 0:
        app.metrics_port = metrics.serve(settings.host, settings.metrics_port)
    return app


async def serve(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT, then drain within settings.drain_seconds."""
    t0 = time.perf_counter()
    app = build_app(settings)
    await app.start()
    rt = app.plane.models[settings.name]
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
