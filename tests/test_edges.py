"""Edges a careless or hostile caller reaches: huge texts, mixed and empty stream chunks,
answers too large to send, sequences fed bad requests, health Watch, odd start-up flags."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from client import Client, RnnServeError
from rnnserve.kserve import grpc_predict_v2_pb2 as v2
from rnnserve.kserve import grpc_predict_v2_pb2_grpc as v2_grpc

from .conftest import DEFAULT_ONNX
from .serving import ENV, ROOT, RunningServer, settings_for, small_model_file

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture(scope="module")
def uni(tmp_path_factory):
    return small_model_file(tmp_path_factory.mktemp("edges") / "uni.onnx", "gru")


@pytest.fixture(scope="module")
def default_server():
    with RunningServer(settings_for(DEFAULT_ONNX)) as srv:
        yield srv


# ---------------------------------------------------------------- health Watch


@pytest.mark.parametrize("with_auth", [False, True])
def test_health_watch_streams_serving_then_not_serving_on_drain(tmp_path, with_auth):
    extra = {}
    if with_auth:
        (tmp_path / "tokens").write_text("a-token\n")
        extra["auth_token_file"] = str(tmp_path / "tokens")

    async def watch(srv):
        async with grpc.aio.insecure_channel(srv.target) as ch:
            call = health_pb2_grpc.HealthStub(ch).Watch(
                health_pb2.HealthCheckRequest(service=""), timeout=20
            )
            first = await call.read()
            assert first.status == SERVING
            drain = asyncio.wrap_future(
                asyncio.run_coroutine_threadsafe(srv.app.drain(5), srv.loop)
            )
            second = await call.read()
            assert second.status == NOT_SERVING
            await drain

    srv = RunningServer(settings_for(DEFAULT_ONNX, **extra))
    with srv:
        asyncio.run(watch(srv))
        srv.app = None  # drained above


# ---------------------------------------------------------------- big and odd texts


def test_a_huge_text_is_refused_by_its_size_before_tokenizing(default_server):
    with Client(default_server.target, timeout=30) as c:
        with pytest.raises(RnnServeError) as err:
            c.parse("a " * 2_000_000)
        assert err.value.code == "INVALID_ARGUMENT"
        assert "characters" in err.value.message and "limit is 8192" in err.value.message
        with pytest.raises(RnnServeError) as err:  # under the character limit, over the tokens
            c.parse("a " * 4000)
        assert err.value.code == "INVALID_ARGUMENT"
        assert "513 tokens is over the limit of 512" in err.value.message  # the scan stopped
        assert c.parse("what time is it").intent.name == "HassGetCurrentTime"


# ---------------------------------------------------------------- streams


def test_a_punctuation_only_chunk_keeps_the_stream_open(uni):
    with RunningServer(settings_for(uni)) as srv, Client(srv.target, timeout=10) as c:
        answers = list(c.stream(["...", "turn on", "?", "the kitchen lights", "!"]))
    assert [len(a.tokens) for a in answers] == [0, 2, 0, 3, 0]
    assert [a.chunk_index for a in answers] == [0, 1, 2, 3, 4]
    assert answers[0].no_intent and not answers[0].top_intents
    assert answers[2].intent == answers[1].intent and answers[4].intent == answers[3].intent
    assert answers[4].total_steps == 5
    lights = answers[3].tokens[-1]  # char offsets count the punctuation chunks' text too
    assert "...turn on?the kitchen lights!"[lights.char_start : lights.char_end] == "lights"


def test_a_slot_spanning_text_and_token_id_chunks_is_whole(uni):
    """Slots that include a token-id chunk carry the tokens' words and no char offsets."""
    rng = np.random.default_rng(0)
    words = [
        "turn",
        "on",
        "the",
        "kitchen",
        "lights",
        "what",
        "time",
        "is",
        "it",
        "set",
        "fan",
        "to",
        "50",
        "percent",
    ]
    mixed = 0
    with RunningServer(settings_for(uni)) as srv, Client(srv.target, timeout=10) as c:
        for _ in range(40):
            text1 = " ".join(rng.choice(words, 3)) + " "
            ids = [int(i) for i in rng.integers(3, 20, 2)]
            text2 = " ".join(rng.choice(words, 2))
            answers = list(c.stream([text1, ids, text2]))
            full = text1 + text2
            tokens = [t for a in answers for t in a.tokens]
            for slot in answers[-1].slots:
                span = tokens[slot.token_start : slot.token_end]
                if all(t.char_start >= 0 for t in span):
                    assert slot.value == full[slot.char_start : slot.char_end]
                else:
                    mixed += 1
                    assert slot.char_start == slot.char_end == -1
                    assert slot.value == " ".join(t.text for t in span)
    assert mixed > 0  # the search met slots of both kinds


def test_a_stream_stops_at_its_total_token_limit(uni):
    settings = settings_for(uni, max_stream_tokens=10)
    with RunningServer(settings) as srv, Client(srv.target, timeout=10) as c:
        got = []
        with pytest.raises(RnnServeError) as err:
            for a in c.stream(["turn on the kitchen lights"] * 3):
                got.append(a)
        assert len(got) == 2
        assert err.value.code == "INVALID_ARGUMENT" and "limit is 10" in err.value.message


