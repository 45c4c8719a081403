"""The server's interceptors, one job each: status mapping and metrics; bearer tokens; admission.

Each wraps every kind of handler: unary and streaming, and server-streaming handlers written either
as async generators or as coroutines that write with `context.write` (the health service's Watch is
one). `Registrar` applies them once, when a service is registered, so a call runs no per-call
interceptor chain (grpc.aio awaits every interceptor's `intercept_service` on every call); as
`grpc.aio.ServerInterceptor`s they wrap the same way, cached per method.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from server.admission import Admission
from server.auth import OPEN_PREFIXES, TokenStore, check_metadata
from server.errors import INTERNAL_MESSAGE, DeadlineExceeded, ServeError
from server.malformed import guard
from server.metrics import Metrics

log = logging.getLogger("rnnserve.server")

# Methods that answer while the server drains (probes and descriptions); the rest is new work.
PROBES = ("/ServerLive", "/ServerReady", "/ModelReady", "/ServerMetadata", "/ModelMetadata",
          "/RepositoryIndex",
          "/ModelConfig")  # fmt: skip

Behavior = Callable[..., Any]
WORKER_TRAILER = "rnnserve-worker"  # the answering worker process's pid (--workers > 1)


def guarded(method: str) -> bool:
    """Health and reflection stay open to probes and tools; everything else is guarded."""
    return not method.startswith(OPEN_PREFIXES)


class Layer(grpc.aio.ServerInterceptor):
    """Caches one wrapped handler per method; subclasses say how to wrap a behavior."""

    def __init__(self) -> None:
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}

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
        if handler is None:  # unknown method: gRPC answers UNIMPLEMENTED; nothing is cached
            return handler
        wrapped = self._handlers[method] = self._wrap_handler(method, handler)
        return wrapped

    def _wrap_handler(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        kw = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        for kind, make in (
            ("unary_unary", grpc.unary_unary_rpc_method_handler),
            ("unary_stream", grpc.unary_stream_rpc_method_handler),
            ("stream_unary", grpc.stream_unary_rpc_method_handler),
            ("stream_stream", grpc.stream_stream_rpc_method_handler),
        ):
            behavior = getattr(handler, kind)
            if behavior is not None:
                wrapped = self.wrap(method, behavior, streaming=kind.endswith("_stream"))
                return make(wrapped, **kw) if wrapped is not None else handler
        return handler

    def wrap(self, method: str, behavior: Behavior, streaming: bool) -> Behavior | None:
        """The behavior with this interceptor's work around it; None leaves it as it is."""
        raise NotImplementedError

    @staticmethod
    def around(
        behavior: Behavior,
        before: Callable[[Any], None],
        after: Callable[[], None] | None,
    ) -> Behavior:
        """`behavior` with `before(context)` ahead of it (raise to refuse) and `after()` once
        it ends, keeping its kind: async generator or coroutine."""
        if inspect.isasyncgenfunction(behavior):

            async def gen(request: Any, context: Any) -> AsyncIterator[Any]:
                before(context)
                try:
                    async for response in behavior(request, context):
                        yield response
                finally:
                    if after is not None:
                        after()

            return gen

        async def coro(request: Any, context: Any) -> Any:
            before(context)
            try:
                return await behavior(request, context)
            finally:
                if after is not None:
                    after()

        return coro


class StatusInterceptor(Layer):
    """Maps errors to status codes (ServeError: its code and message; anything else: INTERNAL
    with a fixed message, details to the log) and records every call's status and latency."""

    def __init__(self, metrics: Metrics, worker: str | None = None) -> None:
        super().__init__()
        self.metrics = metrics
        # With worker processes every answer names its worker in a trailer (WORKER_TRAILER).
        self.trailer = None if worker is None else ((WORKER_TRAILER, worker),)
        self._counters: dict[tuple[str, str], Any] = {}
        self._latency: dict[str, Any] = {}

    def record(self, method: str, code: str, start: float, context: Any) -> None:
        """One finished call."""
        counter = self._counters.get((method, code))
        if counter is None:
            counter = self._counters[(method, code)] = self.metrics.requests.labels(method, code)
        counter.inc()
        hist = self._latency.get(method)
        if hist is None:
            hist = self._latency[method] = self.metrics.latency.labels(method)
        elapsed = time.perf_counter() - start
        hist.observe(elapsed)
        if log.isEnabledFor(logging.DEBUG):
            extra = {"method": method, "code": code, "ms": round(elapsed * 1000, 3)}
            log.debug("request", extra=extra | {"peer": context.peer()})

    async def fail(self, method: str, start: float, context: Any, exc: BaseException) -> None:
        """Record a failed call; abort with the mapped status when `exc` is an error of ours."""
        abort: tuple[grpc.StatusCode, str] | None = None
        if isinstance(exc, ServeError):
            code, abort = exc.code, (getattr(grpc.StatusCode, exc.code), str(exc))
        elif isinstance(exc, asyncio.CancelledError | GeneratorExit):
            code = "CANCELLED"  # the caller went away: nothing to answer
        elif isinstance(exc, grpc.aio.AbortError):
            code = context.code().name if context.code() else "UNKNOWN"
        else:
            log.error("%s failed", method, exc_info=exc)
            code, abort = "INTERNAL", (grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)
        self.record(method, code, start, context)
        if abort is not None:
            # The traceback's frames hold the request (a refused text can be megabytes); cut
            # them loose now, not at the next full garbage collection of the cycle.
            exc.__traceback__ = None
            await context.abort(*abort)

    def wrap(self, method: str, behavior: Behavior, streaming: bool) -> Behavior:
        short = method.rsplit("/", 1)[-1]
        trailer = self.trailer
        if inspect.isasyncgenfunction(behavior):

            async def gen(request: Any, context: Any) -> AsyncIterator[Any]:
                start = time.perf_counter()
                if trailer is not None:
                    context.set_trailing_metadata(trailer)
                try:
                    async for response in behavior(request, context):
                        yield response
                except BaseException as exc:
                    if isinstance(exc, GeneratorExit):
                        self.record(short, "CANCELLED", start, context)
                    else:
                        await self.fail(short, start, context, exc)
                    raise
                self.record(short, "OK", start, context)

            return gen

        async def coro(request: Any, context: Any) -> Any:
            start = time.perf_counter()
            if trailer is not None:
                context.set_trailing_metadata(trailer)
            try:
                response = await behavior(request, context)
            except BaseException as exc:
                await self.fail(short, start, context, exc)
                raise
            self.record(short, "OK", start, context)
            return response

        return coro


