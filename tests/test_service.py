"""The gRPC service over a real loopback channel: typed API, streams, state, health, errors."""

from __future__ import annotations

import re

import grpc
import numpy as np
import onnxruntime as ort
import pytest

from client import Client, RnnServeError
from modelspec.meta import ModelMetadata
from modelspec.names import METADATA_KEY
from modelspec.tags import allowed_transitions, best_tags, softmax
from rnnserve.v1 import rnnserve_pb2 as pb

from .conftest import DEFAULT_ONNX
from .serving import RunningServer, settings_for, small_model_file

CELLS = [("rnn", "tanh"), ("rnn", "relu"), ("lstm", "tanh"), ("gru", "tanh")]


@pytest.fixture(scope="module")
def default_server():
    with RunningServer(settings_for(DEFAULT_ONNX)) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(default_server):
    with Client(default_server.target, timeout=10) as c:
        yield c


@pytest.fixture(scope="module")
def small_models(tmp_path_factory):
    """Small exported models: every cell, uni and bidirectional, 1 and 2 layers."""
    root = tmp_path_factory.mktemp("models")
    out = {}
    for cell, nl in CELLS:
        for bi in (False, True):
            for layers in (1, 2):
                key = (cell, nl, bi, layers)
                out[key] = small_model_file(
                    root / f"{cell}-{nl}-{bi}-{layers}.onnx", cell, nl, bi, layers
                )
    return out


def _onnx(path):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    meta = ModelMetadata.from_json(sess.get_modelmeta().custom_metadata_map[METADATA_KEY])
    return sess, meta


def _arr(t: pb.Tensor) -> np.ndarray:
    return np.asarray(t.values, dtype=np.float32).reshape(list(t.shape))


# ---------------------------------------------------------------- the default model


def test_what_time_is_it(client):
    r = client.parse("what time is it?")
    assert r.intent.name == "HassGetCurrentTime"
    assert r.intent.confidence > 0.5
    assert [t.text for t in r.tokens] == ["what", "time", "is", "it"]
    assert r.model == "intent"


def test_parse_equals_a_direct_onnxruntime_run(client):
    sess, meta = _onnx(DEFAULT_ONNX)
    text = "Set the Bedroom temperature to 21 degrees"
    r = client.parse(text, steps=True, state=True, top_k=5)
    tok = meta.make_tokenizer()
    ids = np.array([tok.ids(tok.tokenize(text))], dtype=np.int64)
    outputs, slot_logits, intent_logits, h_n = sess.run(
        None, {"input_ids": ids, "lengths": np.array([ids.shape[1]])}
    )
    assert [t.id for t in r.tokens] == ids[0].tolist()
    probs = softmax(intent_logits[0])
    order = np.argsort(-probs)[:5]
    assert [i.name for i in r.top_intents] == [meta.intents[i] for i in order]
    np.testing.assert_allclose([i.confidence for i in r.top_intents], probs[order], rtol=1e-5)
    np.testing.assert_allclose(_arr(r.steps.outputs), outputs[0], atol=1e-6)
    np.testing.assert_allclose(_arr(r.steps.slot_scores), softmax(slot_logits[0]), atol=1e-6)
    start, trans = allowed_transitions(meta.slots)
    logp = np.log(softmax(slot_logits[0]))
    assert list(r.steps.tags) == [meta.slots[i] for i in best_tags(logp, start, trans)]
    np.testing.assert_allclose(_arr(r.state.h), h_n, atol=1e-6)
    slots = {(s.name, s.value) for s in r.slots}
    assert ("area", "Bedroom") in slots and ("temperature", "21") in slots
    area = next(s for s in r.slots if s.name == "area")
    assert text[area.char_start : area.char_end] == "Bedroom"


