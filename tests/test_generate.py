"""Encoder–decoder generation (G2P on CMUdict): per-step batching over the wire with the
committed models/g2p, against torch and against each request alone; joining mid-way,
cancellation and deadlines between steps; beam search; 1 vs N; the graphs as v2 models."""

from __future__ import annotations

import asyncio
import functools
import json
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest

from client import Client, RnnServeError
from rnnserve.kserve import grpc_predict_v2_pb2 as v2
from rnnserve.kserve import grpc_predict_v2_pb2_grpc as v2_grpc
from rnnserve.v1 import rnnserve_pb2 as pb
from rnnserve.v1 import rnnserve_pb2_grpc as pb_grpc
from server.beam import Job, TokenEvent, make_job
from server.errors import DeadlineExceeded
from server.generation import Generator
from server.repository import scan, scan_seq2seq
from server.seq2seq import GenerationLimits, Seq2SeqRuntime

from .conftest import DEFAULT_ONNX, ROOT
from .serving import ENV, RunningServer, settings_for

G2P_DIR = ROOT / "models" / "g2p"
G2P_VERSION = G2P_DIR / "1"
G2P_CKPT = ROOT / "models" / "g2p.pt"
LONG = "supercalifragilisticexpialidocious"
NAMES = ["clippy", "jane's", "kitchen", "lamp", "zoltan", "anouk", "siobhan", "mcallister"]


@functools.cache
def _test_split() -> list[str]:
    from export.g2p.data import load_cmudict, split_entries

    return [e.word for e in split_entries(load_cmudict())["test"]]


def _test_words(n: int) -> list[str]:
    """n words of the test split (the md5 rule), every third one."""
    return _test_split()[: n * 3 : 3]


