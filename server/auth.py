"""Bearer tokens from a file re-read when it changes; checked by the server's one interceptor."""

from __future__ import annotations

import hmac
import logging
import os
from pathlib import Path
from typing import Any

from server.errors import PermissionDenied, Unauthenticated

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
