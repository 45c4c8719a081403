"""`make bench`: floors, the server with batching off and on, streams; JSON, plots, summary.

Every server runs in its own process; the load generator (this process) shares the machine
and reports its own CPU use. Writes bench/results/latest.json, throughput.png, latency.png
and summary.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import perf_analyzer  # noqa: E402
from bench.loadgen import run_point, run_stream_point  # noqa: E402
from modelspec.batch import pad_rows  # noqa: E402
from modelspec.meta import ModelMetadata  # noqa: E402
from server.launch import ServerProcess  # noqa: E402

RESULTS = ROOT / "bench" / "results"
CONCURRENCY = (1, 4, 16, 64)
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


# ---------------------------------------------------------------- inputs


def utterances(n: int = 400) -> list[str]:
    """Test-split utterances (build/data/test.jsonl when present, else generated)."""
    path = ROOT / "build" / "data" / "test.jsonl"
    if path.exists():
        texts = [json.loads(line)["text"] for line in path.read_text().splitlines() if line]
    else:
        from export.data import generate

        texts = [e.text for e in generate(seed=13)["test"]]
    rng = np.random.default_rng(0)
    return [texts[i] for i in rng.permutation(len(texts))[:n]]


# ---------------------------------------------------------------- server processes


class Server(ServerProcess):
    """`python -m server` on free ports; startup time measured to the 'serving' log line."""

    def __init__(self, model: Path, *args: str) -> None:
        super().__init__(
            "--model", str(model), "--port", "0", "--metrics-port", "0", *args, env=ENV
        )

    def pids(self) -> list[int]:
        """The server process and its worker processes (with --workers)."""
        kids = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        children = [int(p) for p in kids.read_text().split()] if kids.exists() else []
        return [self.proc.pid, *children]

    def cpu_s(self) -> float:
        total = 0.0
        for pid in self.pids():
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

    def peak_rss_mb(self) -> float:
        total = 0.0
        for pid in self.pids():
            with contextlib.suppress(OSError):
                status = Path(f"/proc/{pid}/status").read_text()
                m = re.search(r"VmHWM:\s+(\d+) kB", status)
                total += int(m.group(1)) / 1024 if m else 0.0
        return total

    def batch_stats(self) -> tuple[float, float, float, float]:
        """(rows sum, rows count, requests sum, requests count) from /metrics."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as r:
            text = r.read().decode()

        def val(name: str) -> float:
            m = re.search(rf"^{name} (\S+)$", text, re.M)
            return float(m.group(1)) if m else 0.0

        return (
            val("rnnserve_batch_rows_sum"),
            val("rnnserve_batch_rows_count"),
            val("rnnserve_batch_requests_sum"),
            val("rnnserve_batch_requests_count"),
        )


# ---------------------------------------------------------------- floors


@contextlib.contextmanager
def sync_floor(model: Path) -> Iterator[str]:
    """The smallest synchronous grpcio server (bench/sync_floor.py) running; yields its target."""
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "sync_floor.py"), str(model)],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        yield f"127.0.0.1:{int(proc.stdout.readline())}"
    finally:
        proc.terminate()
        proc.wait(30)


def sync_server_floor(model: Path, ids: list[list[int]], duration: float) -> list[dict]:
    """ModelInfer against the synchronous floor, driven by the bench's own load generator."""
    with sync_floor(model) as target:
        out = []
        for conc in CONCURRENCY:
            point = asyncio.run(run_point(target, "infer", conc, duration, [], ids))
            out.append(point.summary())
            s = out[-1]
            print(
                f"  sync floor    infer  c={conc:3d} {s['throughput']:8.0f}/s  "
                f"p50 {s['p50_us']:7.0f} µs  p99 {s['p99_us']:7.0f} µs",
                flush=True,
            )
        return out


