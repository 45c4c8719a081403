"""The typed requests' `context` field, read apart from the rest of the message.

A home sends the same context with every request, often tens of kilobytes. Parse's and
ParseStream's request deserializer cuts a large context's bytes out of the wire message before
protobuf reads it, so the rest parses in microseconds; the context itself is parsed and its
limits checked once per distinct byte string (`WireContexts`: the last few, least recently used
out) and handed to every request that sends the very same bytes. Two serializations of one home
that differ in their bytes are two contexts, read once each: no answer ever depends on a context
the request did not send. A message this reader does not follow (a group, a field sent twice)
is parsed whole, as protobuf parses it. No grpc here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from google.protobuf.message import DecodeError

from modelspec.context import HomeContext
from rnnserve.v1 import rnnserve_pb2 as pb
from server.context import ByBytes, home_context
from server.errors import InvalidArgument

# A context field shorter than this stays in the message (reading it costs less than hashing).
SPLIT_MIN_BYTES = 1024
_LENGTH_DELIMITED = 2


class Typed(NamedTuple):
    """What the deserializer hands the servicer: the message without a large context, and that
    context's wire bytes (empty when the context, if any, is still in the message)."""

    message: Any
    context: bytes


def _varint(wire: bytes, pos: int) -> tuple[int, int]:
    """The varint at `pos` and the position after it; IndexError past the end."""
    value = shift = 0
    while True:
        b = wire[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise IndexError("varint too long")


def split_field(wire: bytes, number: int) -> tuple[bytes, bytes] | None:
    """(the message without field `number`, that field's payload) when the field is length-
    delimited and occurs exactly once at the top level; None otherwise (absent, repeated, or
    a wire type this reader does not follow)."""
    pos, n, found = 0, len(wire), None
    try:
        while pos < n:
            start = pos
            tag, pos = _varint(wire, pos)
            kind = tag & 7
            if kind == 0:
                _, pos = _varint(wire, pos)
            elif kind == 1:
                pos += 8
            elif kind == 5:
                pos += 4
            elif kind == _LENGTH_DELIMITED:
                size, body = _varint(wire, pos)
                pos = body + size
                if tag >> 3 == number:
                    if found is not None:
                        return None
                    found = (start, body, pos)
            else:
                return None
    except IndexError:
        return None
    if found is None or pos != n:
        return None
    start, body, end = found
    return wire[:start] + wire[end:], wire[body:end]


def deserializer(message_type: Any) -> Callable[[bytes], Typed]:
    """A request deserializer for `message_type` (ParseRequest, ParseStreamRequest) that keeps
    a large context apart (its field named `context`)."""
    parse = message_type.FromString
    number = message_type.DESCRIPTOR.fields_by_name["context"].number

    def read(wire: bytes) -> Typed:
        if len(wire) >= SPLIT_MIN_BYTES:
            parts = split_field(wire, number)
            if parts is not None and len(parts[1]) >= SPLIT_MIN_BYTES:
                return Typed(parse(parts[0]), parts[1])
        return Typed(parse(wire), b"")

    return read


class WireContexts:
    """The last `max_contexts` contexts read from their wire bytes (at most `max_bytes` of
    those bytes in all), parsed and checked, by those bytes."""

    def __init__(self, max_contexts: int = 16, max_bytes: int = 16 << 20) -> None:
        self._read: ByBytes[HomeContext] = ByBytes(max_contexts, max_bytes)

    def get(self, wire: bytes) -> HomeContext | None:
        """The context these bytes encode (None: no entries); InvalidArgument for bytes that
        are not a HomeContext or a context beyond the limits (neither is kept)."""
        found = self._read.get(wire)
        if found is not None:
            return found
        try:
            msg = pb.HomeContext.FromString(wire)
        except DecodeError:
            raise InvalidArgument("context is not a valid HomeContext message") from None
        ctx = home_context(msg, key=wire)
        if ctx is not None:
            self._read.put(wire, ctx)
        return ctx
