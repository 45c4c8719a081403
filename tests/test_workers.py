"""--workers N: worker processes on one port (SO_REUSEPORT), over the wire; --cuda-tf32.

Each worker names itself in the `rnnserve-worker` trailer (its pid), which is how these tests
tell workers apart. The kernel assigns each new connection to a worker, so a test that needs a
channel on a given worker opens channels until it has one.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from client.api import Client
from rnnserve.kserve import grpc_predict_v2_pb2 as v2
from rnnserve.kserve import grpc_predict_v2_pb2_grpc as v2_grpc
from rnnserve.v1 import rnnserve_pb2 as pb
from rnnserve.v1 import rnnserve_pb2_grpc as pb_grpc
from server import runtime
from server.interceptors import WORKER_TRAILER
from server.metrics import Metrics
from server.model import load_model
from server.settings import parse_settings
from server.transport import grpc_options

from .serving import ENV, ROOT, TEXTS, RunningServer, ServerProcess, settings_for, small_model_file

DEADLINE_S = 30.0
LOCAL = [("grpc.use_local_subchannel_pool", 1)]  # a channel of its own: its own connection


@pytest.fixture(scope="module")
def uni(tmp_path_factory) -> Path:
    """A unidirectional GRU: it streams and carries v2 sequences."""
    return small_model_file(tmp_path_factory.mktemp("m") / "uni.onnx", "gru")


@pytest.fixture(scope="module")
def two(uni) -> Iterator[ServerProcess]:
    """One server with two workers, shared by the tests that leave it as it was."""
    srv = ServerProcess("--model", str(uni), "--workers", "2", "--log-level", "debug")
    yield srv
    code, _ = srv.stop()
    assert code == 0


# ---------------------------------------------------------------- helpers


def worker_of(channel: grpc.Channel) -> int:
    """The pid of the worker that holds this channel's connection (from the trailer)."""
    stub = health_pb2_grpc.HealthStub(channel)
    _, call = stub.Check.with_call(health_pb2.HealthCheckRequest(), timeout=5)
    return int(dict(call.trailing_metadata())[WORKER_TRAILER])


def pinned(target: str, pids: set[int]) -> dict[int, grpc.Channel]:
    """One open channel on each worker in `pids` (channels are opened until each has one)."""
    found: dict[int, grpc.Channel] = {}
    end = time.monotonic() + DEADLINE_S
    while set(found) != pids:
        assert time.monotonic() < end, f"no connection reached {pids - set(found)}"
        ch = grpc.insecure_channel(target, options=LOCAL)
        pid = worker_of(ch)
        if pid in pids and pid not in found:
            found[pid] = ch
        else:
            ch.close()
    return found


def wait_for(what: str, check: Callable[[], object], deadline: float = DEADLINE_S) -> object:
    """Poll `check` until it returns something true; fail after `deadline` seconds."""
    end = time.monotonic() + deadline
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.02)


def records(srv: ServerProcess) -> list[dict]:
    """The JSON log lines read so far after 'serving'."""
    return [json.loads(x) for x in list(srv.rest) if x.startswith("{")]


def log_line(srv: ServerProcess, msg: str, **fields: object) -> dict:
    """Wait for the first log record with `msg` and these fields."""

    def find() -> dict | None:
        for rec in records(srv):
            if rec["msg"] == msg and all(rec.get(k) == v for k, v in fields.items()):
                return rec
        return None

    found = wait_for(f"log line {msg!r} {fields}", find)
    assert isinstance(found, dict)
    return found


def children(pid: int) -> set[int]:
    """Child processes of `pid`."""
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return {int(x) for x in text.split()}


def metrics_text(srv: ServerProcess) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{srv.metrics_port}/metrics", timeout=5) as r:
        return str(r.read().decode())


def sample(text: str, key: str) -> float:
    """One sample of an exposition by its printed name and labels; 0 when absent."""
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name == key:
            return float(value)
    return 0.0


def parse(channel: grpc.Channel, text: str = "turn on the kitchen lights") -> int:
    """A Parse on this channel; the answering worker's pid."""
    _, call = pb_grpc.ParserStub(channel).Parse.with_call(pb.ParseRequest(text=text), timeout=5)
    return int(dict(call.trailing_metadata())[WORKER_TRAILER])


