"""An asyncio gRPC load generator: N concurrent callers for a fixed duration."""

from __future__ import annotations

import asyncio
import itertools
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from rnnserve.kserve import grpc_predict_v2_pb2 as v2
from rnnserve.kserve import grpc_predict_v2_pb2_grpc as v2_grpc
from rnnserve.v1 import rnnserve_pb2 as pb
from rnnserve.v1 import rnnserve_pb2_grpc as pb_grpc


@dataclass
class Point:
    """One measured point."""

    kind: str
    concurrency: int
    seconds: float
    calls: int
    errors: int
    latencies_us: np.ndarray
    client_cpu_s: float

    def summary(self) -> dict[str, Any]:
        """Throughput and latency percentiles."""
        lat = self.latencies_us
        pct = (lambda q: float(np.percentile(lat, q))) if len(lat) else (lambda q: float("nan"))
        return {
            "kind": self.kind,
            "concurrency": self.concurrency,
            "calls": self.calls,
            "errors": self.errors,
            "throughput": self.calls / self.seconds,
            "p50_us": pct(50),
            "p95_us": pct(95),
            "p99_us": pct(99),
            "client_cpu": self.client_cpu_s / self.seconds,  # cores used by the load generator
        }


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def make_calls(
    kind: str,
    channel: grpc.aio.Channel,
    texts: Sequence[str],
    ids: Sequence[Sequence[int]],
    model: str,
) -> Callable[[int], Any]:
    """A function i -> awaitable for one call of `kind` (empty, parse, infer, stream)."""
    if kind == "empty":
        stub = health_pb2_grpc.HealthStub(channel)
        req = health_pb2.HealthCheckRequest()
        return lambda i: stub.Check(req, timeout=30)
    if kind == "parse":
        pstub = pb_grpc.ParserStub(channel)
        reqs = [pb.ParseRequest(text=t) for t in texts]
        return lambda i: pstub.Parse(reqs[i % len(reqs)], timeout=30)
    if kind.startswith("parse_ctx"):  # "parse_ctx500": Parse with a 500-entity home context
        from bench.home import home
        from client.api import PARSE_CONTEXT, PARSE_METHOD
        from client.context import prepare_context

        # as the Python client sends a prepared context: its bytes after the request's own
        raw = channel.unary_unary(PARSE_METHOD, response_deserializer=pb.ParseResponse.FromString)
        tail = prepare_context(home(int(kind.removeprefix("parse_ctx")))).field(PARSE_CONTEXT)
        wires = [pb.ParseRequest(text=t).SerializeToString() + tail for t in texts]
        return lambda i: raw(wires[i % len(wires)], timeout=30)
    if kind == "infer":
        istub = v2_grpc.GRPCInferenceServiceStub(channel)
        ireqs = []
        for row in ids:
            arr = np.asarray([row], dtype=np.int64)
            r = v2.ModelInferRequest(model_name=model)
            r.inputs.add(name="input_ids", datatype="INT64", shape=list(arr.shape))
            r.outputs.add(name="intent_logits")
            r.outputs.add(name="slot_logits")
            r.raw_input_contents.append(arr.tobytes())
            ireqs.append(r)
        return lambda i: istub.ModelInfer(ireqs[i % len(ireqs)], timeout=30)
    raise ValueError(kind)


async def run_point(
    target: str,
    kind: str,
    concurrency: int,
    duration: float,
    texts: Sequence[str],
    ids: Sequence[Sequence[int]],
    model: str = "intent",
    warmup: float = 0.3,
    connections: int = 1,
) -> Point:
    """Run `concurrency` callers in a closed loop for `duration` seconds, spread over
    `connections` channels (each its own TCP connection: worker processes get one each)."""
    channels = [
        grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(connections)
    ]
    try:
        return await _closed_loop(channels, kind, concurrency, duration, texts, ids, model, warmup)
    finally:
        for channel in channels:
            await channel.close()


async def _closed_loop(
    channels: list[grpc.aio.Channel],
    kind: str,
    concurrency: int,
    duration: float,
    texts: Sequence[str],
    ids: Sequence[Sequence[int]],
    model: str,
    warmup: float,
) -> Point:
    calls = [make_calls(kind, ch, texts, ids, model) for ch in channels]
    counter = itertools.count()
    lat: list[float] = []
    errors = 0
    stop_at = 0.0
    record = False

    async def worker(k: int) -> None:
        nonlocal errors
        call = calls[k % len(calls)]
        while True:
            t = time.perf_counter()
            if t >= stop_at:
                return
            try:
                await call(next(counter))
            except grpc.aio.AioRpcError:
                errors += 1
                continue
            if record:
                lat.append(time.perf_counter() - t)

    stop_at = time.perf_counter() + warmup
    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    record = True
    cpu0, t0 = _cpu(), time.perf_counter()
    stop_at = t0 + duration
    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    elapsed = time.perf_counter() - t0
    cpu = _cpu() - cpu0
    arr = np.asarray(lat) * 1e6
    return Point(kind, concurrency, elapsed, len(lat), errors, arr, cpu)


async def run_stream_point(
    target: str, concurrency: int, duration: float, chunks: Sequence[Sequence[Sequence[int]]]
) -> dict[str, Any]:
    """Streams of token-id chunks: chunks answered per second, per-chunk latency."""
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.ParserStub(channel)
        lat: list[float] = []
        n_streams = 0
        stop_at = time.perf_counter() + duration
        counter = itertools.count()

        async def worker() -> None:
            nonlocal n_streams
            while time.perf_counter() < stop_at:
                utt = chunks[next(counter) % len(chunks)]
                call = stub.ParseStream(timeout=30)
                for piece in utt:
                    t = time.perf_counter()
                    await call.write(pb.ParseStreamRequest(token_ids=pb.TokenIds(ids=piece)))
                    await call.read()
                    lat.append(time.perf_counter() - t)
                await call.done_writing()
                n_streams += 1

        cpu0, t0 = _cpu(), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
        cpu = _cpu() - cpu0
    us = np.asarray(lat) * 1e6
    return {
        "kind": "stream",
        "concurrency": concurrency,
        "chunks": len(lat),
        "streams": n_streams,
        "chunks_per_s": len(lat) / elapsed,
        "p50_us": float(np.percentile(us, 50)),
        "p99_us": float(np.percentile(us, 99)),
        "client_cpu": cpu / elapsed,
    }
