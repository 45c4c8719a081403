"""Dynamic batching (batched = unbatched) and v2 sequences, over real loopback gRPC."""

from __future__ import annotations

import asyncio
import time

import grpc
import numpy as np
import onnxruntime as ort
import pytest
from prometheus_client import generate_latest

from rnnserve.kserve import grpc_predict_v2_pb2 as v2
from rnnserve.kserve import grpc_predict_v2_pb2_grpc as v2_grpc
from rnnserve.v1 import rnnserve_pb2 as pb
from rnnserve.v1 import rnnserve_pb2_grpc as pb_grpc
from server.batcher import Batcher
from server.runtime import ModelRuntime

from .conftest import DEFAULT_ONNX
from .serving import RunningServer, settings_for, small_model_file

BATCHING = {"max_batch_size": 16, "max_batch_delay_us": 20000, "inference_threads": 1}


@pytest.fixture(scope="module")
def uni_lstm(tmp_path_factory):
    return small_model_file(tmp_path_factory.mktemp("m") / "uni.onnx", "lstm", layers=2)


@pytest.fixture(scope="module")
def bi_gru(tmp_path_factory):
    return small_model_file(tmp_path_factory.mktemp("m") / "bi.onnx", "gru", bi=True, layers=2)


def _arr(t: pb.Tensor) -> np.ndarray:
    return np.asarray(t.values, dtype=np.float32).reshape(list(t.shape))


def _alone(path, ids, h=None, c=None):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {"input_ids": np.asarray([ids], np.int64), "lengths": np.array([len(ids)])}
    if h is not None:
        feeds["h0"] = h
    if c is not None:
        feeds["c0"] = c
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, feeds)))


def _mean_requests_per_batch(srv) -> float:
    text = generate_latest(srv.app.metrics.registry).decode()
    vals = {}
    for line in text.splitlines():
        if line.startswith("rnnserve_batch_requests_sum") or line.startswith(
            "rnnserve_batch_requests_count"
        ):
            name, v = line.split()
            vals[name] = float(v)
    return vals["rnnserve_batch_requests_sum"] / max(1.0, vals["rnnserve_batch_requests_count"])


async def _concurrent_parses(target, requests):
    async with grpc.aio.insecure_channel(target) as ch:
        stub = pb_grpc.ParserStub(ch)
        return await asyncio.gather(*(stub.Parse(r, timeout=30) for r in requests))


@pytest.mark.parametrize("which", ["uni_lstm", "bi_gru"])
def test_batched_answers_equal_unbatched_under_concurrency(request, which):
    path = request.getfixturevalue(which)
    rng = np.random.default_rng(1)
    reqs, states = [], []
    for i in range(48):
        n = int(rng.integers(1, 40))
        ids = rng.integers(3, 20, n).tolist()
        r = pb.ParseRequest(token_ids=pb.TokenIds(ids=ids), return_steps=True, return_state=True)
        h = c = None
        if i % 3 == 0 and which == "uni_lstm":  # mixed carried states (unidirectional only)
            layers_dirs = 2
            h = np.tanh(rng.standard_normal((layers_dirs, 1, 12))).astype(np.float32)
            r.initial_state.h.CopyFrom(pb.Tensor(shape=list(h.shape), values=h.ravel().tolist()))
            if which == "uni_lstm":
                c = rng.standard_normal((layers_dirs, 1, 12)).astype(np.float32)
                r.initial_state.c.CopyFrom(
                    pb.Tensor(shape=list(c.shape), values=c.ravel().tolist())
                )
        reqs.append(r)
        states.append((ids, h, c))
    with RunningServer(settings_for(path, **BATCHING)) as srv:
        answers = asyncio.run(_concurrent_parses(srv.target, reqs))
        assert _mean_requests_per_batch(srv) > 2, "requests were not batched"
    for (ids, h, c), ans in zip(states, answers):
        want = _alone(path, ids, h, c)
        np.testing.assert_allclose(_arr(ans.steps.outputs), want["outputs"][0], atol=1e-5)
        np.testing.assert_allclose(_arr(ans.state.h), want["h_n"], atol=1e-5)
        if c is not None or which == "uni_lstm":
            np.testing.assert_allclose(_arr(ans.state.c), want["c_n"], atol=1e-5)
        probs = np.exp(want["intent_logits"][0] - want["intent_logits"][0].max())
        probs /= probs.sum()
        assert ans.intent.confidence == pytest.approx(float(probs.max()), abs=1e-5)


