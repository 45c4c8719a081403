"""Test-split scores of the served model: torch greedy decoding against the server's (greedy
and beam search), over the wire, word for word."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from client import Client, RnnServeError
from export.g2p.data import Entry, load_cmudict, split_entries
from export.g2p.decode import decode_entries, error_rates
from export.g2p.train import load_checkpoint

ROOT = Path(__file__).resolve().parents[2]


def _serve(repository: Path, intent: Path, tmp: Path) -> tuple[subprocess.Popen[str], str]:
    """A server on a copy of the g2p folder (beside one intent model), on a free port."""
    shutil.copytree(repository / "g2p", tmp / "g2p")
    shutil.copy(intent, tmp / "intent.onnx")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "server", "--model-repository", str(tmp), "--port", "0"]
    proc = subprocess.Popen(
        [*cmd, "--metrics-port", "-1"], env=env, stderr=subprocess.PIPE, text=True
    )
    assert proc.stderr is not None
    port = 0
    for line in proc.stderr:
        rec = json.loads(line) if line.startswith("{") else {}
        port = rec.get("port", port) if rec.get("msg") == "listening" else port
        if rec.get("msg") == "serving":
            return proc, f"127.0.0.1:{port}"
    raise RuntimeError("the server did not start")


def served(target: str, words: Sequence[str], beam_size: int) -> list[tuple[str, ...]]:
    """The server's answers, 256 words in flight at a time."""
    out: list[tuple[str, ...]] = []
    with Client(target, timeout=120) as client:
        for s in range(0, len(words), 256):
            for r in client.generate_many(words[s : s + 256], beam_size=beam_size, model="g2p"):
                if isinstance(r, RnnServeError):
                    raise RuntimeError(f"{r.code}: {r.message}")
                out.append(tuple(r.tokens))
    return out


def evaluate(
    checkpoint: Path, repository: Path, intent: Path, beams: Sequence[int] = (1, 5)
) -> dict[str, Any]:
    """Torch greedy scores, the server's scores for each beam size, and their agreement."""
    model, vocab, _ = load_checkpoint(checkpoint)
    test: list[Entry] = split_entries(load_cmudict())["test"]
    words = [e.word for e in test]
    torch_hyps = decode_entries(model, vocab, test)
    report: dict[str, Any] = {"torch_greedy": error_rates(test, torch_hyps)}
    with tempfile.TemporaryDirectory() as tmp:
        proc, target = _serve(repository, intent, Path(tmp))
        try:
            for beam in beams:
                hyps = served(target, words, beam)
                report[f"server_beam{beam}"] = error_rates(test, hyps)
                if beam == 1:
                    same = sum(a == b for a, b in zip(hyps, torch_hyps))
                    report["server_equals_torch"] = {"words": len(words), "equal": same}
        finally:
            proc.terminate()
            proc.wait(30)
    return report
