"""Checking and reserving TCP ports before gRPC binds them (plain sockets: no grpc import, so
the worker supervisor can use it)."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator


def bare_host(host: str) -> str:
    """The host as sockets take it: an IPv6 literal without brackets (`[::1]` -> `::1`)."""
    return host.strip().removeprefix("[").removesuffix("]")


def grpc_address(host: str, port: int) -> str:
    """HOST:PORT as gRPC reads it: an IPv6 literal in brackets (`::1` -> `[::1]:PORT`)."""
    bare = bare_host(host)
    return f"[{bare}]:{port}" if ":" in bare else f"{bare}:{port}"


def probe_port(host: str, port: int, what: str) -> None:
    """OSError naming the address when `port` cannot be bound on `host` (port 0: when the
    host has no address to bind), before gRPC's core tries and logs its own lines."""
    try:
        infos = socket.getaddrinfo(
            bare_host(host), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        for family, kind, proto, _, addr in infos:
            with socket.socket(family, kind, proto) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(addr)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise OSError(f"cannot bind the {what} port {host}:{port} ({reason})") from None


@contextlib.contextmanager
def reserve_port(host: str, port: int) -> Iterator[int]:
    """Bind (not listen) `host:port` with SO_REUSEPORT on every address of `host`; port 0
    picks a free one. OSError naming the address when it is taken by a socket without
    SO_REUSEPORT."""
    socks: list[socket.socket] = []
    try:
        try:
            infos = socket.getaddrinfo(
                bare_host(host), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
            for family, kind, proto, _, addr in infos:
                sock = socket.socket(family, kind, proto)
                socks.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                sock.bind((addr[0], port, *addr[2:]))
                port = sock.getsockname()[1]  # the first address picks; the rest follow
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise OSError(f"cannot bind the gRPC port {host}:{port} ({reason})") from None
        yield port
    finally:
        for sock in socks:
            sock.close()
