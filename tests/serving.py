"""Test helpers: a real server on port 0 in a background event loop, and small exported models."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any

from server import launch
from server.app import App, build_app
from server.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}

TEXTS = [
    "turn on the kitchen lights",
    "what time is it",
    "set the fan to 50 percent",
    "turn off the bedroom lamp",
    "what is the temperature in the garage",
]


class RunningServer:
    """build_app(settings) served from a thread with its own asyncio loop."""

    def __init__(self, settings: Settings, warm: bool = True) -> None:
        self.settings = settings
        self.warm = warm
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.app: App | None = None

    def call(self, coro: Coroutine[Any, Any, Any], timeout: float = 30) -> Any:
        """Run a coroutine on the server's loop and wait for it."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def __enter__(self) -> RunningServer:
        self.thread.start()

        async def up() -> App:
            app = build_app(self.settings)
            await app.start()
            if self.warm:
                await app.warmup()
            return app

        self.app = self.call(up())
        return self

    @property
    def target(self) -> str:
        """host:port of the running server."""
        assert self.app is not None
        return f"127.0.0.1:{self.app.port}"

    def metric(self, name: str) -> float:
        """One sample of the metrics exposition (name with labels, as printed); 0 if absent."""
        from prometheus_client import generate_latest

        assert self.app is not None
        for line in generate_latest(self.app.metrics.registry).decode().splitlines():
            key, _, value = line.rpartition(" ")
            if key == name:
                return float(value)
        return 0.0

    def __exit__(self, *exc: object) -> None:
        if self.app is not None:
            self.call(self.app.drain(0))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class ServerProcess(launch.ServerProcess):
    """`python -m server` on port 0 (and a free metrics port), with the tests' environment."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        super().__init__("--port", "0", "--metrics-port", "0", *args, env=env or ENV)

    def rss_mb(self) -> float:
        """Resident memory of the server process."""
        m = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{self.proc.pid}/status").read_text())
        return int(m.group(1)) / 1024 if m else float("nan")

    def metric(self, name: str) -> float:
        """One unlabelled sample from the server's /metrics."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as r:
            m = re.search(rf"^{name} (\S+)$", r.read().decode(), re.M)
        return float(m.group(1)) if m else float("nan")


def settings_for(model: Path, **kw: Any) -> Settings:
    """Settings for tests: port 0, no metrics endpoint, one warm-up run."""
    base = Settings(model=Path(model), host="127.0.0.1", port=0, metrics_port=-1, warmup_runs=1)
    return replace(base, **kw)


def small_model_file(
    out: Path, cell: str, nl: str = "tanh", bi: bool = False, layers: int = 1, seed: int = 0
) -> Path:
    """A small random-init model exported exactly like the default one (metadata, parity)."""
    import torch

    from export.model import IntentSlotRNN, ModelConfig
    from export.package import package
    from export.parity import ParityCase
    from modelspec.tokenizer import Tokenizer

    tok = Tokenizer.build(TEXTS)
    intents = ["HassA", "HassB", "HassC"]
    tags = ["O", "B-area", "I-area", "B-name", "I-name"]
    torch.manual_seed(seed)
    cfg = ModelConfig(
        vocab_size=tok.vocab_size,
        num_intents=len(intents),
        num_slots=len(tags),
        cell=cell,
        nonlinearity=nl,
        bidirectional=bi,
        num_layers=layers,
        embedding_dim=8,
        hidden_size=12,
    )
    model = IntentSlotRNN(cfg).eval()
    cases = [ParityCase("b3", (5, 2, 7), False), ParityCase("b2+state", (3, 4), True)]
    package(model, tok, intents, tags, out, cases=cases)
    return out


def cli(
    *args: str | bytes, stdin: str | bytes | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """`python -m client ARGS` run as a user runs it; stdout and stderr decoded, stdin and
    arguments may be bytes."""
    out = subprocess.run(
        [sys.executable, "-m", "client", *args],
        cwd=ROOT,
        env=ENV if env is None else {**ENV, **env},
        input=stdin.encode() if isinstance(stdin, str) else stdin,
        capture_output=True,
        timeout=60,
    )
    return subprocess.CompletedProcess(
        out.args, out.returncode, out.stdout.decode(), out.stderr.decode()
    )


def wait_until(predicate: Any, seconds: float = 20.0) -> bool:
    """Whether `predicate()` came true within `seconds` (checked every 50 ms): a deadline to
    wait for a server's change, never a timing assertion."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False
