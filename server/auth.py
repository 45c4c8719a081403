"""Bearer tokens from a file re-read when it changes; checked by the server's auth interceptor.

The store fails closed. At start-up, a token file that cannot be read, is not UTF-8, holds a
token that is not printable ASCII, or holds no token (only blank lines and `#` comments) is an
error. Once serving, a change that leaves the file in one of those states leaves the store with
no token: every guarded call is answered PERMISSION_DENIED (health and reflection stay open)
until the file holds tokens again, when they are loaded at the next call. Each such change logs
one warning naming the file and the reason (never a token), and the number of loaded tokens, 0,
goes to `on_change` (the server's `rnnserve_auth_tokens` gauge).

PERMISSION_DENIED rather than UNAVAILABLE: emptying the file is how every token is revoked, and a
revoked token is a token that is not accepted. UNAVAILABLE would tell clients, meshes and load
balancers to retry elsewhere or later, as for overload or a drain; a denial is not retried.
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from server.errors import PermissionDenied, Unauthenticated

log = logging.getLogger("rnnserve.auth")

# Health and reflection stay open: probes and tools must work without a token.
OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
HEADER = "authorization"
SCHEME = "bearer "
BOM = b"\xef\xbb\xbf"

Stamp = tuple[int, int, int]


class TokenStore:
    """The accepted tokens; the file is re-read whenever its size, mtime or inode changes.

    `on_change(count)` is called with the number of loaded tokens at start-up and whenever that
    number changes (0 while the file is empty, unreadable or not UTF-8).
    """

    def __init__(self, path: str | Path, on_change: Callable[[int], None] | None = None) -> None:
        self.path = Path(path)
        self.on_change = on_change
        self._stamp: Stamp | None = None
        self._tokens: list[bytes] = []
        self._problem: str | None = None
        stamp, tokens, problem = self._read()
        if problem is not None:
            raise ValueError(f"{self.path}: {problem}")
        self._stamp, self._tokens = stamp, tokens
        log.info("auth tokens loaded", extra={"count": len(tokens)})  # never the tokens
        if on_change is not None:
            on_change(len(tokens))

    def _read(self) -> tuple[Stamp | None, list[bytes], str | None]:
        """The file's stamp, its tokens, and why it has none (None when it has some)."""
        try:
            st = os.stat(self.path)
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
            if stamp == self._stamp:
                return stamp, self._tokens, self._problem
            raw = self.path.read_bytes()
        except OSError as exc:
            return None, [], f"cannot read the token file ({exc.strerror})"
        try:
            text = raw.removeprefix(BOM).decode("utf-8")  # editors may start the file with a BOM
        except UnicodeDecodeError as exc:
            return stamp, [], f"the token file is not UTF-8 (byte {exc.start})"
        tokens = []
        for number, line in enumerate(text.splitlines(), 1):
            token = line.strip()
            if not token or token.startswith("#"):
                continue
            if not (token.isascii() and token.isprintable()):
                return stamp, [], f"line {number}: a token must be printable ASCII (as gRPC sends)"
            tokens.append(token.encode())
        tokens = list(dict.fromkeys(tokens))  # a token written twice is one token
        return stamp, tokens, None if tokens else "no tokens (one per line)"

    def tokens(self) -> list[bytes]:
        """Current tokens: none while the file is empty, unreadable or not UTF-8."""
        stamp, tokens, problem = self._read()
        if stamp is not None and stamp == self._stamp:
            return self._tokens
        before = len(self._tokens)
        if problem is None:
            log.info("auth tokens loaded", extra={"count": len(tokens)})
        elif problem != self._problem:
            log.warning(
                "auth token file rejected; every guarded call is denied until it holds tokens",
                extra={"path": str(self.path), "reason": problem},
            )
        self._stamp, self._tokens, self._problem = stamp, tokens, problem
        if self.on_change is not None and len(tokens) != before:
            self.on_change(len(tokens))
        return tokens

    def check(self, presented: bytes) -> bool:
        """Constant-time comparison against every token (no early exit); False with none."""
        ok = False
        for token in self.tokens():
            ok |= hmac.compare_digest(presented, token)
        return ok


def check_metadata(store: TokenStore, metadata: Any) -> None:
    """Raise Unauthenticated without a bearer token, PermissionDenied with a wrong one."""
    value = None
    for key, val in metadata or ():
        if key == HEADER:
            value = val if isinstance(val, str) else val.decode("latin-1")
            break
    if value is None or not value[: len(SCHEME)].lower() == SCHEME:
        raise Unauthenticated("missing bearer token (metadata 'authorization: Bearer <token>')")
    token = value[len(SCHEME) :].strip()
    if not token:
        raise Unauthenticated("missing bearer token (metadata 'authorization: Bearer <token>')")
    if not store.check(token.encode()):
        raise PermissionDenied("the bearer token is not accepted")