# ---------------------------------------------------------------- v2: answers and sequences


def _infer(model, ids, outputs=(), seq=None, start=False):
    arr = np.asarray(ids, np.int64)
    r = v2.ModelInferRequest(model_name=model)
    r.inputs.add(name="input_ids", datatype="INT64", shape=list(arr.shape))
    r.raw_input_contents.append(arr.tobytes())
    for o in outputs:
        r.outputs.add(name=o)
    if seq is not None:
        r.parameters["sequence_id"].int64_param = seq
        if start:
            r.parameters["sequence_start"].bool_param = True
    return r


def test_an_answer_over_the_message_limit_is_refused_before_the_run(default_server):
    with grpc.insecure_channel(default_server.target) as ch:
        stub = v2_grpc.GRPCInferenceServiceStub(ch)
        big = np.full((10, 512), 5)
        with pytest.raises(grpc.RpcError) as err:
            stub.ModelInfer(_infer("intent", big), timeout=30)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "fewer outputs" in err.value.details()
        tokens_before = default_server.metric('rnnserve_tokens_total{model="intent",version="1"}')
        small = stub.ModelInfer(_infer("intent", big, outputs=["intent_logits"]), timeout=30)
        assert [o.name for o in small.outputs] == ["intent_logits"]
    # the refused call never ran, and the metrics record the status the client got
    assert (
        default_server.metric('rnnserve_tokens_total{model="intent",version="1"}')
        == tokens_before + 5120
    )
    refused = 'rnnserve_requests_total{code="RESOURCE_EXHAUSTED",method="ModelInfer"}'
    assert default_server.metric(refused) >= 1


def test_a_bad_sequence_request_leaves_the_sequence_untouched(uni):
    with (
        RunningServer(settings_for(uni, max_sequences=1)) as srv,
        grpc.insecure_channel(srv.target) as ch,
    ):
        stub = v2_grpc.GRPCInferenceServiceStub(ch)
        with pytest.raises(grpc.RpcError) as err:  # a failed start creates no sequence
            stub.ModelInfer(_infer("uni", [[3, 4]], ["nope"], seq=12, start=True), timeout=5)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "unknown output 'nope'" in err.value.details()
        assert srv.metric("rnnserve_live_sequences") == 0
        first = stub.ModelInfer(_infer("uni", [[3, 4]], seq=12, start=True), timeout=5)
        with pytest.raises(grpc.RpcError) as err:  # a bad continuation does not advance it
            stub.ModelInfer(_infer("uni", [[5, 6]], ["nope"], seq=12), timeout=5)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        cont = stub.ModelInfer(_infer("uni", [[5, 6]], ["h_n"], seq=12), timeout=5)
        alone = stub.ModelInfer(_infer("uni", [[3, 4, 5, 6]], ["h_n"]), timeout=5)
        assert first.outputs and cont.raw_output_contents[0] == alone.raw_output_contents[0]


# ---------------------------------------------------------------- metrics


def test_no_created_series_in_the_metrics(default_server):
    with Client(default_server.target) as c:
        c.parse("what time is it")
    from prometheus_client import generate_latest

    assert default_server.app is not None
    text = generate_latest(default_server.app.metrics.registry).decode()
    assert "rnnserve_requests_total" in text and "_created" not in text


# ---------------------------------------------------------------- start-up


def _start(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "server", *args],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _problems(stderr: str) -> list[str]:
    """Lines that are not the server's JSON log records."""
    return [ln for ln in stderr.splitlines() if ln.strip() and not ln.startswith("{")]


@pytest.mark.parametrize(
    ("flag", "value", "needle"),
    [
        ("--drain-seconds", "nan", "drain-seconds must be a finite number"),
        ("--max-connection-age", "inf", "max-connection-age must be a finite number"),
        ("--max-message-bytes", "99999999999", "max-message-bytes must be at most 2147483647"),
        ("--sequence-idle-timeout", "inf", "sequence-idle-timeout must be a finite number"),
        ("--sequence-idle-timeout", "nan", "sequence-idle-timeout must be a finite number"),
        ("--max-text-chars", "0", "max-text-chars must be at least 1"),
    ],
)
def test_odd_flag_values_are_one_line_at_start_up(flag, value, needle):
    out = _start(flag, value, "--port", "0", "--metrics-port", "-1")
    assert out.returncode == 2
    assert _problems(out.stderr) == [f"error: {needle}"]


@pytest.mark.parametrize("which", ["--port", "--metrics-port"])
def test_a_busy_port_is_one_line_naming_it(which):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        other = "--metrics-port" if which == "--port" else "--port"
        out = _start(which, str(port), other, "0" if other == "--port" else "-1")
    assert out.returncode == 1, out.stderr
    problems = _problems(out.stderr)
    assert len(problems) == 1 and f"127.0.0.1:{port}" in problems[0], out.stderr
    assert "Traceback" not in out.stderr