def perf_analyzer_points(model: Path, ids: list[list[int]], duration: float) -> dict | None:
    """ModelInfer driven by Triton's perf_analyzer (bench/perf_analyzer.py), against the
    synchronous floor and the server (batching on, then 2 workers); None when it is absent."""
    binary = perf_analyzer.find()
    if binary is None:
        print("perf_analyzer: not installed, skipped (bench/perf_analyzer.py)", flush=True)
        return None
    out: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = perf_analyzer.input_file(ids, Path(tmp))
        with sync_floor(model) as target:
            out["sync floor"] = [
                perf_analyzer.run(binary, target, model.stem, c, data, duration) for c in (1, 16)
            ]
        for label, args in (
            ("batching on", ["--max-batch-size", "32"]),
            ("2 workers", ["--max-batch-size", "32", "--workers", "2"]),
        ):
            srv = Server(model, *args)
            try:
                out[label] = [
                    perf_analyzer.run(binary, srv.target, model.stem, c, data, duration)
                    for c in (1, 16)
                ]
            finally:
                srv.stop()
    for label, points in out.items():
        for p in points:
            print(
                f"  perf_analyzer {label:11s} c={p['concurrency']:3d} {p['throughput']:8.0f}/s  "
                f"p50 {p['p50_us']:7.0f} µs  p99 {p['p99_us']:7.0f} µs",
                flush=True,
            )
    return out


def onnxruntime_floor(model: Path, texts: list[str], sizes: tuple[int, ...]) -> list[dict]:
    """Raw session.run in this process (1 intra-op thread) at several batch sizes."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
    meta = ModelMetadata.from_json(sess.get_modelmeta().custom_metadata_map["rnnserve"])
    tok = meta.make_tokenizer()
    rows = [tok.ids(tok.tokenize(t)) for t in texts]
    out = []
    for b in sizes:
        batches = []
        for k in range(0, len(rows) - b + 1, b):
            ids, lengths = pad_rows(rows[k : k + b])
            batches.append({"input_ids": ids, "lengths": lengths})
        for f in batches[:20]:
            sess.run(None, f)
        lat = []
        t_end = time.perf_counter() + 1.0
        i = 0
        while time.perf_counter() < t_end:
            t = time.perf_counter()
            sess.run(None, batches[i % len(batches)])
            lat.append(time.perf_counter() - t)
            i += 1
        us = np.asarray(lat) * 1e6
        out.append(
            {
                "batch": b,
                "p50_us": float(np.percentile(us, 50)),
                "p99_us": float(np.percentile(us, 99)),
                "seq_per_s": b / float(np.mean(lat)),
            }
        )
    return out


def torch_floor(checkpoint: Path, texts: list[str]) -> dict | None:
    """torch eager at batch 1, in its own process (torch and onnxruntime starve each other)."""
    if not checkpoint.exists():
        return None
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "torch_floor.py"), str(checkpoint)],
        input=json.dumps(texts),
        capture_output=True,
        text=True,
        timeout=300,
    )
    if out.returncode != 0:
        print(out.stderr, file=sys.stderr)
        return None
    return json.loads(out.stdout)


# ---------------------------------------------------------------- the run


def context_extra(model: Path, texts: list[str], rounds: int = 12) -> dict[str, Any]:
    """Parse p50 at one caller with a 500-entity context minus without, on one server, in
    alternating short rounds (a single pair of points moves by a few hundred µs from run to
    run on a shared machine): the median of the per-round differences."""
    srv = Server(model, "--max-batch-size", "32")
    extra = []
    try:
        for _ in range(rounds):
            p50 = [
                asyncio.run(run_point(srv.target, k, 1, 0.5, texts, [], warmup=0.1)).summary()[
                    "p50_us"
                ]
                for k in ("parse", "parse_ctx500")
            ]
            extra.append(p50[1] - p50[0])
    finally:
        srv.stop()
    return {"rounds_us": extra, "median_us": float(np.median(extra))}


def measure_server(
    model: Path,
    label: str,
    args: list[str],
    kinds: tuple[str, ...],
    texts: list[str],
    ids: list[list[int]],
    duration: float,
    connections: int = 1,
) -> dict[str, Any]:
    srv = Server(model, *args)
    result: dict[str, Any] = {
        "label": label,
        "args": args,
        "startup_s": srv.startup_s,
        "points": [],
    }
    try:
        for kind in kinds:
            for conc in CONCURRENCY:
                b0, cpu0 = srv.batch_stats(), srv.cpu_s()
                point = asyncio.run(
                    run_point(srv.target, kind, conc, duration, texts, ids, connections=connections)
                )
                b1, cpu1 = srv.batch_stats(), srv.cpu_s()
                s = point.summary()
                s["server_cpu"] = (cpu1 - cpu0) / point.seconds
                rows_n, calls_n = b1[0] - b0[0], b1[1] - b0[1]
                s["mean_batch_rows"] = rows_n / calls_n if calls_n else 1.0
                s["label"] = label
                result["points"].append(s)
                print(
                    f"  {label:13s} {kind:6s} c={conc:3d} {s['throughput']:8.0f}/s  "
                    f"p50 {s['p50_us']:7.0f} µs  p99 {s['p99_us']:7.0f} µs  "
                    f"batch {s['mean_batch_rows']:.1f}  server cpu {s['server_cpu']:.2f}  "
                    f"client cpu {s['client_cpu']:.2f}",
                    flush=True,
                )
        result["peak_rss_mb"] = srv.peak_rss_mb()
    finally:
        srv.stop()
    return result


def plot(results: dict[str, Any], out_dir: Path) -> list[str]:
    """throughput.png and latency.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, list[dict]] = {}
    for run in results["servers"]:
        for p in run["points"]:
            key = "empty RPC" if p["kind"] == "empty" else f"{p['kind']} ({run['label']})"
            series.setdefault(key, []).append(p)
    files = []
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for key, pts in series.items():
        ax.plot(
            [p["concurrency"] for p in pts],
            [p["throughput"] for p in pts],
            marker="o",
            label=key,
            linestyle="--" if key == "empty RPC" else "-",
        )
    ax.set_xscale("log", base=2)
    ax.set_xlabel("concurrent callers")
    ax.set_ylabel("requests / s")
    ax.set_title("rnnserve throughput (2 cores, server + load generator)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "throughput.png", dpi=110)
    files.append("throughput.png")
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for key, pts in series.items():
        if key == "empty RPC":
            continue
        xs = [p["concurrency"] for p in pts]
        (line,) = ax.plot(xs, [p["p50_us"] / 1000 for p in pts], marker="o", label=f"{key} p50")
        ax.plot(
            xs,
            [p["p99_us"] / 1000 for p in pts],
            marker="x",
            linestyle=":",
            color=line.get_color(),
            label=f"{key} p99",
        )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("concurrent callers")
    ax.set_ylabel("latency (ms)")
    ax.set_title("rnnserve latency percentiles")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out_dir / "latency.png", dpi=110)
    files.append("latency.png")
    plt.close(fig)
    return files


