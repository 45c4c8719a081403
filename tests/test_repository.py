"""The model repository: several models and versions at once, explicit and polled changes,
broken files, calls that finish on the version they started on, tritonclient's calls."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest

from client import Client, RnnServeError
from rnnserve.kserve import grpc_predict_v2_pb2 as v2
from rnnserve.kserve import grpc_predict_v2_pb2_grpc as v2_grpc
from rnnserve.v1 import rnnserve_pb2 as pb
from rnnserve.v1 import rnnserve_pb2_grpc as pb_grpc

from .conftest import DEFAULT_ONNX, ROOT
from .serving import RunningServer, settings_for, small_model_file, wait_until

PROBE = Path(__file__).with_name("v2_repository_probe.py")
TEXT = "turn on the kitchen lights"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Two versions of a small unidirectional model (different weights) and a bidirectional one."""
    root = tmp_path_factory.mktemp("files")
    return {
        "v1": small_model_file(root / "v1.onnx", "gru", seed=1),
        "v2": small_model_file(root / "v2.onnx", "gru", seed=2),
        "v3": small_model_file(root / "v3.onnx", "gru", seed=3),
        "bi": small_model_file(root / "bi.onnx", "gru", bi=True),
    }


def _place(root: Path, name: str, version: int, src: Path) -> None:
    folder = root / name / str(version)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "model.onnx.part"
    shutil.copy(src, tmp)
    tmp.rename(folder / "model.onnx")  # appears whole, as a deployment tool would place it


def _repo(tmp_path: Path, files: dict, policy: dict | None = None) -> Path:
    root = tmp_path / "repo"
    _place(root, "uni", 1, files["v1"])
    _place(root, "uni", 2, files["v2"])
    if policy is not None:
        (root / "uni" / "config.json").write_text(json.dumps({"version_policy": policy}))
    shutil.copy(files["bi"], root / "bi.onnx")  # a flat file is a model of one version
    return root


def _settings(root: Path, **kw):
    return settings_for(DEFAULT_ONNX, model_repository=str(root), **kw)


def _confidence(c: Client, version: str = "", model: str = "uni") -> float:
    answer = c.parse(TEXT, model=model, version=version)
    return answer.intent.confidence


@contextlib.contextmanager
def _explicit(tmp_path: Path, files: dict):
    """A server on a fresh repository in explicit mode: (root, server, client, v2 stub)."""
    root = _repo(tmp_path, files)
    settings = _settings(root, model_control_mode="explicit")
    with (
        RunningServer(settings) as srv,
        Client(srv.target, timeout=10) as c,
        grpc.insecure_channel(srv.target) as ch,
    ):
        yield root, srv, c, v2_grpc.GRPCInferenceServiceStub(ch)


def _index(stub) -> dict[tuple[str, str], tuple[str, str]]:
    got = stub.RepositoryIndex(v2.RepositoryIndexRequest(), timeout=5)
    return {(m.name, m.version): (m.state, m.reason) for m in got.models}


def test_two_models_and_two_versions_at_once(tmp_path, files):
    root = _repo(tmp_path, files, policy={"all": {}})
    with RunningServer(_settings(root)) as srv, Client(srv.target, timeout=10) as c:
        one, two, newest = _confidence(c, "1"), _confidence(c, "2"), _confidence(c)
        assert one != two and newest == two  # different weights; '' is the newest version
        assert c.parse(TEXT, model="uni", version="1").model_version == "1"
        assert c.parse(TEXT, model="bi").model_version == "1"
        assert c.parse(TEXT).model == "bi"  # the default: the first model by name
        info = c.info("uni")
        assert info.version == "2" and list(info.versions) == ["1", "2"]
        with pytest.raises(RnnServeError) as err:
            c.parse(TEXT, model="uni", version="3")
        assert err.value.code == "NOT_FOUND" and "ready: 1, 2" in err.value.message
        with grpc.insecure_channel(srv.target) as ch:
            stub = v2_grpc.GRPCInferenceServiceStub(ch)
            meta = stub.ModelMetadata(v2.ModelMetadataRequest(name="uni"), timeout=5)
            assert list(meta.versions) == ["1", "2"]
            ready = stub.ModelReady(v2.ModelReadyRequest(name="uni", version="1"), timeout=5)
            assert ready.ready
            index = _index(stub)
            assert index[("uni", "1")] == index[("uni", "2")] == ("READY", "")
            assert index[("bi", "1")] == ("READY", "")