class AuthInterceptor(Layer):
    """Guarded methods need an accepted bearer token (UNAUTHENTICATED / PERMISSION_DENIED)."""

    def __init__(self, tokens: TokenStore) -> None:
        super().__init__()
        self.tokens = tokens

    def _check(self, context: Any) -> None:
        check_metadata(self.tokens, context.invocation_metadata())

    def wrap(self, method: str, behavior: Behavior, streaming: bool) -> Behavior | None:
        return self.around(behavior, self._check, None) if guarded(method) else None


class AdmissionInterceptor(Layer):
    """Guarded calls pass the admission's limits and the deadline check before any work."""

    def __init__(self, admission: Admission) -> None:
        super().__init__()
        self.admission = admission

    @staticmethod
    def _deadline(context: Any) -> None:
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:
            raise DeadlineExceeded("the deadline passed before the request ran")

    def wrap(self, method: str, behavior: Behavior, streaming: bool) -> Behavior | None:
        if not guarded(method):
            return None
        work = not method.endswith(PROBES)
        adm = self.admission
        kind = "stream" if streaming else "unary" if work else "probe"  # probes: never refused
        enter, leave = getattr(adm, f"enter_{kind}"), getattr(adm, f"leave_{kind}")

        def before(context: Any) -> None:
            enter(work)
            try:
                self._deadline(context)
            except BaseException:
                leave()
                raise

        return self.around(behavior, before, leave)


Readers = dict[str, Callable[[bytes], Any]] | None  # request deserializers by method


class Registrar:
    """Stands in for the server when services are added: every method handler is wrapped by
    `layers` (outermost first) once, then registered on `server`; a method named in
    `deserializers` (/package.Service/Method) reads its requests with that function."""

    def __init__(
        self, server: grpc.aio.Server, layers: list[Layer], deserializers: Readers = None
    ) -> None:
        self.server = server
        self.layers = layers
        self.deserializers = deserializers or {}

    def wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        """`handler` of `method` (/package.Service/Method) inside every layer."""
        read = self.deserializers.get(method) or handler.request_deserializer
        handler = guard(method, handler._replace(request_deserializer=read))  # type: ignore[attr-defined]
        for layer in reversed(self.layers):
            handler = layer._wrap_handler(method, handler)
        return handler

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        """What generated `add_*Servicer_to_server` calls for its methods."""
        wrapped = {name: self.wrap(f"/{service}/{name}", h) for name, h in handlers.items()}
        self.server.add_registered_method_handlers(service, wrapped)

    def add_generic_rpc_handlers(self, handlers: tuple[grpc.GenericRpcHandler, ...]) -> None:
        """What generated code calls for the same methods by name (the fallback lookup)."""
        self.server.add_generic_rpc_handlers(tuple(_WrappedGeneric(self, h) for h in handlers))


class _WrappedGeneric(grpc.GenericRpcHandler):
    """A generic handler whose answers come wrapped, built once per method."""

    def __init__(self, registrar: Registrar, inner: grpc.GenericRpcHandler) -> None:
        self.registrar = registrar
        self.inner = inner
        self._cache: dict[str, grpc.RpcMethodHandler] = {}

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method: str = details.method  # type: ignore[attr-defined]
        cached = self._cache.get(method)
        if cached is None:
            handler = self.inner.service(details)
            if handler is None:
                return None
            cached = self._cache[method] = self.registrar.wrap(method, handler)
        return cached
