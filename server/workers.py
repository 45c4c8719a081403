"""Worker processes (--workers N): N serving processes on one port, supervised by this one.

The parent imports no grpc and creates no gRPC object: it reserves the port (a socket bound
with SO_REUSEPORT, never listening, held open for its whole life so replacements can bind it),
starts each worker as a fresh interpreter (`subprocess`, never fork), serves every worker's
metrics combined, restarts a worker that dies, and on SIGTERM/SIGINT forwards SIGTERM so that
each worker drains. Each worker is the one-process server (`server.app.serve`) with
`grpc.so_reuseport` on: its own event loop, sessions, batcher and health service
(server/worker.py: the worker's side, and the pipe it reports on).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from typing import Any

from server.metrics import serve_workers, worker_gone
from server.ports import reserve_port
from server.settings import Settings
from server.worker import PACKAGE_ROOT, WORKER_COMMAND

log = logging.getLogger("rnnserve.server")

STOP_MARGIN_S = 5.0  # beyond --drain-seconds before a worker that has not exited is killed
RESTART_BACKOFF_S = (0.0, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)  # by deaths in a row before serving


@dataclass
class _Slot:
    """One worker position: the process in it now and what it has reported."""

    index: int
    proc: subprocess.Popen[bytes] | None = None
    status: int = -1  # read end of its status pipe
    buffer: bytes = b""
    state: str = "down"  # starting, listening, serving, down
    deaths: int = 0  # deaths in a row before serving (restart backoff)
    due: float | None = None  # when to start it again
    hello: dict[str, Any] = field(default_factory=dict)  # its `listening` report


class Supervisor:
    """Starts, watches, restarts and stops the workers; serves their combined metrics."""

    def __init__(self, settings: Settings, port: int, metrics_dir: str) -> None:
        self.settings = settings
        self.port = port
        self.metrics_dir = metrics_dir
        self.worker_settings = replace(settings, port=port, metrics_port=-1)
        self.slots = [_Slot(i) for i in range(settings.workers)]
        self.restarts = 0
        self.metrics_port: int | None = None
        self.selector = selectors.DefaultSelector()
        self.started = False  # every worker served once: deaths from now on are restarts
        self.listening = False  # the 'listening' line is out
        self.stopping = False
        self.deadline = 0.0  # while stopping: when workers still running are killed
        self.failure = ""  # a start-up failure: reported once, exit status 1
        self.t0 = time.perf_counter()
        self.env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": metrics_dir}

    def _spawn(self, slot: _Slot) -> None:
        read_fd, write_fd = os.pipe()
        try:
            command = [sys.executable, "-c", WORKER_COMMAND, str(slot.index), str(write_fd)]
            proc = subprocess.Popen(
                [*command, PACKAGE_ROOT],
                stdin=subprocess.PIPE,
                env=self.env,
                pass_fds=(write_fd,),
            )
        finally:
            os.close(write_fd)
        assert proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):  # died at once: its status pipe tells
            proc.stdin.write(pickle.dumps(self.worker_settings))
            proc.stdin.flush()  # stdin stays open: the worker drains when it closes
        os.set_blocking(read_fd, False)
        slot.proc, slot.status, slot.buffer, slot.state = proc, read_fd, b"", "starting"
        slot.due, slot.hello = None, {}
        self.selector.register(read_fd, selectors.EVENT_READ, slot)
        log.debug("worker started", extra={"worker": slot.index, "pid": proc.pid})

    def _read(self, slot: _Slot) -> None:
        try:
            data = os.read(slot.status, 65536)
        except BlockingIOError:
            return
        if not data:
            self._exited(slot)
            return
        slot.buffer += data
        *lines, slot.buffer = slot.buffer.split(b"\n")
        for line in lines:
            self._report(slot, json.loads(line))

    def _report(self, slot: _Slot, msg: dict[str, Any]) -> None:
        event = msg.pop("event")
        if event == "failed":
            if not self.started:  # reported once, as the start-up error line
                self.failure = self.failure or msg["error"]
            else:
                log.error("worker failed", extra={"worker": slot.index, "error": msg["error"]})
        elif event == "listening":
            slot.state, slot.hello = "listening", msg
        elif event == "serving":
            slot.state, slot.deaths = "serving", 0
            if self.started:  # a replacement
                pid = slot.proc.pid if slot.proc else None
                log.info("worker serving", extra={"worker": slot.index, "pid": pid})

    def _exited(self, slot: _Slot) -> None:
        """The status pipe closed: the worker has exited (or is about to)."""
        self.selector.unregister(slot.status)
        os.close(slot.status)
        assert slot.proc is not None
        code = slot.proc.wait()
        pid, served = slot.proc.pid, slot.state == "serving"
        if slot.proc.stdin is not None:
            slot.proc.stdin.close()
        slot.state = "down"
        worker_gone(pid, self.metrics_dir)
        if self.stopping:
            # A worker still starting when SIGTERM came has nothing to drain.
            if code != 0 and not (code == -signal.SIGTERM and not served):
                self.failure = self.failure or f"worker {slot.index} exited with status {code}"
            log.debug("worker stopped", extra={"worker": slot.index, "pid": pid, "status": code})
            return
        if not self.started:
            self.failure = self.failure or f"worker {slot.index} exited with status {code}"
            return
        slot.deaths = 0 if served else slot.deaths + 1
        delay = RESTART_BACKOFF_S[min(slot.deaths, len(RESTART_BACKOFF_S) - 1)]
        slot.due = time.monotonic() + delay
        self.restarts += 1
        log.warning(
            "worker died; restarting",
            extra={
                "worker": slot.index,
                "pid": pid,
                "status": code,
                "restarts": self.restarts,
                "delay_s": delay,
            },
        )

    # ------------------------------------------------------------ lifecycle

    def _startup_progress(self) -> None:
        states = {slot.state for slot in self.slots}
        hello = self.slots[0].hello
        if not self.listening and states <= {"listening", "serving"}:
            self.listening = True
            log.info(
                "listening",
                extra={
                    "host": self.settings.host,
                    "port": self.port,
                    "metrics_port": self.metrics_port,
                    "workers": len(self.slots),
                    **hello,
                },
            )
        if states == {"serving"}:
            self.started = True
            log.info(
                "serving",
                extra={
                    "model": hello.get("model"),
                    "startup_s": round(time.perf_counter() - self.t0, 3),
                    "pids": [slot.proc.pid for slot in self.slots if slot.proc],
                },
            )

    def _stop(self) -> None:
        """SIGTERM to every worker; pending restarts are dropped."""
        if self.stopping:
            return
        self.stopping = True
        if not self.failure:
            log.info("draining", extra={"grace_s": self.settings.drain_seconds})
        self.deadline = time.monotonic() + self.settings.drain_seconds + STOP_MARGIN_S
        for slot in self.slots:
            slot.due = None
            if slot.proc is not None and slot.state != "down":
                with contextlib.suppress(ProcessLookupError):
                    slot.proc.send_signal(signal.SIGTERM)

    def _kill_all(self) -> None:
        for slot in self.slots:
            if slot.proc is not None and slot.state != "down":
                with contextlib.suppress(ProcessLookupError):
                    slot.proc.kill()

    def run(self) -> int:
        """Start every worker, supervise until SIGTERM/SIGINT, drain; the exit status."""
        if self.settings.metrics_port >= 0:
            try:
                self.metrics_port = serve_workers(
                    self.settings.host,
                    self.settings.metrics_port,
                    self.metrics_dir,
                    lambda: self.restarts,
                )
            except OSError as exc:
                where = f"{self.settings.host}:{self.settings.metrics_port}"
                raise OSError(
                    f"cannot bind the metrics port {where} ({exc.strerror or exc})"
                ) from None
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        self.selector.register(wake_r, selectors.EVENT_READ, None)
        old_fd = signal.set_wakeup_fd(wake_w.fileno())
        caught: list[int] = []
        handlers = {
            sig: signal.signal(sig, lambda signum, _frame: caught.append(signum))
            for sig in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            for slot in self.slots:
                self._spawn(slot)
            self._loop(wake_r, caught)
        finally:
            self._kill_all()
            for slot in self.slots:
                if slot.proc is not None:
                    slot.proc.wait()
            signal.set_wakeup_fd(old_fd)
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
            wake_r.close()
            wake_w.close()
        if self.failure:
            if not self.started:
                print(f"error: {self.failure}", file=sys.stderr)
            else:
                log.error("stopped with a failure", extra={"error": self.failure})
            return 1
        log.info("stopped")
        return 0

    def _loop(self, wake: socket.socket, caught: list[int]) -> None:
        while True:
            now = time.monotonic()
            live = [s for s in self.slots if s.state != "down"]
            if self.stopping and not live:
                return
            if self.failure and not self.started and not self.stopping:
                self._stop()  # a worker could not start: stop the others, exit 1
            waits = [s.due - now for s in self.slots if s.due is not None]
            if self.stopping:
                if now >= self.deadline:
                    log.error("workers did not drain in time; killing them")
                    self._kill_all()
                    self.deadline = now + STOP_MARGIN_S
                waits.append(self.deadline - now)
            timeout = max(0.0, min(waits)) if waits else None
            for key, _ in self.selector.select(timeout):
                if key.data is None:
                    with contextlib.suppress(BlockingIOError):
                        wake.recv(4096)
                else:
                    self._read(key.data)
            if caught:
                caught.clear()
                self._stop()
            now = time.monotonic()
            for slot in self.slots:
                if slot.due is not None and slot.due <= now and not self.stopping:
                    self._spawn(slot)
            if not self.started and not self.stopping:
                self._startup_progress()


def supervise(settings: Settings) -> int:
    """Run `settings.workers` worker processes on one port; the exit status."""
    metrics_dir = tempfile.mkdtemp(prefix="rnnserve-metrics-")
    try:
        with reserve_port(settings.host, settings.port) as port:
            return Supervisor(settings, port, metrics_dir).run()
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