def test_the_default_policy_serves_the_newest_version_only(tmp_path, files):
    root = _repo(tmp_path, files)
    with RunningServer(_settings(root)) as srv, Client(srv.target, timeout=10) as c:
        assert list(c.info("uni").versions) == ["2"]
        with pytest.raises(RnnServeError) as err:
            c.parse(TEXT, model="uni", version="1")
        assert err.value.code == "NOT_FOUND"


def test_explicit_load_and_unload(tmp_path, files):
    with _explicit(tmp_path, files) as (root, srv, c, stub):
        stub.RepositoryModelUnload(v2.RepositoryModelUnloadRequest(model_name="uni"), timeout=10)
        with pytest.raises(RnnServeError) as err:
            c.parse(TEXT, model="uni")
        assert err.value.code == "NOT_FOUND"
        assert err.value.message == "model 'uni' has no version loaded (unloaded)"
        for name, version, said in (
            ("nope", "", "unknown model 'nope'"),
            ("uni", "9", "model 'uni' has no version '9' (known: 2)"),
        ):
            with pytest.raises(grpc.RpcError) as rpc_err:
                stub.ModelReady(v2.ModelReadyRequest(name=name, version=version), timeout=5)
            assert (rpc_err.value.code(), rpc_err.value.details()) == (
                grpc.StatusCode.NOT_FOUND,
                said,
            )
        assert _index(stub)[("uni", "2")] == ("UNAVAILABLE", "unloaded")
        assert srv.metric('rnnserve_model_ready{model="uni",version="2"}') == 0
        assert srv.metric('rnnserve_model_ready{model="bi",version="1"}') == 1
        assert c.parse(TEXT, model="bi").tokens  # the other model serves on
        _place(root, "uni", 3, files["v3"])  # loading picks up what the repository holds now
        stub.RepositoryModelLoad(v2.RepositoryModelLoadRequest(model_name="uni"), timeout=30)
        assert c.parse(TEXT, model="uni").model_version == "3"
        assert srv.metric('rnnserve_model_ready{model="uni",version="3"}') == 1
        with pytest.raises(grpc.RpcError) as rpc_err:
            stub.RepositoryModelLoad(v2.RepositoryModelLoadRequest(model_name="nope"), timeout=10)
        assert rpc_err.value.code() == grpc.StatusCode.NOT_FOUND
        for key, value in (("config", '{"max_batch_size": 4}'), ("file:1/model.onnx", "x")):
            load = v2.RepositoryModelLoadRequest(model_name="uni")
            load.parameters[key].string_param = value
            with pytest.raises(grpc.RpcError) as rpc_err:
                stub.RepositoryModelLoad(load, timeout=10)
            assert rpc_err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert rpc_err.value.details() == (
                f"parameter {key!r} is not supported: a model loads as the repository holds it "
                "(place its files and config.json there)"
            )
        assert c.parse(TEXT, model="uni").model_version == "3"


def test_load_and_unload_need_explicit_mode(tmp_path, files):
    with (
        RunningServer(_settings(_repo(tmp_path, files))) as srv,
        grpc.insecure_channel(srv.target) as ch,
    ):
        stub = v2_grpc.GRPCInferenceServiceStub(ch)
        with pytest.raises(grpc.RpcError) as err:
            stub.RepositoryModelUnload(v2.RepositoryModelUnloadRequest(model_name="uni"), timeout=5)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "--model-control-mode explicit" in err.value.details()


