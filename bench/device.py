"""The checks a machine with an NVIDIA GPU and many cores runs, in one short run.

    python -m bench.device --out DIR [--seconds 2] [--workers 1 2 4 8]

Writes DIR/device.json and DIR/device.md:
1. exactness of the CUDA provider with TF32 off (the default) and on, measured by the server's
   own load-time probe (server/device_parity.py): max |CUDA − CPU| over every output and a row
   alone against the same row in the padded batch;
2. the `--device auto` trade-off: onnxruntime p50 and sequences per second at batch 1, 32 and
   512 on CPU (one thread) and on CUDA (TF32 off), the test utterances padded;
3. worker scaling: Parse per second of one server on CPU with 1, 2, 4, 8 workers, each
   load-generator process driving 16 callers over its own connection (as many processes as
   workers, at least two), and the ratio to one worker.
A part whose hardware is missing (no CUDA provider, fewer cores than workers + generators) is
reported as skipped, so the script is tried on any machine first. The serving path's modules
only: numpy, onnxruntime, grpc.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.loadgen import run_point  # noqa: E402
from bench.run import Server, utterances  # noqa: E402
from modelspec.batch import pad_rows  # noqa: E402
from server import device_parity  # noqa: E402
from server.runtime import CUDA, ModelRuntime  # noqa: E402

MODEL = ROOT / "models" / "intent.onnx"
BATCHES = (1, 32, 512)


def cuda_available() -> bool:
    import onnxruntime as ort

    return CUDA in ort.get_available_providers()


def exactness(model: Path) -> dict[str, Any]:
    """The load-time probe's two figures with TF32 off and on."""
    if not cuda_available():
        return {"skipped": "no CUDA provider in this onnxruntime"}
    out: dict[str, Any] = {}
    for tf32 in (False, True):
        rt = ModelRuntime(model, device="cuda", cuda_tf32=tf32)
        figures = device_parity.check(rt)
        assert figures is not None
        out["tf32_on" if tf32 else "tf32_off"] = {
            "session_tf32": rt.tf32,
            "max_abs_diff_vs_cpu": figures.max_abs_diff_vs_cpu,
            "max_abs_diff_alone_vs_batch": figures.max_abs_diff_alone_vs_batch,
        }
    return out


def batch_costs(model: Path, texts: list[str], seconds: float) -> dict[str, Any]:
    """p50 and sequences/s of session.run per batch size and device."""
    rt = ModelRuntime(model, device="cpu")
    rows = [rt.tokenizer.ids(rt.tokenizer.tokenize(t)) for t in texts]
    devices = ["cpu"] + (["cuda"] if cuda_available() else [])
    out: dict[str, Any] = {d: [] for d in devices}
    for device in devices:
        run = rt if device == "cpu" else ModelRuntime(model, device="cuda")
        for b in BATCHES:
            picked = [rows[i % len(rows)] for i in range(b)]
            ids, lengths = pad_rows([np.asarray(r, dtype=np.int64) for r in picked])
            for _ in range(5):
                run.run(ids, lengths)
            lat = []
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                t = time.perf_counter()
                run.run(ids, lengths)
                lat.append(time.perf_counter() - t)
            p50 = float(np.median(lat))
            out[device].append({"batch": b, "p50_us": p50 * 1e6, "seq_per_s": b / p50})
    return out


def _load(args: tuple[str, list[str], float]) -> float:
    target, texts, seconds = args
    point = asyncio.run(run_point(target, "parse", 16, seconds, texts, []))
    return float(point.summary()["throughput"])


def worker_scaling(
    model: Path, texts: list[str], workers: list[int], seconds: float
) -> dict[str, Any]:
    """Parse/s per worker count, each generator process on its own connection."""
    cores = os.cpu_count() or 1
    out: dict[str, Any] = {"cores": cores, "points": []}
    ctx = mp.get_context("spawn")
    for n in workers:
        generators = max(2, n)
        if n + generators > cores:
            out["points"].append({"workers": n, "skipped": f"needs {n + generators} cores"})
            continue
        srv = Server(model, "--workers", str(n), "--max-batch-size", "32")
        try:
            with ctx.Pool(generators) as pool:
                rates = pool.map(_load, [(srv.target, texts, seconds)] * generators)
        finally:
            srv.stop()
        out["points"].append({"workers": n, "generators": generators, "parse_per_s": sum(rates)})
    done = [p for p in out["points"] if "parse_per_s" in p]
    one = next((p["parse_per_s"] for p in done if p["workers"] == 1), None)
    for p in done:
        p["over_one_worker"] = p["parse_per_s"] / one if one else None
    return out


def table(results: dict[str, Any]) -> str:
    """The results as markdown."""
    lines = ["# Device checks", "", f"machine: {results['machine']}", ""]
    ex = results["exactness"]
    lines += ["## CUDA exactness", ""]
    if "skipped" in ex:
        lines.append(f"skipped: {ex['skipped']}")
    else:
        lines += ["| TF32 | max abs CUDA − CPU | row alone − batch |", "|---|---|---|"]
        for k, v in ex.items():
            lines.append(
                f"| {k} | {v['max_abs_diff_vs_cpu']:.2e} | {v['max_abs_diff_alone_vs_batch']:.2e} |"
            )
    lines += ["", "## onnxruntime per batch", "", "| device | batch | p50 µs | seq/s |"]
    lines.append("|---|---|---|---|")
    for device, rows in results["batch_costs"].items():
        for r in rows:
            lines.append(f"| {device} | {r['batch']} | {r['p50_us']:.0f} | {r['seq_per_s']:.0f} |")
    lines += ["", "## Workers (Parse, 16 callers per generator)", ""]
    lines += ["| workers | generators | Parse/s | × one worker |", "|---|---|---|---|"]
    for p in results["workers"]["points"]:
        if "skipped" in p:
            lines.append(f"| {p['workers']} | — | skipped: {p['skipped']} | |")
        else:
            ratio = p["over_one_worker"]
            lines.append(
                f"| {p['workers']} | {p['generators']} | {p['parse_per_s']:.0f} | {ratio:.2f} |"
                if ratio
                else f"| {p['workers']} | {p['generators']} | {p['parse_per_s']:.0f} | |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    import onnxruntime as ort

    ap = argparse.ArgumentParser(prog="python -m bench.device", description=__doc__)
    ap.add_argument("--out", default=str(ROOT / "build" / "device"))
    ap.add_argument("--model", default=str(MODEL))
    ap.add_argument("--seconds", type=float, default=2.0, help="per point")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8])
    args = ap.parse_args(argv)
    out, model = Path(args.out), Path(args.model)
    out.mkdir(parents=True, exist_ok=True)
    texts = utterances()
    results: dict[str, Any] = {
        "machine": f"{os.cpu_count()} cores, onnxruntime {ort.__version__}, "
        f"providers {ort.get_available_providers()}",
    }
    for name, part in (
        ("exactness", lambda: exactness(model)),
        ("batch_costs", lambda: batch_costs(model, texts, args.seconds / 2)),
        ("workers", lambda: worker_scaling(model, texts, args.workers, args.seconds)),
    ):
        t0 = time.perf_counter()
        results[name] = part()
        print(f"{name}: {time.perf_counter() - t0:.0f} s", flush=True)
        (out / "device.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "device.md").write_text(table(results))
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