def seq_request(model: str, ids: list[int], seq: int, start: bool = False, end: bool = False):
    arr = np.asarray([ids], np.int64)
    r = v2.ModelInferRequest(model_name=model)
    r.inputs.add(name="input_ids", datatype="INT64", shape=list(arr.shape))
    r.raw_input_contents.append(arr.tobytes())
    r.parameters["sequence_id"].int64_param = seq
    r.parameters["sequence_start"].bool_param = start
    r.parameters["sequence_end"].bool_param = end
    return r


# ---------------------------------------------------------------- settings and options


def test_workers_settings_and_transport():
    s = parse_settings(["--workers", "3"], {})
    assert s.workers == 3
    assert parse_settings([], {"RNNSERVE_WORKERS": "4"}).workers == 4
    assert parse_settings([], {}).workers == 1
    assert dict(grpc_options(parse_settings([], {})))["grpc.so_reuseport"] == 0
    assert dict(grpc_options(s))["grpc.so_reuseport"] == 1
    for bad in (["--workers", "0"], ["--workers", "257"]):
        with pytest.raises(ValueError, match="workers"):
            parse_settings(bad, {})
    with pytest.raises(ValueError, match="explicit"):
        parse_settings(["--workers", "2", "--model-control-mode", "explicit"], {})
    with pytest.raises(ValueError, match="connections"):
        Client(connections=0)


def test_one_process_is_unchanged_no_worker_trailer(uni):
    with RunningServer(settings_for(uni)) as srv, grpc.insecure_channel(srv.target) as ch:
        _, call = pb_grpc.ParserStub(ch).Parse.with_call(pb.ParseRequest(text="hi"), timeout=5)
        assert WORKER_TRAILER not in dict(call.trailing_metadata())


def test_a_worker_that_cannot_start_is_one_line_and_status_1(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "server", "--model", str(tmp_path / "none.onnx")]
        + ["--port", "0", "--metrics-port", "0", "--workers", "2"],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    lines = [x for x in proc.stderr.splitlines() if not x.startswith("{")]
    assert lines == [f"error: {tmp_path / 'none.onnx'}: no such model file"]


# ---------------------------------------------------------------- two workers over the wire


def test_two_workers_share_the_port_and_one_client_reaches_both(two):
    listening = next(r for r in two.lines if r["msg"] == "listening")
    serving = next(r for r in two.lines if r["msg"] == "serving")
    assert listening["workers"] == 2 and listening["port"] == two.port
    pids = set(serving["pids"])
    assert len(pids) == 2 and pids == children(two.proc.pid)

    # A client with two connections whose connections landed on different workers (the
    # kernel picks the worker per connection, so try fresh clients until one does).
    end = time.monotonic() + DEADLINE_S
    while True:
        client = Client(two.target, connections=2)
        if {worker_of(ch) for ch in client.channels} == pids:
            break
        client.close()
        assert time.monotonic() < end, "no client reached both workers"
    with client:
        for _ in range(10):  # round robin per call: five on each connection
            assert client.info().name == "uni"
        assert client.parse(TEXTS[0]).intent

    def per_worker() -> Counter | None:
        seen = Counter(
            r["worker"]
            for r in records(two)
            if r["msg"] == "request" and r.get("method") == "ModelInfo"
        )
        return seen if sum(seen.values()) >= 10 else None

    assert wait_for("ten ModelInfo request lines", per_worker) == Counter({0: 5, 1: 5})


def test_cli_spreads_over_connections(two, capsys):
    from client.__main__ import main

    assert main(["health", "--target", two.target, "--connections", "4"]) == 0
    assert capsys.readouterr().out.strip() == "SERVING"
    with pytest.raises(SystemExit) as exit_:
        main(["info", "--target", two.target, "--connections", "0"])
    assert exit_.value.code == 2
    assert "--connections: must be a whole number" in capsys.readouterr().err