def _point(results: dict[str, Any], label: str, kind: str, conc: int) -> dict[str, Any]:
    for run in results["servers"]:
        for p in run["points"]:
            if p["label"] == label and p["kind"] == kind and p["concurrency"] == conc:
                return p
    raise KeyError((label, kind, conc))


def ratios(results: dict[str, Any]) -> dict[str, float]:
    """The figures the targets are stated in."""
    ort1 = results["floors"]["onnxruntime"][0]["p50_us"]
    empty1 = _point(results, "batching on", "empty", 1)["p50_us"]
    out = {}
    for kind in ("parse", "infer"):
        for label in ("batching off", "batching on"):
            tag = label.split()[1]
            out[f"{kind}_c1_p50_over_floor_{tag}"] = _point(results, label, kind, 1)["p50_us"] / (
                ort1 + empty1
            )
        for conc in (16, 64):
            on = _point(results, "batching on", kind, conc)["throughput"]
            off = _point(results, "batching off", kind, conc)["throughput"]
            empty = _point(results, "batching on", "empty", conc)["throughput"]
            out[f"{kind}_c{conc}_on_over_off"] = on / off
            out[f"{kind}_c{conc}_on_over_empty_rpc"] = on / empty
            two = _point(results, "2 workers", kind, conc)["throughput"]
            out[f"{kind}_c{conc}_2workers_over_1"] = two / on
    sync = {p["concurrency"]: p for p in results["floors"]["sync_server"]}
    out["infer_c1_p50_over_sync_server"] = (
        _point(results, "batching on", "infer", 1)["p50_us"] / sync[1]["p50_us"]
    )
    for conc in (16, 64):
        best = max(
            _point(results, label, "infer", conc)["throughput"]
            for label in ("batching on", "2 workers")
        )
        out[f"infer_c{conc}_best_over_sync_server"] = best / sync[conc]["throughput"]
    if any(r["label"] == "home context" for r in results["servers"]):
        plain = _point(results, "home context", "parse", 1)["p50_us"]
        ctx = _point(results, "home context", "parse_ctx500", 1)["p50_us"]
        out["parse_ctx500_c1_p50_extra_us"] = ctx - plain
        if results.get("context_extra"):  # alternating rounds: the robust figure
            out["parse_ctx500_c1_p50_extra_median_us"] = results["context_extra"]["median_us"]
        out["parse_ctx500_c1_p50_over_parse"] = ctx / plain
        for conc in (16, 64):
            a = _point(results, "home context", "parse_ctx500", conc)["throughput"]
            out[f"parse_ctx500_c{conc}_over_parse"] = (
                a / _point(results, "home context", "parse", conc)["throughput"]
            )
    pa = results.get("perf_analyzer")
    if pa:
        floor1, floor16 = pa["sync floor"]
        out["pa_infer_c1_p50_over_sync_server"] = pa["batching on"][0]["p50_us"] / floor1["p50_us"]
        for label in ("batching on", "2 workers"):
            key = "1worker" if label == "batching on" else "2workers"
            out[f"pa_infer_c16_{key}_over_sync_server"] = (
                pa[label][1]["throughput"] / floor16["throughput"]
            )
    if results.get("context_match"):
        out["context_match_500_in_process_us"] = results["context_match"]["p50_us"]
        out["context_match_500_first_in_process_us"] = results["context_match"]["first_p50_us"]
    return out