def test_token_ids_input_gives_the_same_answer(client):
    by_text = client.parse("turn on the lights in the kitchen")
    by_ids = client.parse_tokens([t.id for t in by_text.tokens])
    assert by_ids.intent.name == by_text.intent.name
    assert by_ids.intent.confidence == pytest.approx(by_text.intent.confidence, rel=1e-6)
    assert [(s.name, s.value) for s in by_ids.slots] == [(s.name, s.value) for s in by_text.slots]
    assert all(t.char_start == -1 for t in by_ids.tokens)


def test_model_info_describes_the_model(client):
    info = client.info()
    _, meta = _onnx(DEFAULT_ONNX)
    assert (info.cell, info.num_directions, info.hidden_size) == ("gru", 2, 128)
    assert list(info.intents) == meta.intents and list(info.slot_tags) == meta.slots
    assert info.vocab_size == len(meta.vocab) and not info.streaming
    assert info.parity_max_abs_diff == pytest.approx(meta.parity["max_abs_diff"])
    assert [i.name for i in info.inputs] == ["input_ids", "lengths", "h0", "context"]
    assert info.inputs[2].optional and list(info.inputs[2].shape) == ["2", "batch", "128"]
    assert info.inputs[3].optional and list(info.inputs[3].shape) == ["batch", "time", "6"]


def test_bidirectional_model_refuses_to_stream(client):
    with pytest.raises(RnnServeError) as err:
        list(client.stream(["turn on", " the lights"]))
    assert err.value.code == "FAILED_PRECONDITION"
    assert "bidirectional" in err.value.message


# ---------------------------------------------------------------- validation


def _bad_requests():
    zero = pb.State(h=pb.Tensor(shape=[2, 1, 128], values=[0.0] * 256))
    return [
        ("empty text", pb.ParseRequest(text=""), "INVALID_ARGUMENT", "empty"),
        ("punctuation only", pb.ParseRequest(text="?!"), "INVALID_ARGUMENT", "no words"),
        ("no input", pb.ParseRequest(), "INVALID_ARGUMENT", "text or token_ids"),
        ("empty ids", pb.ParseRequest(token_ids=pb.TokenIds(ids=[])), "INVALID_ARGUMENT", "empty"),
        (
            "id over vocab",
            pb.ParseRequest(token_ids=pb.TokenIds(ids=[5, 999999])),
            "INVALID_ARGUMENT",
            "outside the vocabulary",
        ),
        (
            "negative id",
            pb.ParseRequest(token_ids=pb.TokenIds(ids=[-1])),
            "INVALID_ARGUMENT",
            "outside the vocabulary",
        ),
        ("too long", pb.ParseRequest(text="lamp " * 600), "INVALID_ARGUMENT", "over the limit"),
        (
            "state on a bidirectional model",
            pb.ParseRequest(text="hi there", initial_state=zero),
            "FAILED_PRECONDITION",
            "bidirectional",
        ),
        ("unknown model", pb.ParseRequest(model="nope", text="hi"), "NOT_FOUND", "nope"),
    ]


@pytest.mark.parametrize(
    ("case", "request_", "code", "needle"), _bad_requests(), ids=[c[0] for c in _bad_requests()]
)
def test_bad_input_gets_its_status_and_the_server_keeps_serving(
    client, case, request_, code, needle
):
    with pytest.raises(grpc.RpcError) as err:
        client.stub.Parse(request_, timeout=5)
    assert err.value.code().name == code, case
    assert needle in err.value.details()
    assert "Traceback" not in err.value.details()
    assert client.parse("what time is it").intent.name == "HassGetCurrentTime"


def _state(h=None, c=None, shape=(1, 1, 12)):
    def tensor(v):
        n = int(np.prod(shape))
        return pb.Tensor(shape=list(shape), values=v if isinstance(v, list) else [v] * n)

    return pb.State(h=tensor(h) if h is not None else None, c=tensor(c) if c is not None else None)