def test_metrics_add_up_across_workers(two, uni):
    serving = next(r for r in two.lines if r["msg"] == "serving")
    chans = pinned(two.target, set(serving["pids"]))
    key = 'rnnserve_requests_total{code="OK",method="Parse"}'
    before = sample(metrics_text(two), key)
    a, b = chans.values()
    for i in range(7):
        parse(a, TEXTS[i % len(TEXTS)])
    for i in range(5):
        parse(b, TEXTS[i % len(TEXTS)])
    text = metrics_text(two)
    assert sample(text, key) - before == 12
    assert sample(text, "rnnserve_ready") == 1
    assert sample(text, "rnnserve_worker_restarts_total") == 0

    # Gauges: live sequences are summed over workers.
    for n, ch in enumerate((a, b)):
        v2_grpc.GRPCInferenceServiceStub(ch).ModelInfer(
            seq_request(uni.stem, [3, 4], 900 + n, start=True), timeout=5
        )
    assert sample(metrics_text(two), "rnnserve_live_sequences") == 2
    for n, ch in enumerate((a, b)):
        v2_grpc.GRPCInferenceServiceStub(ch).ModelInfer(
            seq_request(uni.stem, [5], 900 + n, end=True), timeout=5
        )
    assert sample(metrics_text(two), "rnnserve_live_sequences") == 0
    for ch in chans.values():
        ch.close()


def test_a_sequence_on_the_wrong_worker_is_failed_precondition(two, uni):
    serving = next(r for r in two.lines if r["msg"] == "serving")
    home, away = pinned(two.target, set(serving["pids"])).values()
    home_stub = v2_grpc.GRPCInferenceServiceStub(home)
    home_stub.ModelInfer(seq_request(uni.stem, [3, 9], 77, start=True), timeout=5)
    with pytest.raises(grpc.RpcError) as err:
        v2_grpc.GRPCInferenceServiceStub(away).ModelInfer(seq_request(uni.stem, [4], 77), timeout=5)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "another" in err.value.details() and "one channel" in err.value.details()
    # On its own worker the sequence goes on.
    home_stub.ModelInfer(seq_request(uni.stem, [4], 77, end=True), timeout=5)
    home.close()
    away.close()


@pytest.mark.slow
def test_a_killed_worker_is_replaced_while_the_other_keeps_answering(uni):
    srv = ServerProcess("--model", str(uni), "--workers", "2")
    try:
        pids = set(next(r for r in srv.lines if r["msg"] == "serving")["pids"])
        chans = pinned(srv.target, pids)
        victim, survivor = chans
        answered: Counter[int] = Counter()
        failures: list[grpc.StatusCode] = []
        stop = threading.Event()

        def call_survivor() -> None:
            while not stop.is_set():
                try:
                    answered[parse(chans[survivor])] += 1
                except grpc.RpcError as exc:
                    failures.append(exc.code())

        caller = threading.Thread(target=call_survivor, daemon=True)
        caller.start()
        wait_for("calls on the survivor", lambda: answered[survivor] > 0)
        os.kill(victim, signal.SIGKILL)
        died = log_line(srv, "worker died; restarting", pid=victim)
        assert died["status"] == -signal.SIGKILL and died["restarts"] == 1
        replacement = log_line(srv, "worker serving", worker=died["worker"])["pid"]
        assert replacement not in pids and children(srv.proc.pid) == {survivor, replacement}
        at_replacement = answered[survivor]
        fresh = pinned(srv.target, {replacement})[replacement]
        assert parse(fresh) == replacement
        wait_for("more calls on the survivor", lambda: answered[survivor] > at_replacement)
        stop.set()
        caller.join(10)
        assert failures == []
        assert set(answered) == {survivor}
        # The victim's channel reconnects (to whichever worker the kernel picks).
        stub = pb_grpc.ParserStub(chans[victim])
        stub.Parse(pb.ParseRequest(text="what time is it"), timeout=10, wait_for_ready=True)
        assert srv.metric("rnnserve_worker_restarts_total") == 1
        for ch in (*chans.values(), fresh):
            ch.close()
    finally:
        code, _ = srv.stop()
    assert code == 0


