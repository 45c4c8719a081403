"""Triton's perf_analyzer as a second load generator, when it is installed.

perf_analyzer is C++ and drives v2 `ModelInfer` from its own threads, so its figures do not
depend on a Python client sharing the cores. It ships only with `tritonclient==2.51.0` (later
wheels have none) and needs `libb64-0d` and a CUDA runtime library on `LD_LIBRARY_PATH` even
without a GPU (docs/performance.md, "perf_analyzer"). `make bench` runs these points when
`PERF_ANALYZER` names the binary or `perf_analyzer` is on PATH, and skips them otherwise.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def find() -> str | None:
    """The perf_analyzer binary to use, or None."""
    named = os.environ.get("PERF_ANALYZER")
    if named:
        return named if Path(named).is_file() else None
    return shutil.which("perf_analyzer")


def input_file(ids: Sequence[Sequence[int]], directory: Path) -> Path:
    """The utterances' token ids as perf_analyzer's --input-data JSON (one request each)."""
    data = [{"input_ids": {"content": list(row), "shape": [1, len(row)]}} for row in ids]
    path = directory / "input_ids.json"
    path.write_text(json.dumps({"data": data}))
    return path


def run(
    binary: str,
    target: str,
    model: str,
    concurrency: int,
    data: Path,
    seconds: float,
) -> dict[str, Any]:
    """One closed-loop point: throughput and latency percentiles as perf_analyzer reports them
    (its client-side latency, in µs), with every output requested (perf_analyzer's default)."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.csv"
        cmd = [
            binary,
            "-i",
            "grpc",
            "-u",
            target,
            "-m",
            model,
            "--input-data",
            str(data),
            "--concurrency-range",
            f"{concurrency}:{concurrency}",
            "--measurement-mode",
            "time_windows",
            "-p",
            str(int(seconds * 1000)),
            "--max-trials",
            "3",
            "--stability-percentage",
            "100",
            "-f",
            str(report),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120 + 10 * seconds)
        if proc.returncode != 0 or not report.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise RuntimeError(f"perf_analyzer failed: {' | '.join(tail)}")
        with report.open() as f:
            row = next(csv.DictReader(f))
    return {
        "concurrency": concurrency,
        "throughput": float(row["Inferences/Second"]),
        "p50_us": float(row["p50 latency"]),
        "p99_us": float(row["p99 latency"]),
    }
