"""`make bench` (generation): per-step batching against whole-request batching and one request
at a time, on the g2p model, at several concurrencies; words per second and latency.

Each mode is a server process of its own (the model's config.json picks the mode); the load
generator (this process) runs closed loops of Generate calls over test-split words. At every
point the answers are checked against the answers of the one-at-a-time server. Writes
bench/results/generate.json and generate.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rnnserve.v1 import rnnserve_pb2 as pb  # noqa: E402
from rnnserve.v1 import rnnserve_pb2_grpc as pb_grpc  # noqa: E402
from server.launch import ServerProcess  # noqa: E402

RESULTS = ROOT / "bench" / "results"
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
MODES = {"one": "one at a time", "request": "whole-request batching", "step": "per-step batching"}
CONCURRENCY = (1, 16, 64)


def words(n: int = 2000) -> list[str]:
    """Test-split words (the md5 rule), shuffled with a fixed seed."""
    from export.g2p.data import load_cmudict, split_entries

    test = [e.word for e in split_entries(load_cmudict())["test"]]
    rng = np.random.default_rng(0)
    return [test[i] for i in rng.permutation(len(test))[:n]]


class Server(ServerProcess):
    """`python -m server` on a repository holding the intent model and g2p in one mode."""

    def __init__(self, mode: str, tmp: Path) -> None:
        repo = tmp / mode
        shutil.copytree(ROOT / "models" / "g2p", repo / "g2p")
        shutil.copy(ROOT / "models" / "intent.onnx", repo / "intent.onnx")
        (repo / "g2p" / "config.json").write_text(json.dumps({"generation": {"batching": mode}}))
        super().__init__(
            "--model-repository", str(repo), "--port", "0", "--metrics-port", "-1", env=ENV
        )

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def closed_loop(
    target: str, items: list[str], concurrency: int, duration: float, warmup: float = 0.5
) -> tuple[int, float, list[float], dict[str, tuple[str, ...]], int]:
    """`concurrency` callers, each sending its next word when its answer comes back."""
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.ParserStub(channel)
        lat: list[float] = []
        answers: dict[str, tuple[str, ...]] = {}
        errors = 0
        nxt = iter(range(10**9))
        t_start = time.perf_counter()
        t_rec, t_end = t_start + warmup, t_start + warmup + duration

        async def caller() -> None:
            nonlocal errors
            while (now := time.perf_counter()) < t_end:
                w = items[next(nxt) % len(items)]
                try:
                    r = await stub.Generate(pb.GenerateRequest(text=w), timeout=30)
                except grpc.aio.AioRpcError:
                    errors += 1
                    continue
                if now >= t_rec:
                    lat.append(time.perf_counter() - now)
                    answers[w] = (*r.tokens, *map(str, r.scores))

        await asyncio.gather(*(caller() for _ in range(concurrency)))
    return len(lat), duration, lat, answers, errors


_RUNTIME: Any = None


async def loop_only(
    mode: str, items: list[str], concurrency: int, duration: float
) -> tuple[float, float, float]:
    """The generation loop in this process, no gRPC: `concurrency` callers in a closed loop.
    Returns words/s, p50 and p99 in ms."""
    from server.beam import make_job
    from server.generation import Generator
    from server.seq2seq import GenerationLimits, Seq2SeqRuntime

    global _RUNTIME
    if _RUNTIME is None:
        _RUNTIME = Seq2SeqRuntime(ROOT / "models" / "g2p" / "1")
        _RUNTIME.warmup(3)
    rt = _RUNTIME
    limits = GenerationLimits()
    ids = [rt.source_ids(w, limits) for w in items]
    lat: list[float] = []
    with ThreadPoolExecutor(1) as pool:
        gen = Generator(rt, limits, pool, mode)
        await asyncio.gather(*(gen.run(make_job(i, max_steps=40)) for i in ids[:64]))  # warm
        nxt = iter(range(10**9))
        t_end = time.perf_counter() + duration

        async def caller() -> None:
            while (now := time.perf_counter()) < t_end:
                await gen.run(make_job(ids[next(nxt) % len(ids)], max_steps=limits.default_steps))
                lat.append(time.perf_counter() - now)

        await asyncio.gather(*(caller() for _ in range(concurrency)))
        await gen.stop()
    return (
        len(lat) / duration,
        1e3 * float(np.percentile(lat, 50)),
        1e3 * float(np.percentile(lat, 99)),
    )


def measure(duration: float, rounds: int = 2) -> dict[str, Any]:
    """Every mode at every concurrency, modes interleaved, each point `rounds` times (the best
    round is kept: the machine is shared); then the answers against one at a time."""
    items = words()
    out: dict[str, Any] = {"points": [], "duration_s": duration, "words": len(items)}
    out["rounds"] = rounds
    answers: dict[tuple[str, int], dict[str, tuple[str, ...]]] = {}
    best: dict[tuple[str, int], dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        servers = {mode: Server(mode, Path(tmp)) for mode in MODES}
        try:
            for conc in CONCURRENCY:
                for _ in range(rounds):
                    for mode, server in servers.items():
                        cpu0 = server.cpu_s()
                        n, secs, lat, got, errors = asyncio.run(
                            closed_loop(f"127.0.0.1:{server.port}", items, conc, duration)
                        )
                        answers.setdefault((mode, conc), {}).update(got)
                        point = {
                            "mode": mode,
                            "concurrency": conc,
                            "words_per_s": n / secs,
                            "p50_ms": 1e3 * float(np.percentile(lat, 50)),
                            "p99_ms": 1e3 * float(np.percentile(lat, 99)),
                            "errors": errors,
                            "server_cpu": (server.cpu_s() - cpu0) / secs,
                        }
                        print(json.dumps(point), flush=True)
                        key = (mode, conc)
                        if key not in best or point["words_per_s"] > best[key]["words_per_s"]:
                            best[key] = point
        finally:
            for server in servers.values():
                server.stop()
    alone = {w: a for c in CONCURRENCY for w, a in answers[("one", c)].items()}
    for key, point in best.items():
        if key[0] != "one":
            same = [w for w in answers[key] if w in alone]
            point["checked"] = len(same)
            point["differ"] = sum(answers[key][w] != alone[w] for w in same)
    out["points"] = [best[(m, c)] for m in MODES for c in CONCURRENCY]
    by = {k: p["words_per_s"] for k, p in best.items()}
    out["ratios"] = {
        f"step/{m} c={c}": by[("step", c)] / by[(m, c)]
        for m in ("one", "request")
        for c in CONCURRENCY
    }
    loop_best: dict[tuple[str, int], tuple[float, float, float]] = {}
    for conc in CONCURRENCY:
        for _ in range(rounds):
            for mode in MODES:
                res = asyncio.run(loop_only(mode, items, conc, duration))
                if (mode, conc) not in loop_best or res[0] > loop_best[(mode, conc)][0]:
                    loop_best[(mode, conc)] = res
    out["loop_only"] = [
        {"mode": m, "concurrency": c, "words_per_s": v[0], "p50_ms": v[1], "p99_ms": v[2]}
        for (m, c), v in loop_best.items()
    ]
    out["loop_ratios"] = {
        f"step/{m} c={c}": loop_best[("step", c)][0] / loop_best[(m, c)][0]
        for m in ("one", "request")
        for c in CONCURRENCY
    }
    return out


def markdown(res: dict[str, Any]) -> str:
    """The table and the ratios."""
    lines = [
        f"Generate (g2p), {res['duration_s']:g} s per point, best of {res['rounds']} rounds "
        f"(modes interleaved), closed loop, {res['words']} test-split words, greedy. Answers "
        "checked: words this point answered (all rounds) that one-at-a-time answered too.",
        "",
        "| mode | c | words/s | p50 ms | p99 ms | server CPU | answers checked / differing |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in res["points"]:
        check = f"{p['checked']} / {p['differ']}" if "checked" in p else "(reference)"
        lines.append(
            f"| {MODES[p['mode']]} | {p['concurrency']} | {p['words_per_s']:.0f} | "
            f"{p['p50_ms']:.2f} | {p['p99_ms']:.2f} | {p['server_cpu']:.2f} | {check} |"
        )
    lines += ["", "| ratio (words/s) | value |", "|---|---|"]
    lines += [f"| {k} | {v:.2f} |" for k, v in res["ratios"].items()]
    lines += [
        "",
        "The generation loop alone, in the load generator's process (no gRPC; one inference "
        "thread), same words and modes:",
        "",
        "| mode | c | words/s | p50 ms | p99 ms |",
        "|---|---|---|---|---|",
    ]
    for p in sorted(
        res["loop_only"], key=lambda p: (list(MODES).index(p["mode"]), p["concurrency"])
    ):
        lines.append(
            f"| {MODES[p['mode']]} | {p['concurrency']} | {p['words_per_s']:.0f} | "
            f"{p['p50_ms']:.2f} | {p['p99_ms']:.2f} |"
        )
    lines += ["", "| ratio, loop alone (words/s) | value |", "|---|---|"]
    lines += [f"| {k} | {v:.2f} |" for k, v in res["loop_ratios"].items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--duration", type=float, default=3.0, help="seconds per point")
    ap.add_argument("--rounds", type=int, default=2, help="rounds per point (the best is kept)")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args()
    res = measure(args.duration, args.rounds)
    res["when"] = time.strftime("%Y-%m-%d %H:%M:%S")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "generate.json").write_text(json.dumps(res, indent=2) + "\n")
    (out / "generate.md").write_text(markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main()