@pytest.mark.slow
def test_sigterm_drains_every_worker_and_exits_0(uni):
    srv = ServerProcess("--model", str(uni), "--workers", "2", "--drain-seconds", "20")
    pids = set(next(r for r in srv.lines if r["msg"] == "serving")["pids"])
    chans = pinned(srv.target, pids)
    feeds: list[queue.Queue] = []
    answers = []
    for ch in chans.values():  # a stream open on each worker across the SIGTERM
        q: queue.Queue = queue.Queue()
        feeds.append(q)
        responses = pb_grpc.ParserStub(ch).ParseStream(iter(q.get, None), timeout=30)
        q.put(pb.ParseStreamRequest(text="turn on the"))
        next(responses)
        answers.append(responses)
    srv.proc.send_signal(signal.SIGTERM)
    log_line(srv, "draining", worker=0)
    log_line(srv, "draining", worker=1)
    for q, responses in zip(feeds, answers):  # each stream goes on while its worker drains
        q.put(pb.ParseStreamRequest(text="kitchen lights"))
        assert next(responses).intent
        q.put(None)
        assert list(responses) == []
        assert responses.code() == grpc.StatusCode.OK
    code, rest = srv.stop()
    assert code == 0
    stopped = [r.get("worker") for r in rest if r["msg"] == "stopped"]
    assert sorted(stopped, key=str) == [0, 1, None]  # each worker, then the parent
    assert not [pid for pid in pids if Path(f"/proc/{pid}").exists()]
    for ch in chans.values():
        ch.close()


# ---------------------------------------------------------------- CUDA: exact unless --cuda-tf32


@pytest.mark.parametrize(("argv", "tf32"), [([], "0"), (["--cuda-tf32"], "1")])
def test_cuda_tf32_flag_reaches_the_session_options(monkeypatch, uni, argv, tf32):
    real = ort.InferenceSession
    made: list[list] = []

    def session(path: str, options: ort.SessionOptions, providers: list) -> ort.InferenceSession:
        made.append(providers)
        return real(path, options, providers=[runtime.CPU])

    monkeypatch.setattr(runtime.ort, "get_available_providers", lambda: [runtime.CUDA, runtime.CPU])
    monkeypatch.setattr(runtime.ort, "InferenceSession", session)
    settings = parse_settings(["--model", str(uni), *argv], {})
    model = load_model(
        settings.model,
        name="uni",
        runtime=settings.runtime,
        batching=settings.batching,
        limits=settings.limits,
        executor=None,
        metrics=Metrics(),
    )
    assert made == [[(runtime.CUDA, {"use_tf32": tf32}), runtime.CPU]]
    assert model.runtime.tf32 is None  # the stand-in session runs on CPU


def test_cpu_sessions_get_no_cuda_options_and_say_no_tf32(uni):
    assert runtime.choose_providers("cpu", cuda_tf32=True) == [runtime.CPU]
    with RunningServer(settings_for(uni, device="cpu")) as srv, Client(srv.target) as client:
        assert client.info().cuda_tf32 is False
        with grpc.insecure_channel(srv.target) as ch:
            cfg = v2_grpc.GRPCInferenceServiceStub(ch).ModelConfig(
                v2.ModelConfigRequest(name="uni"), timeout=5
            )
        assert "cuda_tf32" not in cfg.config.parameters


@pytest.mark.gpu
@pytest.mark.skipif(
    runtime.CUDA not in ort.get_available_providers(), reason="needs the CUDA provider"
)
@pytest.mark.parametrize("tf32", [False, True])
def test_cuda_session_runs_tf32_only_when_asked(uni, tf32):
    rt = runtime.ModelRuntime(uni, device="cuda", cuda_tf32=tf32)
    assert rt.session.get_provider_options()[runtime.CUDA]["use_tf32"] == str(int(tf32))
    assert rt.tf32 is tf32
    settings = settings_for(uni, device="cuda", cuda_tf32=tf32)
    with RunningServer(settings) as srv, Client(srv.target) as client:
        assert client.info().cuda_tf32 is tf32
        with grpc.insecure_channel(srv.target) as ch:
            cfg = v2_grpc.GRPCInferenceServiceStub(ch).ModelConfig(
                v2.ModelConfigRequest(name="uni"), timeout=5
            )
        assert cfg.config.parameters["cuda_tf32"].string_value == str(tf32).lower()