def test_a_broken_file_keeps_the_serving_version_and_is_reported(tmp_path, files):
    with _explicit(tmp_path, files) as (root, _srv, c, stub):
        before = _confidence(c)
        (root / "uni" / "3").mkdir()
        (root / "uni" / "3" / "model.onnx").write_bytes(b"not an onnx file")
        for _ in range(2):  # loading again, the file unchanged, still keeps version 2
            with pytest.raises(grpc.RpcError) as err:
                load = v2.RepositoryModelLoadRequest(model_name="uni")
                stub.RepositoryModelLoad(load, timeout=30)
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "not a loadable ONNX model" in err.value.details()
            assert "versions serving: 2" in err.value.details()
            assert _confidence(c) == before and c.info("uni").version == "2"
        state, reason = _index(stub)[("uni", "3")]
        # the operator's log has the file and onnxruntime's words; a client reads neither
        assert (state, reason) == ("UNAVAILABLE", "not a loadable ONNX model")


def test_a_broken_model_first_by_name_leaves_the_default_to_the_first_that_loads(tmp_path, files):
    root = _repo(tmp_path, files)
    (root / "aaa.onnx").write_bytes(b"not an onnx file")  # sorts before bi and uni
    with RunningServer(_settings(root)) as srv, Client(srv.target, timeout=10) as c:
        assert c.parse(TEXT).model == "bi"
        with grpc.insecure_channel(srv.target) as ch:
            stub = v2_grpc.GRPCInferenceServiceStub(ch)
            state, reason = _index(stub)[("aaa", "1")]
            assert (state, reason) == ("UNAVAILABLE", "not a loadable ONNX model")


def test_poll_mode_keeps_serving_the_version_before_a_broken_one(tmp_path, files):
    root = _repo(tmp_path, files)
    settings = _settings(root, model_control_mode="poll", repository_poll_seconds=0.1)
    with (
        RunningServer(settings) as srv,
        Client(srv.target, timeout=10) as c,
        grpc.insecure_channel(srv.target) as ch,
    ):
        stub = v2_grpc.GRPCInferenceServiceStub(ch)
        two = _confidence(c)
        (root / "uni" / "3").mkdir()
        (root / "uni" / "3" / "model.onnx").write_bytes(b"not an onnx file")
        assert wait_until(lambda: _index(stub).get(("uni", "3"), ("", ""))[0] == "UNAVAILABLE")
        shutil.copy(files["bi"], root / "later.onnx")  # seen by a later scan than the one above
        assert wait_until(lambda: "later" in {m.name for m in _ready(srv)})
        assert c.info("uni").version == "2" and _confidence(c) == two
        assert _index(stub)[("uni", "2")] == ("READY", "")
        shutil.rmtree(root / "uni" / "3")
        _place(root, "uni", 4, files["v3"])
        assert wait_until(lambda: c.info("uni").version == "4")
        assert _index(stub)[("uni", "2")] == ("UNAVAILABLE", "no longer in the repository's policy")


def test_poll_mode_picks_up_a_new_version_and_drops_a_removed_one(tmp_path, files):
    root = _repo(tmp_path, files)
    settings = _settings(root, model_control_mode="poll", repository_poll_seconds=0.1)
    with RunningServer(settings) as srv, Client(srv.target, timeout=10) as c:
        two = _confidence(c)
        _place(root, "uni", 3, files["v3"])
        assert wait_until(lambda: c.info("uni").version == "3")
        assert _confidence(c) != two
        shutil.rmtree(root / "uni" / "3")
        assert wait_until(lambda: c.info("uni").version == "2")
        assert _confidence(c) == two
        (root / "bi.onnx").unlink()
        assert wait_until(lambda: "bi" not in {m.name for m in _ready(srv)})


def _ready(srv):
    with grpc.insecure_channel(srv.target) as ch:
        stub = v2_grpc.GRPCInferenceServiceStub(ch)
        got = stub.RepositoryIndex(v2.RepositoryIndexRequest(ready=True), timeout=5)
        return list(got.models)


