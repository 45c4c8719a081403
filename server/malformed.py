"""Requests whose bytes do not parse as their method's message: INVALID_ARGUMENT, not UNKNOWN.

gRPC reports a request deserializer's exception to the caller as UNKNOWN with the exception's
type and text. `guard` gives a handler a deserializer that never raises (bytes it cannot read
become a `Malformed` marker) and a behavior that refuses the marker with InvalidArgument, inside
the interceptors, so the status mapping, metrics and logs see it as any other bad request.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from server.errors import InvalidArgument

Behavior = Callable[..., Any]
KINDS = ("unary_unary", "unary_stream", "stream_unary", "stream_stream")


class Malformed:
    """Stands for a request message whose bytes did not parse."""

    __slots__ = ()


MALFORMED = Malformed()


def _tolerant(read: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if read is None:
        return None

    def tolerant(wire: bytes) -> Any:
        try:
            return read(wire)
        except Exception:  # DecodeError, or bad UTF-8 in a string field
            return MALFORMED

    return tolerant


def guard(method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """`handler` with its requests' bytes read without raising, and unreadable ones refused."""
    refusal = f"the request is not a valid message for {method.rsplit('/', 1)[-1]}"

    def check(request: Any) -> Any:
        if request is MALFORMED:
            raise InvalidArgument(refusal)
        return request

    async def checked(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
        async for request in requests:
            yield check(request)

    changes: dict[str, Any] = {"request_deserializer": _tolerant(handler.request_deserializer)}
    for kind in KINDS:
        behavior = getattr(handler, kind)
        if behavior is None:
            continue
        if not (inspect.isasyncgenfunction(behavior) or inspect.iscoroutinefunction(behavior)):
            return handler  # a synchronous handler keeps gRPC's own reading
        changes[kind] = _around(behavior, check if kind.startswith("unary") else checked)
    return handler._replace(**changes)  # type: ignore[attr-defined]


def _around(behavior: Behavior, arg: Callable[[Any], Any]) -> Behavior:
    """`behavior` called with `arg(request)`, keeping its kind: async generator or coroutine."""
    if inspect.isasyncgenfunction(behavior):

        async def gen(request: Any, context: Any) -> AsyncIterator[Any]:
            async for response in behavior(arg(request), context):
                yield response

        return gen

    async def coro(request: Any, context: Any) -> Any:
        return await behavior(arg(request), context)

    return coro