BAD_STATES = [  # (case, cell, nonlinearity, state, needle)
    ("state shape", "gru", "tanh", _state(0.0, shape=(1, 1, 5)), "must have shape"),
    ("state values", "gru", "tanh", _state([0.0] * 3), "needs 12 values"),
    ("nan state", "gru", "tanh", _state([float("nan")] + [0.0] * 11), "NaN"),
    ("huge state", "gru", "tanh", _state(3e38), "outside [-1, 1]"),
    ("state of 10", "rnn", "tanh", _state(10.0), "outside [-1, 1]"),
    ("negative relu state", "rnn", "relu", _state(-0.5), "outside [0, 10000]"),
    ("lstm h of 10", "lstm", "tanh", _state(10.0, 0.0), "outside [-1, 1]"),
    ("lstm c of 1e30", "lstm", "tanh", _state(0.0, 1e30), "outside [-10000, 10000]"),
    ("c for a GRU", "gru", "tanh", _state(0.0, 0.0), "only for LSTM"),
    ("lstm h without c", "lstm", "tanh", _state(0.0), "both h and c"),
]


@pytest.mark.parametrize(
    ("case", "cell", "nl", "state", "needle"), BAD_STATES, ids=[b[0] for b in BAD_STATES]
)
def test_a_state_outside_what_the_cell_produces_is_refused(
    small_models, case, cell, nl, state, needle
):
    """A state the cell could never have produced gives garbage (or NaN) at confidence 1.0."""
    path = small_models[(cell, nl, False, 1)]
    with RunningServer(settings_for(path)) as srv, Client(srv.target) as c:
        with pytest.raises(RnnServeError) as err:
            c.parse("turn on the lamp", initial_state=state)
        assert err.value.code == "INVALID_ARGUMENT", case
        assert needle in err.value.message
        ok = c.parse("turn on the lamp", initial_state=_state(0.5, 0.5 if cell == "lstm" else None))
        assert all(np.isfinite(i.confidence) for i in ok.top_intents)


@pytest.mark.parametrize("top_k", [-1, 2**32, 1.5, "3"])
def test_a_count_the_wire_cannot_carry_is_named_before_any_call(client, top_k):
    message = f"top_k must be a whole number from 0 to 4294967295, not {top_k!r}"
    with pytest.raises(ValueError, match=re.escape(message)):
        client.parse("what time is it", top_k=top_k)
    with pytest.raises(ValueError, match=re.escape(message)):
        list(client.stream(["turn on"], top_k=top_k))
    with pytest.raises(ValueError, match=re.escape(message.replace("top_k", "beam_size"))):
        client.generate("lamp", beam_size=top_k)
    assert client.parse("what time is it", top_k=np.int64(2)).top_intents[1].name