def test_streams_and_sequences_stay_on_the_version_they_started_on(tmp_path, files):
    root = _repo(tmp_path, files)
    settings = _settings(root, model_control_mode="explicit")

    def seq_req(ids, start=False, end=False):
        arr = np.asarray([ids], np.int64)
        r = v2.ModelInferRequest(model_name="uni")
        r.inputs.add(name="input_ids", datatype="INT64", shape=list(arr.shape))
        r.raw_input_contents.append(arr.tobytes())
        r.parameters["sequence_id"].int64_param = 7
        r.parameters["sequence_start"].bool_param = start
        r.parameters["sequence_end"].bool_param = end
        return r

    async def go(srv):
        async with grpc.aio.insecure_channel(srv.target) as ch:
            parser, infer = pb_grpc.ParserStub(ch), v2_grpc.GRPCInferenceServiceStub(ch)
            stream = parser.ParseStream(timeout=30)
            await stream.write(pb.ParseStreamRequest(model="uni", text="turn on"))
            first = await stream.read()
            seq = await infer.ModelInfer(seq_req([3, 4], start=True), timeout=10)
            _place(root, "uni", 3, files["v3"])
            load = v2.RepositoryModelLoadRequest(model_name="uni")
            await infer.RepositoryModelLoad(load, timeout=30)
            await stream.write(pb.ParseStreamRequest(text="the lights"))
            second = await stream.read()
            await stream.done_writing()
            seq_end = await infer.ModelInfer(seq_req([5], end=True), timeout=10)
            fresh = await parser.Parse(pb.ParseRequest(model="uni", text=TEXT), timeout=10)
            return first, second, seq, seq_end, fresh

    with RunningServer(settings) as srv:
        first, second, seq, seq_end, fresh = asyncio.run(go(srv))
    assert first.model_version == second.model_version == "2"
    assert seq.model_version == seq_end.model_version == "2"
    assert fresh.model_version == "3"


def test_tritonclient_repository_calls_work_unchanged(tmp_path, files):
    root = _repo(tmp_path, files)
    (tmp_path / "tokens").write_text("repo-token\n")
    settings = _settings(
        root, model_control_mode="explicit", auth_token_file=str(tmp_path / "tokens")
    )
    with RunningServer(settings) as srv:
        job = json.dumps({"url": srv.target, "model": "uni", "token": "repo-token"})
        out = subprocess.run(
            [sys.executable, str(PROBE)], input=job, capture_output=True, text=True, timeout=60
        )
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    before = {(m["name"], m["version"]): m["state"] for m in got["before"]}
    assert before == {("bi", "1"): "READY", ("uni", "2"): "READY"}
    after = {(m["name"], m["version"]): m for m in got["after_unload"]}
    assert after[("uni", "2")]["state"] == "UNAVAILABLE" and after[("uni", "2")]["reason"]
    assert got["ready_after_unload"] is False
    assert got["ready_after_load"] is True
    assert got["missing"] == "StatusCode.NOT_FOUND"
    assert got["without_token"] == "StatusCode.UNAUTHENTICATED"


def test_the_default_repository_streams_and_speaks_both_languages():
    settings = settings_for(DEFAULT_ONNX, model_repository=str(ROOT / "models"))
    with RunningServer(settings) as srv, Client(srv.target, timeout=10) as c:
        assert c.parse("what time is it").model == "intent"  # the default: first by name
        answers = list(c.stream(["turn on the", "kitchen lights"], model="intent-stream"))
        assert [a.model for a in answers] == ["intent-stream"] * 2
        assert answers[-1].intent.name == "HassTurnOn" and answers[-1].total_steps == 5
        assert c.parse("turn on the kitchen lights").intent.name == "HassTurnOn"
        # both languages at once, each answering its own sentences
        zh = c.parse("把客厅的灯打开", model="intent-zh")
        assert zh.intent.name == "HassTurnOn"
        assert [(s.name, s.value, s.char_start, s.char_end) for s in zh.slots] == [
            ("area", "客厅", 1, 3)
        ]
        assert c.parse("现在几点了？", model="intent-zh").intent.name == "HassGetCurrentTime"
        assert c.parse("what time is it").intent.name == "HassGetCurrentTime"
