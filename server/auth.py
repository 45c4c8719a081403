"""Bearer-token authentication: one interceptor, tokens from a file re-read when it changes."""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc

log = logging.getLogger("rnnserve.auth")

# Health and reflection stay open: probes and tools must work without a token.
OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
HEADER = "authorization"
SCHEME = "bearer "


class TokenStore:
    """The accepted tokens; the file is re-read whenever its size, mtime or inode changes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._stamp: tuple[int, int, int] | None = None
        self._tokens: list[bytes] = []
        self.tokens()  # fail at start-up if the file cannot be read
        if not self._tokens:
            raise ValueError(f"{self.path}: no tokens (one per line)")

    def tokens(self) -> list[bytes]:
        """Current tokens (the old list is kept if the file is briefly unreadable)."""
        try:
            st = os.stat(self.path)
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
            if stamp != self._stamp:
                lines = self.path.read_text(encoding="utf-8").splitlines()
                fresh = [
                    ln.strip().encode()
                    for ln in lines
                    if ln.strip() and not ln.lstrip().startswith("#")
                ]
                if fresh:
                    self._tokens = fresh
                    self._stamp = stamp
                    log.info("auth tokens loaded", extra={"count": len(fresh)})  # never the tokens
        except OSError as exc:
            if self._stamp is None:
                raise ValueError(
                    f"{self.path}: cannot read the token file ({exc.strerror})"
                ) from None
            log.warning("token file unreadable; keeping the previous tokens")
        return self._tokens

    def check(self, presented: bytes) -> bool:
        """Constant-time comparison against every token (no early exit)."""
        ok = False
        for token in self.tokens():
            ok |= hmac.compare_digest(presented, token)
        return ok


def _deny(code: grpc.StatusCode, message: str) -> grpc.RpcMethodHandler:
    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(code, message)

    async def stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(code, message)
        yield  # pragma: no cover  (makes this an async generator)

    return unary, stream  # type: ignore[return-value]


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """UNAUTHENTICATED without a bearer token, PERMISSION_DENIED with a wrong one."""

    def __init__(self, store: TokenStore) -> None:
        self.store = store

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method: str = details.method  # type: ignore[attr-defined]
        if method.startswith(OPEN_PREFIXES):
            return await continuation(details)
        value = None
        for key, val in details.invocation_metadata or ():  # type: ignore[attr-defined]
            if key == HEADER:
                value = val if isinstance(val, str) else val.decode("latin-1")
                break
        if (
            value is None
            or not value.lower().startswith(SCHEME)
            or not value[len(SCHEME) :].strip()
        ):
            denial = (
                grpc.StatusCode.UNAUTHENTICATED,
                "missing bearer token (metadata 'authorization: Bearer <token>')",
            )
        elif self.store.check(value[len(SCHEME) :].strip().encode()):
            return await continuation(details)
        else:
            denial = (grpc.StatusCode.PERMISSION_DENIED, "the bearer token is not accepted")
        handler = await continuation(details)
        if handler is None:
            return handler
        unary, stream = _deny(*denial)
        ser, deser = handler.response_serializer, handler.request_deserializer
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(unary, deser, ser)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(stream, deser, ser)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(unary, deser, ser)
        return grpc.stream_stream_rpc_method_handler(stream, deser, ser)