@functools.cache
def _runtime() -> Seq2SeqRuntime:
    return Seq2SeqRuntime(G2P_VERSION)


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A repository with the English intent model and the committed g2p model."""
    root = tmp_path_factory.mktemp("repo")
    shutil.copy(DEFAULT_ONNX, root / "intent.onnx")
    shutil.copytree(G2P_DIR, root / "g2p")
    return root


@pytest.fixture(scope="module")
def server(repo):
    with RunningServer(settings_for(DEFAULT_ONNX, model_repository=str(repo))) as srv:
        yield srv


@pytest.fixture(scope="module")
def stub(server):
    with grpc.insecure_channel(server.target) as channel:
        yield pb_grpc.ParserStub(channel)


@pytest.fixture(scope="module")
def v2stub(server):
    with grpc.insecure_channel(server.target) as channel:
        yield v2_grpc.GRPCInferenceServiceStub(channel)


def _key(r: pb.GenerateResponse) -> tuple:
    return (tuple(r.tokens), tuple(r.scores), r.finished)


# ---------------------------------------------------------------- the repository


def test_the_repository_holds_g2p_as_an_encoder_decoder(repo):
    assert "g2p" not in scan(repo)  # not a single-graph model
    found = scan_seq2seq(repo)
    assert list(found) == ["g2p"] and list(found["g2p"].versions) == ["1"]


# ---------------------------------------------------------------- answers over the wire


def test_greedy_answers_equal_torch_decoding(server):
    torch = pytest.importorskip("torch")
    from export.g2p.decode import greedy
    from export.g2p.train import load_checkpoint

    torch.set_num_threads(1)
    model, vocab, _ = load_checkpoint(G2P_CKPT)
    words = _test_words(150)
    expected = [vocab.decode_pron(r) for r in greedy(model, [vocab.encode_word(w) for w in words])]
    with Client(server.target) as client:
        got = client.generate_many(words, model="g2p", timeout=60)
    assert [tuple(r.tokens) for r in got] == expected


def test_concurrent_answers_equal_each_request_alone(stub, server):
    words = _test_words(48) + NAMES
    alone = {w: _key(stub.Generate(pb.GenerateRequest(text=w), timeout=30)) for w in words}
    with Client(server.target) as client:
        together = client.generate_many(words * 2, timeout=60)  # 112 requests at once
    assert [_key(r) for r in together] == [alone[w] for w in words * 2]
    beams = {
        w: _key(stub.Generate(pb.GenerateRequest(text=w, beam_size=4), timeout=30)) for w in NAMES
    }
    with Client(server.target) as client:
        mixed = client.generate_many(NAMES * 3, beam_size=4, timeout=60)
    assert [_key(r) for r in mixed] == [beams[w] for w in NAMES * 3]
    gen = server.app.generation.find("g2p").generator
    assert gen.rows_run > gen.steps_run  # steps really were shared
    label = '{model="g2p",version="1"}'
    steps = server.metric(f"rnnserve_generate_step_rows_count{label}")
    assert server.metric(f"rnnserve_generate_step_rows_sum{label}") > steps > 0


def test_stream_sends_each_token_then_the_whole_answer(stub):
    whole = stub.Generate(pb.GenerateRequest(text="kitchen"), timeout=10)
    msgs = list(stub.GenerateStream(pb.GenerateRequest(text="kitchen"), timeout=10))
    tokens = [m.token for m in msgs if not m.HasField("result") and not m.end]
    assert tokens == list(whole.tokens)
    assert [m.step for m in msgs[:-1]] == list(range(len(msgs) - 1))
    assert msgs[-1].HasField("result") and _key(msgs[-1].result) == _key(whole)
    assert whole.finished and whole.score == pytest.approx(sum(whole.scores), abs=1e-4)


def test_a_beam_search_streams_its_settled_tokens_then_the_answer(stub):
    req = pb.GenerateRequest(text="mcallister", beam_size=5)
    whole = stub.Generate(req, timeout=10)
    msgs = list(stub.GenerateStream(req, timeout=10))
    tokens = [m for m in msgs if not m.HasField("result")]
    assert [m.token for m in tokens if not m.end] == list(whole.tokens)
    assert tokens[-1].end and [m.step for m in tokens] == list(range(len(tokens)))
    assert np.allclose([m.score for m in tokens], list(whole.scores))
    assert _key(msgs[-1].result) == _key(whole)


def _rescore(v2stub, word: str, ids: list[int], eos: int) -> list[float]:
    """Log-probabilities of a sequence, teacher forced through the v2 graphs."""
    rt = _runtime()
    src = np.asarray([rt.source_ids(word, GenerationLimits())], dtype=np.int64)
    enc = _infer(v2stub, "g2p.encoder", {"input_ids": src, "lengths": np.asarray([src.shape[1]])})
    memory, h = enc["memory"], enc["h_init"]
    scores = []
    prev = rt.bos_id
    for tok in [*ids, eos]:
        feeds = {
            "prev_ids": np.asarray([prev]),
            "h0": h,
            "memory": memory,
            "memory_lengths": np.asarray([src.shape[1]]),
        }
        out = _infer(v2stub, "g2p.step", feeds)
        logits = out["logits"][0].astype(np.float64)
        logits[[0, rt.bos_id]] = -np.inf  # <pad> and <s> are never generated
        logp = logits - logits.max() - np.log(np.exp(logits - logits.max()).sum())
        scores.append(float(logp[tok]))
        prev, h = tok, out["h_n"]
    return scores


def test_beam_search_returns_the_best_scored_sequences(stub, v2stub):
    for word in ["clippy", "siobhan", "zoltan"]:
        greedy = stub.Generate(pb.GenerateRequest(text=word), timeout=10)
        r = stub.Generate(pb.GenerateRequest(text=word, beam_size=6, num_results=6), timeout=10)
        totals = [h.score for h in r.hypotheses]
        assert len(totals) == 6 and totals == sorted(totals, reverse=True)
        assert r.score == totals[0] >= greedy.score - 1e-5
        assert len({tuple(h.token_ids) for h in r.hypotheses}) == 6
        for h in r.hypotheses[:3]:  # the scores are the model's own log-probabilities
            assert h.finished
            again = _rescore(v2stub, word, list(h.token_ids), eos=2)
            assert np.allclose(again, list(h.scores), atol=1e-4)


def test_one_vs_n_from_a_given_vector(stub, v2stub):
    rt = _runtime()
    ids = rt.source_ids("lamp", GenerationLimits())
    enc = _infer(
        v2stub, "g2p.encoder", {"input_ids": np.asarray([ids]), "lengths": np.asarray([len(ids)])}
    )
    from_text = stub.Generate(pb.GenerateRequest(text="lamp"), timeout=10)
    ctx = pb.GenerateContext(
        h0=_tensor(enc["h_init"].reshape(-1)), memory=_tensor(enc["memory"][0])
    )
    from_vector = stub.Generate(pb.GenerateRequest(context=ctx), timeout=10)
    assert _key(from_vector) == _key(from_text) and not from_vector.input_tokens
    # One vector as the whole memory: the step graph generates from it alone.
    one = pb.GenerateContext(memory=_tensor(enc["memory"][0, 1]), h0=ctx.h0)
    r = stub.Generate(pb.GenerateRequest(context=one, max_steps=12, return_states=True), timeout=10)
    assert 1 <= len(r.scores) <= 12
    states = np.asarray(r.hypotheses[0].states.values).reshape(r.hypotheses[0].states.shape)
    assert states.shape == (len(r.scores), rt.hidden)
    expected = _loop(v2stub, enc["h_init"], enc["memory"][:, 1:2], 12, rt)
    assert list(r.token_ids) == expected


def _loop(v2stub, h, memory, steps: int, rt: Seq2SeqRuntime) -> list[int]:
    """Greedy decoding driven by hand through the v2 step graph."""
    out_ids: list[int] = []
    prev = rt.bos_id
    for _ in range(steps):
        feeds = {
            "prev_ids": np.asarray([prev]),
            "h0": h,
            "memory": memory,
            "memory_lengths": np.asarray([memory.shape[1]]),
        }
        out = _infer(v2stub, "g2p.step", feeds)
        logits = out["logits"][0].copy()
        logits[[0, rt.bos_id]] = -np.inf
        prev, h = int(np.argmax(logits)), out["h_n"]
        if prev == rt.eos_id:
            break
        out_ids.append(prev)
    return out_ids


def _tensor(a: np.ndarray) -> pb.Tensor:
    return pb.Tensor(shape=list(a.shape), values=a.ravel().tolist())


def _infer(v2stub, model: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    req = v2.ModelInferRequest(model_name=model)
    for name, arr in feeds.items():
        a = np.ascontiguousarray(arr)
        dtype = "INT64" if a.dtype.kind == "i" else "FP32"
        a = a.astype("<i8" if dtype == "INT64" else "<f4")
        req.inputs.add(name=name, datatype=dtype, shape=list(a.shape))
        req.raw_input_contents.append(a.tobytes())
    resp = v2stub.ModelInfer(req, timeout=10)
    return {
        o.name: np.frombuffer(raw, "<f4").reshape(list(o.shape))
        for o, raw in zip(resp.outputs, resp.raw_output_contents)
    }


# ---------------------------------------------------------------- the graphs as v2 models


def test_the_graphs_are_ordinary_v2_models(v2stub):
    index = v2stub.RepositoryIndex(v2.RepositoryIndexRequest(), timeout=10)
    names = {m.name for m in index.models if m.state == "READY"}
    assert {"g2p.encoder", "g2p.step", "intent"} <= names
    meta = v2stub.ModelMetadata(v2.ModelMetadataRequest(name="g2p.step"), timeout=10)
    assert [t.name for t in meta.inputs] == ["prev_ids", "h0", "memory", "memory_lengths"]
    assert [t.name for t in meta.outputs] == ["logits", "h_n", "attention"]
    kinds = [t.datatype for t in (*meta.inputs, *meta.outputs)]
    assert kinds == ["INT64", "FP32", "FP32", "INT64", "FP32", "FP32", "FP32"]
    assert meta.platform == "onnxruntime_onnx"
    assert v2stub.ModelReady(v2.ModelReadyRequest(name="g2p.encoder"), timeout=10).ready
    cfg = v2stub.ModelConfig(v2.ModelConfigRequest(name="g2p.encoder"), timeout=10).config
    assert cfg.parameters["seq2seq_role"].string_value == "encoder"


def _encoder_request(rows: int, width: int, *outputs: str, version: str = ""):
    ids, lengths = np.full((rows, width), 3, "<i8"), np.full((rows,), width, "<i8")
    req = v2.ModelInferRequest(model_name="g2p.encoder", model_version=version)
    for name, a in (("input_ids", ids), ("lengths", lengths)):
        req.inputs.add(name=name, datatype="INT64", shape=list(a.shape))
        req.raw_input_contents.append(a.tobytes())
    for name in outputs:
        req.outputs.add(name=name)
    return req


def test_a_graph_answer_over_the_message_limit_is_refused_before_the_run(v2stub):
    with pytest.raises(grpc.RpcError) as err:
        v2stub.ModelInfer(_encoder_request(256, 64), timeout=30)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert err.value.details() == (
        "the answer would be about 17043456 bytes, over the 4194304-byte message limit; ask for "
        "fewer outputs or send fewer rows or steps"
    )  # 4 bytes a value of memory [256, 64, 256] and h_init [1, 256, 256], plus 4096
    small = v2stub.ModelInfer(_encoder_request(256, 64, "h_init"), timeout=30)
    assert [(o.name, list(o.shape)) for o in small.outputs] == [("h_init", [1, 256, 256])]


def test_a_graph_refuses_a_sequence_rather_than_ignoring_it(v2stub):
    req = _encoder_request(1, 2)
    req.parameters["sequence_id"].int64_param = 7
    req.parameters["sequence_start"].bool_param = True
    with pytest.raises(grpc.RpcError) as err:
        v2stub.ModelInfer(req, timeout=10)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert err.value.details() == (
        "model 'g2p.encoder' keeps no sequences: each request carries its own state"
    )


def test_an_unknown_graph_version_names_the_graph_and_the_ready_ones(v2stub):
    with pytest.raises(grpc.RpcError) as err:
        v2stub.ModelInfer(_encoder_request(1, 2, version="2"), timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert err.value.details() == "model 'g2p.encoder' has no version '2' (ready: 1)"


def test_the_graphs_answer_on_model_stream_infer_as_on_model_infer(v2stub):
    ids, lengths = np.asarray([[3, 4, 5]], "<i8"), np.asarray([3], "<i8")
    req = v2.ModelInferRequest(model_name="g2p.encoder", id="enc-1")
    for name, a in (("input_ids", ids), ("lengths", lengths)):
        req.inputs.add(name=name, datatype="INT64", shape=list(a.shape))
        req.raw_input_contents.append(a.tobytes())
    bad = v2.ModelInferRequest(model_name="g2p.encoder")
    bad.CopyFrom(req)
    del bad.inputs[1], bad.raw_input_contents[1]
    one = v2stub.ModelInfer(req, timeout=10)
    streamed = list(v2stub.ModelStreamInfer(iter([req, bad, req]), timeout=10))
    assert [m.error_message for m in streamed] == [
        "",
        "INVALID_ARGUMENT: input 'lengths' is required (inputs: input_ids, lengths)",
        "",
    ]
    for m in (streamed[0], streamed[2]):
        assert m.infer_response == one and one.id == "enc-1"
        assert [o.name for o in one.outputs] == ["memory", "h_init"]


@pytest.mark.parametrize(
    ("model", "feeds", "message"),
    [
        ("g2p.encoder", {"input_ids": np.asarray([[3, 4]])}, "input 'lengths' is required"),
        (
            "g2p.encoder",
            {"input_ids": np.asarray([[3]]), "lengths": np.asarray([1]), "h0": np.zeros(1)},
            "unknown input 'h0'; inputs: input_ids, lengths",
        ),
        (
            "g2p.encoder",
            {"input_ids": np.asarray([[3, 999]]), "lengths": np.asarray([2])},
            "outside",
        ),
        ("g2p.encoder", {"input_ids": np.asarray([[3, 4]]), "lengths": np.asarray([3])}, "[1, 2]"),
        (
            "g2p.step",
            {
                "prev_ids": np.asarray([1]),
                "h0": np.zeros((1, 1, 7), np.float32),
                "memory": np.zeros((1, 2, 3), np.float32),
                "memory_lengths": np.asarray([2]),
            },
            "must have shape",
        ),
        (
            "g2p.step",
            {
                "prev_ids": np.asarray([1]),
                "h0": np.full((1, 1, 256), np.nan, np.float32),
                "memory": np.zeros((1, 2, 256), np.float32),
                "memory_lengths": np.asarray([2]),
            },
            "input 'h0' holds NaN or values beyond ±10000",
        ),
    ],
)
def test_bad_v2_graph_requests_are_invalid_argument(v2stub, model, feeds, message):
    with pytest.raises(grpc.RpcError) as err:
        _infer(v2stub, model, feeds)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in err.value.details()


# ---------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("request_", "code", "message"),
    [
        (pb.GenerateRequest(), "INVALID_ARGUMENT", "needs text, token_ids or a context"),
        (pb.GenerateRequest(text="jane doe"), "INVALID_ARGUMENT", "one word per request"),
        (pb.GenerateRequest(text="r2d2"), "INVALID_ARGUMENT", "'2'"),
        (pb.GenerateRequest(text="'"), "INVALID_ARGUMENT", "text has no letters to pronounce"),
        (pb.GenerateRequest(text="--."), "INVALID_ARGUMENT", "text has no letters to pronounce"),
        (pb.GenerateRequest(text="a" * 65), "INVALID_ARGUMENT", "the limit is 64"),
        (pb.GenerateRequest(text="lamp", beam_size=9), "INVALID_ARGUMENT", "beam_size 9"),
        (pb.GenerateRequest(text="lamp", max_steps=65), "INVALID_ARGUMENT", "max_steps 65"),
        (pb.GenerateRequest(text="lamp", num_results=2), "INVALID_ARGUMENT", "num_results 2"),
        (
            pb.GenerateRequest(token_ids=pb.TokenIds(ids=[3, 500])),
            "INVALID_ARGUMENT",
            "token id 500",
        ),
        (
            pb.GenerateRequest(
                context=pb.GenerateContext(memory=pb.Tensor(shape=[3], values=[1, 2, 3]))
            ),
            "INVALID_ARGUMENT",
            "context.memory has shape [1, 3]",
        ),
        (
            pb.GenerateRequest(
                context=pb.GenerateContext(h0=pb.Tensor(shape=[256], values=[float("nan")] * 256))
            ),
            "INVALID_ARGUMENT",
            "context.h0 holds NaN or values beyond ±10000",
        ),
        (pb.GenerateRequest(model="nope", text="lamp"), "NOT_FOUND", "unknown generation model"),
        (
            pb.GenerateRequest(text="lamp", version="7"),
            "NOT_FOUND",
            "model 'g2p' has no version '7' (ready: 1)",
        ),
    ],
)
def test_bad_requests_get_a_precise_status(stub, request_, code, message):
    with pytest.raises(grpc.RpcError) as err:
        stub.Generate(request_, timeout=10)
    assert err.value.code().name == code
    assert message in err.value.details()


def test_accented_letters_are_read_without_their_accents(stub):
    plain = stub.Generate(pb.GenerateRequest(text="zoe's"), timeout=10)
    for said in ("Zoë's", "ZOË'S", "zoe\u0308's"):  # composed, upper case, decomposed
        got = stub.Generate(pb.GenerateRequest(text=said), timeout=10)
        assert list(got.input_tokens) == list("zoe's")
        assert (list(got.tokens), list(got.scores)) == (list(plain.tokens), list(plain.scores))
    with pytest.raises(grpc.RpcError) as err:  # no letter of the vocabulary behind it
        stub.Generate(pb.GenerateRequest(text="straße"), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "'ß'" in err.value.details()


def test_an_intent_call_naming_the_encoder_decoder_is_told_to_call_generate(stub):
    told = "model 'g2p' is an encoder–decoder: call Generate or GenerateStream"
    calls = (
        lambda: stub.Parse(pb.ParseRequest(model="g2p", text="lamp"), timeout=10),
        lambda: list(stub.ParseStream(iter([pb.ParseStreamRequest(model="g2p", text="x")]))),
        lambda: stub.ModelInfo(pb.ModelInfoRequest(model="g2p"), timeout=10),
    )
    for call in calls:
        with pytest.raises(grpc.RpcError) as err:
            call()
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert err.value.details().startswith(told)
    with pytest.raises(grpc.RpcError) as err:  # a name nothing serves stays unknown
        stub.Parse(pb.ParseRequest(model="nope", text="lamp"), timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_an_answer_that_could_exceed_the_message_limit_is_refused_before_decoding(repo):
    settings = settings_for(DEFAULT_ONNX, model_repository=str(repo), max_message_bytes=50_000)
    with RunningServer(settings) as srv, grpc.insecure_channel(srv.target) as channel:
        small = pb_grpc.ParserStub(channel)
        big = pb.GenerateRequest(
            text=LONG, beam_size=8, num_results=8, max_steps=64, return_states=True
        )
        message = (
            "the answer could be about 603136 bytes, over the 50000-byte message limit; ask for "
            "fewer max_steps or num_results, or no return_states"
        )  # 4096 + 9 hypotheses x 64 steps x (16 + 4 x 256)
        for call in (small.Generate, lambda r, **kw: list(small.GenerateStream(r, **kw))):
            with pytest.raises(grpc.RpcError) as err:
                call(big, timeout=30)
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert err.value.details() == message
        one = small.Generate(pb.GenerateRequest(text="lamp", max_steps=10, return_states=True))
        assert list(one.tokens) == ["L", "AE1", "M", "P"]
        assert list(one.hypotheses[0].states.shape) == [5, 256]


@pytest.mark.parametrize(
    ("generation", "problem"),
    [
        ({"max_step": 10}, "unknown setting 'max_step'"),
        ({"max_steps": "ten"}, "max_steps must be a whole number >= 1, not 'ten'"),
        ({"max_steps": 2.5}, "max_steps must be a whole number >= 1, not 2.5"),
        ({"max_beam_size": True}, "max_beam_size must be a whole number >= 1, not True"),
        ({"default_steps": 50, "max_steps": 20}, "default_steps 50 is over max_steps"),
        ({"batching": "fast"}, "batching must be one of step, request, one"),
        (["step"], "generation must be an object"),
    ],
)
def test_bad_generation_settings_name_the_setting(tmp_path, caplog, generation, problem):
    shutil.copy(DEFAULT_ONNX, tmp_path / "intent.onnx")
    shutil.copytree(G2P_DIR, tmp_path / "g2p")
    config = tmp_path / "g2p" / "config.json"
    config.write_text(json.dumps({"generation": generation}))
    settings = settings_for(DEFAULT_ONNX, model_repository=str(tmp_path))
    with caplog.at_level("WARNING", "rnnserve.generation"), RunningServer(settings) as srv:
        with Client(srv.target) as c, pytest.raises(RnnServeError) as err:
            c.generate("lamp")
        assert err.value.code == "NOT_FOUND"
    reasons = [getattr(r, "reason", "") for r in caplog.records if r.msg == "model not loaded"]
    assert reasons == [f"{config}: bad generation settings ({problem})"]


def test_a_passed_deadline_is_deadline_exceeded(stub):
    with pytest.raises(grpc.RpcError) as err:
        stub.Generate(pb.GenerateRequest(text=LONG, beam_size=8, max_steps=64), timeout=0.0005)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_a_word_list_longer_than_the_server_queue_is_answered_whole(server):
    words = [LONG, "lamp", "kitchen"] * 200  # 600 calls; the server admits 256 at once
    with Client(server.target, timeout=60) as c:
        answers = c.generate_many(words, beam_size=4)
    failed = [a for a in answers if isinstance(a, RnnServeError)]
    assert not failed, failed[:3]
    assert [a.tokens for a in answers[1:3]] == [
        ["L", "AE1", "M", "P"],
        ["K", "IH1", "CH", "AH0", "N"],
    ]
    assert len({tuple(a.tokens) for a in answers[::3]}) == 1


def test_cli_generate_prints_pronunciations(server):
    cmd = [sys.executable, "-m", "client", "generate", "--target", server.target]
    out = subprocess.run(
        [*cmd, "Clippy", "Jane's lamp"], capture_output=True, text=True, env=ENV, timeout=60
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("Clippy\t") and " | " in lines[1]
    out = subprocess.run(
        [*cmd, "--json", "--beam-size", "3", "-"],
        input="anouk\n\nzoltan\n",
        capture_output=True,
        text=True,
        env=ENV,
        timeout=60,
    )
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["text"] for r in rows] == ["anouk", "zoltan"]
    assert all(r["words"][0]["tokens"] and r["words"][0]["finished"] for r in rows)
    bad = subprocess.run([*cmd, "straße"], capture_output=True, text=True, env=ENV, timeout=60)
    assert bad.returncode == 1 and bad.stderr.startswith("INVALID_ARGUMENT")
    # digits are said as English number words: "Lamp 2" is lamp | two, "R2D2" r | two | d | two
    out = subprocess.run(
        [*cmd, "Lamp 2", "R2D2", "two", "r", "d"],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    lamp, droid, two, r, d = (line.split("\t")[1] for line in out.stdout.splitlines())
    assert lamp.split(" | ")[1] == two and droid.split(" | ") == [r, two, d, two]


# ---------------------------------------------------------------- the running batch, step by step


def _run(scenario) -> None:  # type: ignore[no-untyped-def]
    rt = _runtime()
    with ThreadPoolExecutor(1) as pool:
        gen = Generator(rt, GenerationLimits(), pool)

        async def main() -> None:
            try:
                await scenario(gen, rt)
            finally:
                await gen.stop()

        asyncio.run(main())


def _job(rt: Seq2SeqRuntime, word: str, **kw) -> Job:
    kw.setdefault("max_steps", 40)
    return make_job(rt.source_ids(word, GenerationLimits()), **kw)


def test_a_request_joining_mid_way_gets_its_own_exact_answer():
    async def scenario(gen: Generator, rt: Seq2SeqRuntime) -> None:
        alone_a = await gen.run(_job(rt, LONG))
        alone_b = await gen.run(_job(rt, "lamp"))
        a, b = _job(rt, LONG), _job(rt, "lamp")
        events = gen.stream(a)
        first = await events.__anext__()  # a is in the running batch and has made a step
        assert isinstance(first, TokenEvent)
        got_b = await gen.run(b)
        rest = [x async for x in events]
        assert a.joined < b.joined < b.left < a.left  # b joined a running batch and left first
        assert [h.ids for h in got_b] == [h.ids for h in alone_b]
        assert [h.scores for h in got_b] == [h.scores for h in alone_b]
        assert [h.ids for h in rest[-1]] == [h.ids for h in alone_a]  # type: ignore[union-attr]

    _run(scenario)


def test_cancellation_stops_a_decode_between_steps_and_frees_its_rows():
    async def scenario(gen: Generator, rt: Seq2SeqRuntime) -> None:
        a = _job(rt, LONG, max_steps=64)
        events = gen.stream(a)
        await events.__anext__()
        await events.aclose()  # the caller goes away
        b = _job(rt, "lamp")
        await gen.run(b)
        assert a.cancelled and 0 <= a.left <= b.joined
        assert a.steps < a.max_steps and a not in gen.active

    _run(scenario)


def test_a_deadline_passing_mid_decode_stops_it_between_steps():
    async def scenario(gen: Generator, rt: Seq2SeqRuntime) -> None:
        a = _job(rt, LONG, max_steps=64)
        events = gen.stream(a)
        await events.__anext__()
        a.deadline = time.monotonic()  # passes now: the next step is not run for it
        with pytest.raises(DeadlineExceeded, match=r"after \d+ decoder steps"):
            async for _ in events:
                pass
        assert 1 <= a.steps < a.max_steps and a not in gen.active

    _run(scenario)