def summary_md(results: dict[str, Any]) -> str:
    """The Markdown summary (also pasted into the README)."""
    lines = [
        f"Machine: {results['machine']}; model {results['model']} "
        f"({results['model_desc']}); {results['duration_s']:.0f} s per point.",
        "",
    ]
    lines += [
        "| server | call | conc | req/s | p50 µs | p95 µs | p99 µs | batch rows | "
        "server CPU | client CPU |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in results["servers"]:
        for p in run["points"]:
            lines.append(
                f"| {run['label']} | {p['kind']} | {p['concurrency']} | {p['throughput']:.0f} | "
                f"{p['p50_us']:.0f} | {p['p95_us']:.0f} | {p['p99_us']:.0f} | "
                f"{p['mean_batch_rows']:.1f} | {p['server_cpu']:.2f} | {p['client_cpu']:.2f} |"
            )
    fl = results["floors"]
    lines += [
        "",
        "Floors: raw onnxruntime (1 thread) "
        + ", ".join(
            f"batch {f['batch']}: {f['p50_us']:.0f} µs ({f['seq_per_s']:.0f} seq/s)"
            for f in fl["onnxruntime"]
        ),
    ]
    if fl.get("sync_server"):
        lines.append(
            "Minimal synchronous grpcio server (ModelInfer, onnxruntime inline): "
            + ", ".join(
                f"c={p['concurrency']} {p['throughput']:.0f}/s p50 {p['p50_us']:.0f} µs"
                for p in fl["sync_server"]
            )
        )
    for label, points in (results.get("perf_analyzer") or {}).items():
        lines.append(
            f"perf_analyzer, ModelInfer, {label}: "
            + ", ".join(
                f"c={p['concurrency']} {p['throughput']:.0f}/s p50 {p['p50_us']:.0f} µs"
                for p in points
            )
        )
    if fl.get("torch"):
        lines.append(f"torch eager batch 1 (1 thread): p50 {fl['torch']['p50_us']:.0f} µs")
    for s in results.get("streams", []):
        lines.append(
            f"ParseStream ({results['stream_model']}), {s['concurrency']} streams: "
            f"{s['chunks_per_s']:.0f} chunks/s, p50 {s['p50_us']:.0f} µs per chunk"
        )
    lines.append(
        "Startup to SERVING: "
        + ", ".join(f"{r['label']} {r['startup_s']:.2f} s" for r in results["servers"])
        + "; peak RSS: "
        + ", ".join(f"{r['label']} {r['peak_rss_mb']:.0f} MB" for r in results["servers"])
    )
    lines += ["", "| ratio | value |", "|---|---|"]
    lines += [f"| {k} | {v:.2f} |" for k, v in results["ratios"].items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    from bench.home import match_cost_us

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default=str(ROOT / "models" / "intent.onnx"))
    ap.add_argument("--checkpoint", default=str(ROOT / "models" / "intent.pt"))
    ap.add_argument("--stream-model", default=str(ROOT / "models" / "intent-stream.onnx"))
    ap.add_argument("--duration", type=float, default=2.0, help="seconds per point")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args()
    model = Path(args.model)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    texts = utterances()
    import onnxruntime as ort

    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    meta = ModelMetadata.from_json(sess.get_modelmeta().custom_metadata_map["rnnserve"])
    tok = meta.make_tokenizer()
    ids = [tok.ids(tok.tokenize(t)) for t in texts]
    del sess
    cfg = meta.config
    results: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, onnxruntime {ort.__version__}",
        "model": model.name,
        "model_desc": f"{cfg['cell']} {'bi' if cfg['bidirectional'] else 'uni'} "
        f"{cfg['num_layers']}x{cfg['hidden_size']}",
        "duration_s": args.duration,
        "mean_tokens": float(np.mean([len(r) for r in ids])),
    }
    print("floors", flush=True)
    results["floors"] = {
        "onnxruntime": onnxruntime_floor(model, texts, (1, 4, 8, 16, 32, 64)),
        "torch": torch_floor(Path(args.checkpoint), texts),
    }
    for f in results["floors"]["onnxruntime"]:
        print(
            f"  onnxruntime batch {f['batch']:3d}: p50 {f['p50_us']:7.0f} µs  "
            f"{f['seq_per_s']:8.0f} seq/s",
            flush=True,
        )
    print(f"  torch eager batch 1: {results['floors']['torch']}", flush=True)
    results["floors"]["sync_server"] = sync_server_floor(model, ids, args.duration)
    results["context_match"] = match_cost_us(str(model), texts, 500)
    results["context_extra"] = context_extra(model, texts)
    print(f"  context of 500 entities, p50 extra at 1 caller: {results['context_extra']}")
    print(f"  context of 500 entities, in process: {results['context_match']}", flush=True)
    results["servers"] = [
        measure_server(
            model,
            "batching off",
            ["--max-batch-size", "1"],
            ("parse", "infer"),
            texts,
            ids,
            args.duration,
        ),
        measure_server(
            model,
            "batching on",
            ["--max-batch-size", "32"],
            ("empty", "parse", "infer"),
            texts,
            ids,
            args.duration,
        ),
        measure_server(
            model,
            "home context",
            ["--max-batch-size", "32"],
            ("parse", "parse_ctx500"),
            texts,
            ids,
            args.duration,
        ),
        measure_server(
            model,
            "2 workers",
            ["--max-batch-size", "32", "--workers", "2"],
            ("parse", "infer"),
            texts,
            ids,
            args.duration,
            connections=4,
        ),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        stream_model = Path(args.stream_model)
        if stream_model.is_file():
            results["stream_model"] = f"{stream_model.stem} (trained, unidirectional)"
        else:  # no streaming model: an untrained unidirectional twin shows the mechanics
            stream_model = Path(tmp) / "uni.onnx"
            subprocess.run(
                [
                    sys.executable,
                    str(ROOT / "bench" / "uni_model.py"),
                    str(model),
                    str(stream_model),
                ],
                check=True,
                capture_output=True,
                timeout=300,
            )
            results["stream_model"] = "untrained unidirectional twin of the default model"
        stream_tok = ModelMetadata.from_json(
            ort.InferenceSession(str(stream_model), providers=["CPUExecutionProvider"])
            .get_modelmeta()
            .custom_metadata_map["rnnserve"]
        ).make_tokenizer()
        stream_ids = [stream_tok.ids(stream_tok.tokenize(t)) for t in texts]
        srv = Server(stream_model)
        try:
            chunked = [[r[i : i + 3] for i in range(0, len(r), 3)] for r in stream_ids]
            results["streams"] = [
                asyncio.run(run_stream_point(srv.target, c, args.duration, chunked))
                for c in (1, 16)
            ]
        finally:
            srv.stop()
    for s in results["streams"]:
        print(f"  stream c={s['concurrency']}: {s['chunks_per_s']:.0f} chunks/s", flush=True)
    results["perf_analyzer"] = perf_analyzer_points(model, ids, args.duration)
    results["ratios"] = ratios(results)
    results["plots"] = plot(results, out_dir)
    (out_dir / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    md = summary_md(results)
    (out_dir / "summary.md").write_text(md)
    print()
    print(md)


if __name__ == "__main__":
    main()
