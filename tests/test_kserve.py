"""KServe v2 / Open Inference Protocol: tritonclient unchanged, typed contents, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import pytest

from rnnserve.kserve import grpc_predict_v2_pb2 as v2
from rnnserve.kserve import grpc_predict_v2_pb2_grpc as v2_grpc

from .conftest import DEFAULT_ONNX
from .serving import RunningServer, settings_for, small_model_file

PROBE = Path(__file__).with_name("v2_probe.py")


@pytest.fixture(scope="module")
def server():
    with RunningServer(settings_for(DEFAULT_ONNX)) as srv:
        yield srv


@pytest.fixture(scope="module")
def stub(server):
    with grpc.insecure_channel(server.target) as ch:
        yield v2_grpc.GRPCInferenceServiceStub(ch)


def _probe(url: str, model: str, runs: list[dict]) -> dict:
    job = json.dumps({"url": url, "model": model, "runs": runs})
    out = subprocess.run(
        [sys.executable, str(PROBE)], input=job, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _batch():
    ids = np.array([[24, 5, 7, 30, 2], [11, 9, 0, 0, 0]], dtype=np.int64)
    return ids, np.array([5, 2], dtype=np.int64)


def test_tritonclient_infer_equals_onnxruntime(server):
    ids, lengths = _batch()
    h0 = np.tanh(np.random.default_rng(0).standard_normal((2, 2, 128))).astype(np.float32)
    runs = [
        {
            "inputs": {
                "input_ids": {"data": ids.tolist(), "dtype": "int64", "datatype": "INT64"},
                "lengths": {"data": lengths.tolist(), "dtype": "int64", "datatype": "INT64"},
            }
        },
        {
            "inputs": {
                "input_ids": {"data": ids.tolist(), "dtype": "int64", "datatype": "INT64"},
                "lengths": {"data": lengths.tolist(), "dtype": "int64", "datatype": "INT64"},
                "h0": {"data": h0.tolist(), "dtype": "float32", "datatype": "FP32"},
            },
            "outputs": ["intent_logits", "h_n"],
        },
        {"inputs": {"input_ids": {"data": ids.tolist(), "dtype": "float32", "datatype": "FP32"}}},
        {
            "model": "missing",
            "inputs": {"input_ids": {"data": ids.tolist(), "dtype": "int64", "datatype": "INT64"}},
        },
    ]
    got = _probe(server.target, "intent", runs)
    assert got["live"] and got["ready"] and got["model_ready"]
    assert got["server"]["name"] == "rnnserve"
    sess = ort.InferenceSession(str(DEFAULT_ONNX), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    want = dict(zip(names, sess.run(None, {"input_ids": ids, "lengths": lengths})))
    assert sorted(got["runs"][0]) == sorted(names)
    for name in names:
        np.testing.assert_allclose(np.asarray(got["runs"][0][name]), want[name], atol=1e-6)
    want_h = dict(zip(names, sess.run(None, {"input_ids": ids, "lengths": lengths, "h0": h0})))
    assert sorted(got["runs"][1]) == ["h_n", "intent_logits"]
    np.testing.assert_allclose(np.asarray(got["runs"][1]["h_n"]), want_h["h_n"], atol=1e-6)
    assert got["runs"][2]["error"]["status"] == "StatusCode.INVALID_ARGUMENT"
    assert "must be INT64 or INT32" in got["runs"][2]["error"]["message"]
    assert got["runs"][3]["error"]["status"] == "StatusCode.NOT_FOUND"


def test_metadata_and_config_describe_the_real_tensors(server):
    got = _probe(server.target, "intent", [])
    md = got["metadata"]
    assert md["name"] == "intent" and md["platform"] == "onnxruntime_onnx"
    inputs = {t["name"]: t for t in md["inputs"]}
    assert inputs["input_ids"]["datatype"] == "INT64" and inputs["input_ids"]["shape"] == [
        "-1",
        "-1",
    ]
    assert inputs["h0"]["shape"] == ["2", "-1", "128"]
    outputs = {t["name"]: t for t in md["outputs"]}
    assert set(outputs) == {"outputs", "slot_logits", "intent_logits", "h_n"}
    assert outputs["slot_logits"]["shape"][-1] == "49"
    cfg = got["config"]["config"]
    assert cfg["name"] == "intent" and cfg["backend"] == "onnxruntime"
    cfg_inputs = {t["name"]: t for t in cfg["input"]}
    assert cfg_inputs["h0"]["optional"] and cfg_inputs["lengths"]["optional"]
    assert cfg_inputs["input_ids"]["data_type"] == "TYPE_INT64"
    assert cfg["parameters"]["cell"]["string_value"] == "gru"


def test_typed_contents_and_raw_contents_agree(stub):
    ids, lengths = _batch()
    typed = v2.ModelInferRequest(model_name="intent")
    t = typed.inputs.add(name="input_ids", datatype="INT64", shape=list(ids.shape))
    t.contents.int64_contents[:] = ids.ravel().tolist()
    t = typed.inputs.add(name="lengths", datatype="INT32", shape=[2])
    t.contents.int_contents[:] = lengths.tolist()
    raw = v2.ModelInferRequest(model_name="intent")
    raw.inputs.add(name="input_ids", datatype="INT64", shape=list(ids.shape))
    raw.inputs.add(name="lengths", datatype="INT64", shape=[2])
    raw.raw_input_contents[:] = [ids.tobytes(), lengths.tobytes()]
    a, b = stub.ModelInfer(typed, timeout=5), stub.ModelInfer(raw, timeout=5)
    assert [o.name for o in a.outputs] == [o.name for o in b.outputs]
    assert list(a.raw_output_contents) == list(b.raw_output_contents)
    # Without lengths every row is taken as full length.
    full = v2.ModelInferRequest(model_name="intent")
    full.inputs.add(name="input_ids", datatype="INT64", shape=[1, 3])
    full.raw_input_contents[:] = [np.array([[24, 5, 7]], dtype=np.int64).tobytes()]
    resp = stub.ModelInfer(full, timeout=5)
    assert list(resp.outputs[0].shape) == [1, 3, 256]


def _req(**inputs):
    req = v2.ModelInferRequest(model_name="intent")
    for name, (datatype, arr) in inputs.items():
        a = np.asarray(arr)
        req.inputs.add(name=name, datatype=datatype, shape=list(a.shape))
        req.raw_input_contents.append(a.tobytes())
    return req


BAD = [
    ("unknown input", _req(tokens=("INT64", np.ones((1, 2), np.int64))), "unknown input"),
    ("no input_ids", _req(lengths=("INT64", np.ones(1, np.int64))), "'input_ids' is required"),
    ("3-d ids", _req(input_ids=("INT64", np.ones((1, 2, 2), np.int64))), "must have 2"),
    ("empty ids", _req(input_ids=("INT64", np.ones((1, 0), np.int64))), "empty"),
    (
        "id over vocab",
        _req(input_ids=("INT64", np.full((1, 2), 10**6, np.int64))),
        "outside the vocabulary",
    ),
    (
        "length over time",
        _req(input_ids=("INT64", np.ones((1, 2), np.int64)), lengths=("INT64", np.array([3]))),
        "between 1 and 2",
    ),
    (
        "length zero",
        _req(input_ids=("INT64", np.ones((2, 2), np.int64)), lengths=("INT64", np.array([2, 0]))),
        "between 1 and 2",
    ),
    (
        "h0 shape",
        _req(
            input_ids=("INT64", np.ones((1, 2), np.int64)),
            h0=("FP32", np.zeros((1, 1, 128), np.float32)),
        ),
        "must have shape",
    ),
    (
        "h0 nan",
        _req(
            input_ids=("INT64", np.ones((1, 2), np.int64)),
            h0=("FP32", np.full((2, 1, 128), np.nan, np.float32)),
        ),
        "NaN",
    ),
    (
        "h0 int",
        _req(
            input_ids=("INT64", np.ones((1, 2), np.int64)),
            h0=("INT64", np.zeros((2, 1, 128), np.int64)),
        ),
        "must be FP32",
    ),
    ("too many tokens", _req(input_ids=("INT64", np.ones((1, 600), np.int64))), "over the limit"),
]


def _typed(**contents):
    req = v2.ModelInferRequest(model_name="intent")
    t = req.inputs.add(name="input_ids", datatype="INT64", shape=[1, 2])
    for field, values in contents.items():
        getattr(t.contents, field).extend(values)
    return req


both = _req(input_ids=("INT64", np.ones((1, 2), np.int64)))
both.inputs[0].contents.int64_contents.extend([1, 1])
classified = _req(input_ids=("INT64", np.ones((1, 2), np.int64)))
classified.outputs.add(name="intent_logits").parameters["classification"].int64_param = 3
BAD += [  # fields that would otherwise be silently ignored
    ("raw and typed contents", both, "has contents as well as raw_input_contents"),
    (
        "two kinds of contents",
        _typed(int64_contents=[1, 1], fp32_contents=[1.0, 1.0]),
        "its values go in int64_contents alone, not int64_contents and fp32_contents",
    ),
    ("contents of another kind", _typed(int_contents=[1, 1]), "not int_contents"),
    ("classification", classified, "classification is not supported"),
]


@pytest.mark.parametrize(("case", "req", "needle"), BAD, ids=[b[0] for b in BAD])
def test_bad_v2_requests_are_invalid_argument(stub, case, req, needle):
    with pytest.raises(grpc.RpcError) as err:
        stub.ModelInfer(req, timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, case
    assert needle in err.value.details()
    ok = stub.ModelInfer(_req(input_ids=("INT64", np.ones((1, 2), np.int64))), timeout=5)
    assert ok.outputs


def test_malformed_tensors_are_invalid_argument(stub):
    req = _req(input_ids=("INT64", np.ones((1, 2), np.int64)))
    req.raw_input_contents[0] = b"\x00" * 5
    with pytest.raises(grpc.RpcError) as err:
        stub.ModelInfer(req, timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "raw bytes" in err.value.details()
    huge = v2.ModelInferRequest(model_name="intent")
    huge.inputs.add(name="input_ids", datatype="INT64", shape=[2**40, 2**40])
    with pytest.raises(grpc.RpcError) as err:
        stub.ModelInfer(huge, timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    neg = v2.ModelInferRequest(model_name="intent")
    neg.inputs.add(name="input_ids", datatype="INT64", shape=[-1, 2])
    with pytest.raises(grpc.RpcError) as err:
        stub.ModelInfer(neg, timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    out = _req(input_ids=("INT64", np.ones((1, 2), np.int64)))
    out.outputs.add(name="logits")
    with pytest.raises(grpc.RpcError) as err:
        stub.ModelInfer(out, timeout=5)
    assert (
        err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        and "unknown output" in err.value.details()
    )


def test_unknown_model_and_version_are_not_found(stub):
    with pytest.raises(grpc.RpcError) as err:
        stub.ModelMetadata(v2.ModelMetadataRequest(name="nope"), timeout=5)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as err:
        stub.ModelReady(v2.ModelReadyRequest(name="intent", version="7"), timeout=5)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert stub.ModelReady(v2.ModelReadyRequest(name="intent", version="1"), timeout=5).ready


def test_stream_infer_answers_each_request_in_order(stub):
    good = _req(input_ids=("INT64", np.array([[24, 5]], np.int64)))
    bad = _req(input_ids=("INT64", np.array([[-3, 5]], np.int64)))
    answers = list(stub.ModelStreamInfer(iter([good, bad, good]), timeout=5))
    assert len(answers) == 3
    assert answers[0].infer_response.outputs and answers[2].infer_response.outputs
    assert answers[1].error_message.startswith("INVALID_ARGUMENT:")
    assert (
        answers[0].infer_response.raw_output_contents
        == answers[2].infer_response.raw_output_contents
    )


def test_lstm_model_takes_c0_through_v2(tmp_path):
    path = small_model_file(tmp_path / "lstm.onnx", "lstm", layers=2)
    with RunningServer(settings_for(path)) as srv, grpc.insecure_channel(srv.target) as ch:
        stub = v2_grpc.GRPCInferenceServiceStub(ch)
        ids = np.array([[3, 4, 5]], np.int64)
        c0 = np.full((2, 1, 12), 0.5, np.float32)
        req = _req(
            input_ids=("INT64", ids), h0=("FP32", np.zeros((2, 1, 12), np.float32)), c0=("FP32", c0)
        )
        req.model_name = "lstm"
        resp = stub.ModelInfer(req, timeout=5)
        names = [o.name for o in resp.outputs]
        assert names == ["outputs", "slot_logits", "intent_logits", "h_n", "c_n"]
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        want = sess.run(["c_n"], {"input_ids": ids, "lengths": np.array([3]), "c0": c0})[0]
        got = np.frombuffer(resp.raw_output_contents[4], np.float32).reshape(want.shape)
        np.testing.assert_allclose(got, want, atol=1e-6)