@pytest.mark.parametrize(
    ("method", "wire"),
    [
        ("/rnnserve.v1.Parser/Parse", b"\x12\x02\xff\xfe"),  # text: not UTF-8
        ("/rnnserve.v1.Parser/Parse", b"\xff\xff\xff"),  # not protobuf at all
        ("/rnnserve.v1.Parser/ModelInfo", b"\x0a\x05intent"),  # a field cut short
        ("/inference.GRPCInferenceService/ModelInfer", b"\xff\xff\xff"),
        ("/grpc.health.v1.Health/Check", b"\x0a\x01\xff"),
    ],
)
def test_request_bytes_that_do_not_parse_are_invalid_argument(default_server, method, wire):
    with grpc.insecure_channel(default_server.target) as channel:
        call = channel.unary_unary(method, request_serializer=bytes, response_deserializer=bytes)
        with pytest.raises(grpc.RpcError) as err:
            call(wire, timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        name = method.rsplit("/", 1)[1]
        assert err.value.details() == f"the request is not a valid message for {name}"
        stream = channel.stream_stream(
            "/rnnserve.v1.Parser/ParseStream", request_serializer=bytes, response_deserializer=bytes
        )
        with pytest.raises(grpc.RpcError) as err:
            list(stream(iter([wire])))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert err.value.details() == "the request is not a valid message for ParseStream"
    with Client(default_server.target) as c:
        assert c.parse("what time is it").intent.name == "HassGetCurrentTime"


def test_generate_on_a_server_without_an_encoder_decoder_says_none_is_served(client):
    for model, what in (
        ("", "the request names no model"),
        ("g2p", "unknown generation model 'g2p'"),
    ):
        with pytest.raises(RnnServeError) as err:
            client.generate("lamp", model=model)
        assert err.value.code == "NOT_FOUND"
        assert err.value.message == f"{what} (generation models served: none)"


def test_a_long_name_in_a_refusal_is_cut_so_the_status_reaches_the_caller(client):
    for name in ("m" * 10_000, "é" * 3_000):  # over gRPC's 8 KiB of headers, percent-encoded
        with pytest.raises(RnnServeError) as err:
            client.parse("what time is it", model=name)
        assert err.value.code == "NOT_FOUND"
        message = err.value.message
        assert message.startswith(f"unknown model '{name[:100]}") and message.endswith("…")
        assert len(message) == 500
    with pytest.raises(RnnServeError) as err:
        client.parse("what time is it", version="9" * 10_000)
    assert err.value.code == "NOT_FOUND" and err.value.message.startswith("model 'intent' has no")


def test_unknown_model_info_is_not_found(client):
    with pytest.raises(RnnServeError) as err:
        client.info("other")
    assert err.value.code == "NOT_FOUND"


# ---------------------------------------------------------------- every cell type


@pytest.mark.parametrize(
    "key",
    [(c, n, b, k) for c, n in CELLS for b in (False, True) for k in (1, 2)],
    ids=lambda k: "-".join(map(str, k)),
)
def test_steps_and_state_have_the_right_shapes(small_models, key):
    cell, _, bi, layers = key
    with RunningServer(settings_for(small_models[key])) as srv, Client(srv.target) as c:
        r = c.parse("turn on the kitchen lights", steps=True, state=True)
        d = 2 if bi else 1
        assert list(r.steps.outputs.shape) == [5, d * 12]
        assert list(r.steps.slot_scores.shape) == [5, 5]
        assert list(r.state.h.shape) == [layers * d, 1, 12]
        assert r.state.HasField("c") == (cell == "lstm")
        if cell == "lstm":
            assert list(r.state.c.shape) == [layers * d, 1, 12]
        sess, _ = _onnx(small_models[key])
        ids = np.array([[t.id for t in r.tokens]], dtype=np.int64)
        want = sess.run(None, {"input_ids": ids, "lengths": np.array([5])})
        np.testing.assert_allclose(_arr(r.steps.outputs), want[0][0], atol=1e-6)
        np.testing.assert_allclose(_arr(r.state.h), want[3], atol=1e-6)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_carried_state_equals_one_call_on_the_whole_sequence(small_models, cell):
    path = small_models[(cell, "tanh", False, 2)]
    with RunningServer(settings_for(path)) as srv, Client(srv.target) as c:
        whole = c.parse("turn on the kitchen lights what time is it", state=True, steps=True)
        first = c.parse("turn on the kitchen lights", state=True, steps=True)
        second = c.parse("what time is it", initial_state=first.state, state=True, steps=True)
        np.testing.assert_allclose(_arr(second.state.h), _arr(whole.state.h), atol=1e-6)
        if cell == "lstm":
            np.testing.assert_allclose(_arr(second.state.c), _arr(whole.state.c), atol=1e-6)
        assert second.intent.name == whole.intent.name
        assert second.intent.confidence == pytest.approx(whole.intent.confidence, abs=1e-6)
        joined = np.concatenate([_arr(first.steps.outputs), _arr(second.steps.outputs)])
        np.testing.assert_allclose(joined, _arr(whole.steps.outputs), atol=1e-6)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_stream_equals_the_unary_answer(small_models, cell):
    path = small_models[(cell, "tanh", False, 1)]
    with RunningServer(settings_for(path)) as srv, Client(srv.target) as c:
        text = "turn on the kitchen lights what time is it"
        whole = c.parse(text, state=True, steps=True)
        chunks = ["turn on the ", "kitchen lights ", "what time is it"]
        answers = list(c.stream(chunks, state=True, steps=True))
        assert [a.chunk_index for a in answers] == [0, 1, 2]
        assert [a.total_steps for a in answers] == [3, 5, 9]
        last = answers[-1]
        assert last.intent.name == whole.intent.name
        assert last.intent.confidence == pytest.approx(whole.intent.confidence, abs=1e-6)
        np.testing.assert_allclose(_arr(last.state.h), _arr(whole.state.h), atol=1e-6)
        tags = [t for a in answers for t in a.steps.tags]
        assert tags == list(whole.steps.tags)
        assert [(s.name, s.token_start, s.token_end) for s in last.slots] == [
            (s.name, s.token_start, s.token_end) for s in whole.slots
        ]
        toks = [t for a in answers for t in a.tokens]
        assert [(t.char_start, t.char_end) for t in toks] == [
            (t.char_start, t.char_end) for t in whole.tokens
        ]
        ids = [[t.id for t in a.tokens] for a in answers]
        by_ids = list(c.stream(ids, state=True))
        np.testing.assert_allclose(_arr(by_ids[-1].state.h), _arr(whole.state.h), atol=1e-6)


def test_a_bad_chunk_ends_the_stream_with_its_status(small_models):
    path = small_models[("gru", "tanh", False, 1)]
    with RunningServer(settings_for(path)) as srv, Client(srv.target) as c:
        got = []
        with pytest.raises(RnnServeError) as err:
            for a in c.stream(["turn on", [10**6]]):
                got.append(a)
        assert len(got) == 1 and err.value.code == "INVALID_ARGUMENT"
        assert c.parse("what time is it").tokens


# ---------------------------------------------------------------- lifecycle


def test_health_is_serving_only_after_warmup():
    settings = settings_for(DEFAULT_ONNX, warmup_runs=2)
    with RunningServer(settings, warm=False) as srv, Client(srv.target) as c:
        assert c.health() == "NOT_SERVING"
        assert c.health("rnnserve.v1.Parser") == "NOT_SERVING"
        with pytest.raises(RnnServeError) as err:
            c.parse("what time is it")
        assert err.value.code == "UNAVAILABLE"
        assert srv.app is not None
        srv.call(srv.app.warmup())
        assert c.health() == "SERVING"
        assert c.health("inference.GRPCInferenceService") == "SERVING"
        assert c.parse("what time is it").intent.name == "HassGetCurrentTime"


def test_reflection_lists_the_services(default_server):
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    with grpc.insecure_channel(default_server.target) as ch:
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        req = reflection_pb2.ServerReflectionRequest(list_services="")
        (resp,) = list(stub.ServerReflectionInfo(iter([req]), timeout=5))
    names = {s.name for s in resp.list_services_response.service}
    assert {
        "rnnserve.v1.Parser",
        "inference.GRPCInferenceService",
        "grpc.health.v1.Health",
    } <= names


def test_metrics_count_requests_by_status_and_tokens(default_server, client):
    from prometheus_client import generate_latest

    with pytest.raises(RnnServeError):
        client.parse("")
    client.parse("what time is it")
    assert default_server.app is not None
    text = generate_latest(default_server.app.metrics.registry).decode()
    assert 'rnnserve_requests_total{code="INVALID_ARGUMENT",method="Parse"}' in text
    assert 'rnnserve_requests_total{code="OK",method="Parse"}' in text
    assert 'rnnserve_request_seconds_bucket{le="0.005",method="Parse"}' in text
    tokens = [line for line in text.splitlines() if line.startswith("rnnserve_tokens_total")]
    assert tokens and float(tokens[0].split()[-1]) >= 4


# ---------------------------------------------------------------- out of scope


def _with_threshold(src, dst, threshold, score=None):
    import json as _json

    import onnx

    from export.onnx_export import embed_metadata

    proto = onnx.load(str(src))
    blob = _json.loads(proto.metadata_props[0].value)
    blob["calibration"] = {"threshold": threshold, "method": "test"}
    if score is not None:
        blob["calibration"]["score"] = score
    onnx.save(proto, str(dst))
    embed_metadata(dst, METADATA_KEY, _json.dumps(blob))
    return dst


def test_below_the_calibrated_threshold_the_answer_is_no_intent(small_models, tmp_path):
    strict = _with_threshold(small_models[("gru", "tanh", True, 1)], tmp_path / "s.onnx", 0.999)
    with RunningServer(settings_for(strict)) as srv, Client(srv.target) as c:
        r = c.parse("turn on the kitchen lights", top_k=3)
        assert r.no_intent and r.intent.name == ""
        assert r.no_intent_threshold == pytest.approx(0.999)
        assert r.no_intent_score == "max_softmax"  # a calibration naming no score
        assert r.in_scope_score == pytest.approx(r.top_intents[0].confidence)
        assert len(r.top_intents) == 3 and r.top_intents[0].name  # candidates still listed
        assert r.intent.confidence == pytest.approx(r.top_intents[0].confidence)
        assert c.info().no_intent_threshold == pytest.approx(0.999)
    lenient = _with_threshold(small_models[("gru", "tanh", True, 1)], tmp_path / "l.onnx", 0.0)
    with RunningServer(settings_for(lenient)) as srv, Client(srv.target) as c:
        r = c.parse("turn on the kitchen lights")
        assert not r.no_intent and r.intent.name == r.top_intents[0].name


@pytest.mark.parametrize("score", ["max_logit", "energy"])
def test_the_threshold_applies_to_the_score_the_calibration_names(small_models, tmp_path, score):
    src = small_models[("gru", "tanh", True, 1)]
    sess, meta = _onnx(src)
    text = "turn on the kitchen lights"
    tok = meta.make_tokenizer()
    ids = np.array([tok.ids(tok.tokenize(text))], dtype=np.int64)
    _, _, logits, _ = sess.run(None, {"input_ids": ids, "lengths": np.array([ids.shape[1]])})
    row = logits[0].astype(np.float64)
    top = row.max()
    expected = top if score == "max_logit" else top + np.log(np.exp(row - top).sum())
    for threshold, rejected in ((expected + 1e-3, True), (expected - 1e-3, False)):
        path = _with_threshold(src, tmp_path / f"{score}-{rejected}.onnx", threshold, score)
        with RunningServer(settings_for(path)) as srv, Client(srv.target) as c:
            r = c.parse(text)
            info = c.info()
        assert r.no_intent is rejected and (r.intent.name == "") is rejected
        assert r.no_intent_score == score == info.no_intent_score
        assert r.in_scope_score == pytest.approx(expected, abs=1e-4)
        assert r.no_intent_threshold == pytest.approx(threshold)
        # the confidence stays the softmax probability whatever the score
        assert r.top_intents[0].confidence == pytest.approx(softmax(row).max(), rel=1e-5)


def test_a_calibration_naming_an_unknown_score_is_refused():
    import json as _json

    import onnx

    from modelspec.meta import MetadataError

    blob = _json.loads(onnx.load(str(DEFAULT_ONNX)).metadata_props[0].value)
    blob["calibration"] = {"threshold": 1.0, "score": "entropy"}
    with pytest.raises(MetadataError, match="calibration score 'entropy' is not one of"):
        ModelMetadata.from_json(_json.dumps(blob))
