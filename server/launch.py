"""`python -m server` as a child process, returned once it serves: the load generators, the
outside measure and the tests each need a real server on free ports.

Its JSON log lines up to 'serving' are kept (`lines`); the port and metrics port come from the
'listening' line; stderr keeps being drained afterwards (`rest`), since a full pipe would block
the server's logging and so the server.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent  # `python -m server` runs from the checkout


class ServerProcess:
    """`python -m server ARGS`; RuntimeError (with its last lines) when it exits before serving."""

    def __init__(self, *args: str, env: Mapping[str, str] | None = None) -> None:
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "server", *args],
            cwd=ROOT,
            env=dict(env) if env is not None else {**os.environ, "PYTHONPATH": str(ROOT)},
            stderr=subprocess.PIPE,
            text=True,
        )
        self.port = self.metrics_port = 0
        self.lines: list[dict[str, Any]] = []
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            if not line.startswith("{"):  # gRPC's C core may print lines of its own
                continue
            rec = json.loads(line)
            self.lines.append(rec)
            if rec.get("msg") == "listening":
                self.port, self.metrics_port = rec["port"], rec.get("metrics_port") or 0
            if rec.get("msg") == "serving":
                break
        if not self.port or self.proc.poll() is not None:
            self.proc.wait(timeout=60)
            raise RuntimeError(
                f"the server did not start (exit {self.proc.returncode}): {self.lines[-3:]}"
            )
        self.startup_s = time.perf_counter() - t0
        self.rest: list[str] = []
        self._drain = threading.Thread(target=self._read_rest, daemon=True)
        self._drain.start()

    def _read_rest(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.rest.append(line)

    @property
    def target(self) -> str:
        """host:port of its gRPC port."""
        return f"127.0.0.1:{self.port}"

    def stop(self) -> tuple[int, list[dict[str, Any]]]:
        """SIGTERM (unless it already exited), wait, return exit code and later log records."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)
        self._drain.join(timeout=10)
        return self.proc.returncode, [json.loads(x) for x in self.rest if x.startswith("{")]