def test_batching_off_still_serves(bi_gru):
    with RunningServer(settings_for(bi_gru, max_batch_size=1)) as srv:
        reqs = [pb.ParseRequest(text="turn on the kitchen lights") for _ in range(8)]
        answers = asyncio.run(_concurrent_parses(srv.target, reqs))
        assert len({a.intent.confidence for a in answers}) == 1
        assert srv.metric("rnnserve_batch_rows_count") == 0  # no batcher ran them


def test_v2_rows_of_several_requests_are_batched_exactly():
    async def go(target, reqs):
        async with grpc.aio.insecure_channel(target) as ch:
            stub = v2_grpc.GRPCInferenceServiceStub(ch)
            return await asyncio.gather(*(stub.ModelInfer(r, timeout=30) for r in reqs))

    rng = np.random.default_rng(2)
    vocab = len(ModelRuntime(DEFAULT_ONNX).meta.vocab)
    reqs, arrays = [], []
    for _ in range(24):
        rows, t = int(rng.integers(1, 4)), int(rng.integers(2, 12))
        ids = rng.integers(3, vocab, (rows, t)).astype(np.int64)
        lengths = rng.integers(1, t + 1, rows).astype(np.int64)
        r = v2.ModelInferRequest(model_name="intent")
        r.inputs.add(name="input_ids", datatype="INT64", shape=list(ids.shape))
        r.inputs.add(name="lengths", datatype="INT64", shape=[rows])
        r.raw_input_contents[:] = [ids.tobytes(), lengths.tobytes()]
        reqs.append(r)
        arrays.append((ids, lengths))
    with RunningServer(settings_for(DEFAULT_ONNX, **BATCHING)) as srv:
        answers = asyncio.run(go(srv.target, reqs))
        assert _mean_requests_per_batch(srv) > 2
    sess = ort.InferenceSession(str(DEFAULT_ONNX), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    for (ids, lengths), ans in zip(arrays, answers):
        want = dict(zip(names, sess.run(None, {"input_ids": ids, "lengths": lengths})))
        for k, out in enumerate(ans.outputs):
            got = np.frombuffer(ans.raw_output_contents[k], np.float32).reshape(list(out.shape))
            np.testing.assert_allclose(got, want[out.name], atol=1e-5)


def test_a_failed_batch_fails_only_its_own_requests():
    """A real runtime fed ids that bypassed validation: only that batch's futures fail."""
    rt = ModelRuntime(DEFAULT_ONNX)

    async def go():
        batcher = Batcher(rt, executor=None, workers=1, max_rows=1, max_delay_s=0)
        batcher.start()
        ok = np.array([[24, 5, 7]], np.int64)
        bad = np.array([[10**9, 5, 7]], np.int64)  # out of the embedding table
        one = np.array([3], np.int64)
        return await asyncio.gather(
            batcher.submit(ok, one, None, None),
            batcher.submit(bad, one, None, None),
            batcher.submit(ok, one, None, None),
            return_exceptions=True,
        )

    first, second, third = asyncio.run(go())
    assert isinstance(first, dict) and isinstance(third, dict)
    assert isinstance(second, Exception)
    np.testing.assert_array_equal(first["h_n"], third["h_n"])


def test_a_lone_request_on_an_idle_server_runs_on_the_loop_and_equals_the_batched_answer():
    """After the loop waited for calls, a lone small request runs at once on its thread; after
    the loop was busy, or with a batching delay, or for a long input, it goes to a worker.
    "Busy" is the batcher's own measure: the thread's wall time minus its CPU time since the
    request before; a thread the machine preempts while it burns reads as idle, so the busy
    case is tried again until the loop's thread kept the CPU through it."""
    from concurrent.futures import ThreadPoolExecutor

    rt = ModelRuntime(DEFAULT_ONNX)
    one = np.array([3], np.int64)
    ids = np.array([[24, 5, 7]], np.int64)
    long_ids = np.full((1, 65), 24, np.int64)
    want = rt.run(ids, one, None, None)

    def burn(seconds: float) -> None:  # the loop's thread busy, as under load
        end = time.thread_time() + seconds
        while time.thread_time() < end:
            pass

    async def go(batcher: Batcher) -> list[tuple[bool, dict]]:
        batcher.start()
        seen = []

        async def submit(rows: np.ndarray) -> tuple[bool, dict]:
            before = batcher.inline_runs
            out = await batcher.submit(rows, np.array([rows.shape[1]], np.int64), None, None)
            return batcher.inline_runs > before, out

        await asyncio.sleep(0.01)  # idle: the next request runs inline
        seen.append(await submit(ids))
        for _ in range(50):  # busy since the request before: a worker runs the next one
            await asyncio.sleep(0.01)
            wall, cpu = time.perf_counter(), time.thread_time()
            first = await submit(ids)
            burn(0.0002)
            gap = (time.perf_counter() - wall) - (time.thread_time() - cpu)
            kept_cpu = not first[0] or gap < 200e-6  # only an inline run's window matters
            busy = await submit(ids)
            if kept_cpu:
                break
        assert kept_cpu, "the loop's thread was preempted in every try"
        seen += [first, busy]
        await asyncio.sleep(0.01)  # idle again, but a long input goes to a worker
        seen.append(await submit(long_ids))
        await asyncio.sleep(0.01)
        seen.append(await submit(ids))
        return seen

    with ThreadPoolExecutor(1) as ex:
        seen = asyncio.run(go(Batcher(rt, executor=ex, workers=1, max_rows=32, max_delay_s=0)))
        assert [inline for inline, _ in seen] == [True, True, False, False, True]
        delayed = Batcher(rt, executor=ex, workers=1, max_rows=32, max_delay_s=0.001)
        assert [inline for inline, _ in asyncio.run(go(delayed))] == [False] * 5
    for i, (_, out) in enumerate(seen):
        if i != 3:  # the long input
            for name, arr in want.items():
                np.testing.assert_array_equal(out[name], arr)


def test_an_inline_request_that_fails_fails_alone():
    from concurrent.futures import ThreadPoolExecutor

    rt = ModelRuntime(DEFAULT_ONNX)
    one = np.array([3], np.int64)

    async def go(batcher: Batcher):
        batcher.start()
        await asyncio.sleep(0.01)
        try:
            await batcher.submit(np.array([[10**9, 5, 7]], np.int64), one, None, None)
        except Exception as exc:  # out of the embedding table, past validation
            failed = exc
        await asyncio.sleep(0.01)
        ok = await batcher.submit(np.array([[24, 5, 7]], np.int64), one, None, None)
        return failed, ok, batcher.inline_runs

    with ThreadPoolExecutor(1) as ex:
        failed, ok, runs = asyncio.run(
            go(Batcher(rt, executor=ex, workers=1, max_rows=32, max_delay_s=0))
        )
    assert isinstance(failed, Exception) and runs == 2
    assert ok["intent_logits"].shape == (1, len(rt.meta.intents))


# ---------------------------------------------------------------- v2 sequences


def _seq_req(model, ids, seq_id, start=False, end=False, outputs=()):
    arr = np.asarray([ids], np.int64)
    r = v2.ModelInferRequest(model_name=model)
    r.inputs.add(name="input_ids", datatype="INT64", shape=list(arr.shape))
    r.raw_input_contents.append(arr.tobytes())
    r.parameters["sequence_id"].int64_param = seq_id
    if start:
        r.parameters["sequence_start"].bool_param = True
    if end:
        r.parameters["sequence_end"].bool_param = True
    for o in outputs:
        r.outputs.add(name=o)
    return r


def _out(resp, name):
    k = [o.name for o in resp.outputs].index(name)
    return np.frombuffer(resp.raw_output_contents[k], np.float32).reshape(
        list(resp.outputs[k].shape)
    )


def test_sequence_start_middle_end_equals_the_whole_utterance(uni_lstm):
    ids = [3, 9, 4, 12, 5, 7, 8, 10]
    whole = _alone(uni_lstm, ids)
    with RunningServer(settings_for(uni_lstm)) as srv, grpc.insecure_channel(srv.target) as ch:
        stub = v2_grpc.GRPCInferenceServiceStub(ch)
        a = stub.ModelInfer(_seq_req("uni", ids[:3], 41, start=True), timeout=5)
        b = stub.ModelInfer(_seq_req("uni", ids[3:6], 41), timeout=5)
        c = stub.ModelInfer(_seq_req("uni", ids[6:], 41, end=True), timeout=5)
        np.testing.assert_allclose(_out(c, "h_n"), whole["h_n"], atol=1e-5)
        np.testing.assert_allclose(_out(c, "c_n"), whole["c_n"], atol=1e-5)
        np.testing.assert_allclose(_out(c, "intent_logits"), whole["intent_logits"], atol=1e-5)
        steps = np.concatenate([_out(x, "outputs")[0] for x in (a, b, c)])
        np.testing.assert_allclose(steps, whole["outputs"][0], atol=1e-5)
        assert srv.metric("rnnserve_live_sequences") == 0
        with pytest.raises(grpc.RpcError) as err:  # ended: continuing it is an error
            stub.ModelInfer(_seq_req("uni", ids[:2], 41), timeout=5)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "not live" in err.value.details()
        cfg = stub.ModelConfig(v2.ModelConfigRequest(name="uni"), timeout=5).config
        assert cfg.WhichOneof("scheduling_choice") == "sequence_batching"


def test_interleaved_sequences_keep_their_own_state(uni_lstm):
    a_ids, b_ids = [3, 4, 5, 6], [9, 9, 8, 7]
    with RunningServer(settings_for(uni_lstm)) as srv, grpc.insecure_channel(srv.target) as ch:
        stub = v2_grpc.GRPCInferenceServiceStub(ch)
        stub.ModelInfer(_seq_req("uni", a_ids[:2], 1, start=True), timeout=5)
        stub.ModelInfer(_seq_req("uni", b_ids[:2], 2, start=True), timeout=5)
        ra = stub.ModelInfer(_seq_req("uni", a_ids[2:], 1, end=True), timeout=5)
        rb = stub.ModelInfer(_seq_req("uni", b_ids[2:], 2, end=True), timeout=5)
    np.testing.assert_allclose(_out(ra, "h_n"), _alone(uni_lstm, a_ids)["h_n"], atol=1e-5)
    np.testing.assert_allclose(_out(rb, "h_n"), _alone(uni_lstm, b_ids)["h_n"], atol=1e-5)


def test_stream_infer_drives_a_sequence(uni_lstm):
    ids = [3, 9, 4, 12, 5]
    with RunningServer(settings_for(uni_lstm)) as srv, grpc.insecure_channel(srv.target) as ch:
        stub = v2_grpc.GRPCInferenceServiceStub(ch)
        reqs = [_seq_req("uni", ids[:2], 5, start=True), _seq_req("uni", ids[2:], 5, end=True)]
        answers = list(stub.ModelStreamInfer(iter(reqs), timeout=5))
    assert not answers[1].error_message
    np.testing.assert_allclose(
        _out(answers[1].infer_response, "h_n"), _alone(uni_lstm, ids)["h_n"], atol=1e-5
    )


def test_idle_sequences_are_freed(uni_lstm):
    settings = settings_for(uni_lstm, sequence_idle_timeout=0.2)
    with RunningServer(settings) as srv, grpc.insecure_channel(srv.target) as ch:
        stub = v2_grpc.GRPCInferenceServiceStub(ch)
        stub.ModelInfer(_seq_req("uni", [3, 4], 77, start=True), timeout=5)
        assert srv.metric("rnnserve_live_sequences") == 1
        deadline = time.monotonic() + 10
        while srv.metric("rnnserve_live_sequences") and time.monotonic() < deadline:
            time.sleep(0.05)  # the reaper frees it after 0.2 s idle
        assert srv.metric("rnnserve_live_sequences") == 0
        with pytest.raises(grpc.RpcError) as err:
            stub.ModelInfer(_seq_req("uni", [5], 77), timeout=5)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_live_sequence_cap_answers_resource_exhausted(uni_lstm):
    with (
        RunningServer(settings_for(uni_lstm, max_sequences=2)) as srv,
        grpc.insecure_channel(srv.target) as ch,
    ):
        stub = v2_grpc.GRPCInferenceServiceStub(ch)
        stub.ModelInfer(_seq_req("uni", [3], 1, start=True), timeout=5)
        stub.ModelInfer(_seq_req("uni", [3], 2, start=True), timeout=5)
        with pytest.raises(grpc.RpcError) as err:
            stub.ModelInfer(_seq_req("uni", [3], 3, start=True), timeout=5)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        stub.ModelInfer(_seq_req("uni", [4], 1, end=True), timeout=5)
        assert stub.ModelInfer(_seq_req("uni", [3], 3, start=True), timeout=5).outputs


def test_bad_sequence_requests(uni_lstm):
    with RunningServer(settings_for(DEFAULT_ONNX)) as srv, grpc.insecure_channel(srv.target) as ch:
        stub = v2_grpc.GRPCInferenceServiceStub(ch)
        for start in (True, False):  # a sequence's middle on a bidirectional model: the same
            with pytest.raises(grpc.RpcError) as err:
                stub.ModelInfer(_seq_req("intent", [3], 1, start=start), timeout=5)
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "bidirectional" in err.value.details()
        cfg = stub.ModelConfig(v2.ModelConfigRequest(name="intent"), timeout=5).config
        # Rows are batched inside the server: Triton's rules forbid dynamic_batching with
        # max_batch_size 0, so the batcher's settings are parameters.
        assert cfg.WhichOneof("scheduling_choice") is None and cfg.max_batch_size == 0
        assert cfg.parameters["dynamic_batching.max_batch_size"].string_value == "32"
    with RunningServer(settings_for(uni_lstm)) as srv, grpc.insecure_channel(srv.target) as ch:
        stub = v2_grpc.GRPCInferenceServiceStub(ch)
        r = _seq_req("uni", [3], 0, start=True)
        with pytest.raises(grpc.RpcError) as err:
            stub.ModelInfer(r, timeout=5)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        r = _seq_req("uni", [3], 9, start=True)
        r.parameters["sequence_start"].string_param = "yes"
        with pytest.raises(grpc.RpcError) as err:
            stub.ModelInfer(r, timeout=5)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        r = v2.ModelInferRequest(model_name="uni")
        r.inputs.add(name="input_ids", datatype="INT64", shape=[2, 1])
        r.raw_input_contents.append(np.array([[3], [4]], np.int64).tobytes())
        r.parameters["sequence_id"].int64_param = 4
        r.parameters["sequence_start"].bool_param = True
        with pytest.raises(grpc.RpcError) as err:
            stub.ModelInfer(r, timeout=5)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "one row" in err.value.details()


def test_requests_with_and_without_a_home_context_share_batches_exactly():
    home = pb.HomeContext(
        areas=[pb.ContextEntry(name="Cozy Nook", id="cozy_nook")],
        entities=[
            pb.ContextEntry(name="Zorblat Lamp", id="light.zorblat", area="cozy_nook"),
            pb.ContextEntry(name="Clippy", id="vacuum.clippy"),
        ],
    )
    texts = [
        "turn on the zorblat lamp",
        "turn off the lights in the cozy nook",
        "stop clippy",
        "what time is it",
        "set the zorblat lamp to forty percent",
        "turn on the kitchen lights",
    ]
    reqs = [
        pb.ParseRequest(text=t, context=home if k % 2 == 0 else None, return_steps=True)
        for k in range(4)
        for t in texts
    ]
    with RunningServer(settings_for(DEFAULT_ONNX, **BATCHING)) as srv:
        batched = asyncio.run(_concurrent_parses(srv.target, reqs))
        assert _mean_requests_per_batch(srv) > 2, "requests were not batched"
    with RunningServer(settings_for(DEFAULT_ONNX, max_batch_size=1)) as srv:
        alone = [asyncio.run(_concurrent_parses(srv.target, [r]))[0] for r in reqs]
    with_context = [a for r, a in zip(reqs, alone) if r.HasField("context")]
    assert any(s.entry_id == "light.zorblat" for a in with_context for s in a.slots)
    for got, want in zip(batched, alone):
        assert got.intent.name == want.intent.name
        assert got.intent.confidence == pytest.approx(want.intent.confidence, abs=1e-5)
        assert [(s.name, s.value) for s in got.slots] == [(s.name, s.value) for s in want.slots]
        np.testing.assert_allclose(_arr(got.steps.outputs), _arr(want.steps.outputs), atol=1e-5)
