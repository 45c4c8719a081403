"""An encoder–decoder that cannot be served at start (a bad config.json, a truncated graph, a
graph that loads but cannot run): the server starts, the other models serve, clients read a
reason without the server's paths, and the log keeps the paths."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import grpc
import onnx
import pytest
from onnx import TensorProto, helper

from modelspec.seq2seq import LOGITS, STEP_FILE
from rnnserve.kserve import grpc_predict_v2_pb2 as v2
from rnnserve.kserve import grpc_predict_v2_pb2_grpc as v2_grpc
from rnnserve.v1 import rnnserve_pb2 as pb
from rnnserve.v1 import rnnserve_pb2_grpc as pb_grpc

from .conftest import DEFAULT_ONNX, ROOT
from .serving import RunningServer, settings_for

G2P_DIR = ROOT / "models" / "g2p"
READ_CONFIG = "config.json: not a readable JSON file"


def _repo(root: Path) -> Path:
    """The English intent model and a copy of the committed g2p model, to be broken."""
    root.mkdir()
    shutil.copy(DEFAULT_ONNX, root / "intent.onnx")
    shutil.copytree(G2P_DIR, root / "g2p")
    return root


def _one_row_step(folder: Path) -> None:
    """step.onnx with its logits reshaped to one row: it loads, and fails on two rows."""
    path = folder / STEP_FILE
    model = onnx.load(str(path))
    width = model.graph.output[0].type.tensor_type.shape.dim[1].dim_value
    for node in model.graph.node:
        node.output[:] = ["raw" if o == LOGITS else o for o in node.output]
    shape = helper.make_tensor("one_row", TensorProto.INT64, [2], [1, width])
    model.graph.initializer.append(shape)
    model.graph.node.append(helper.make_node("Reshape", ["raw", "one_row"], [LOGITS]))
    onnx.save(model, str(path))


def _broken(tmp_path: Path, case: str) -> Path:
    root = _repo(tmp_path / "repo")
    if case == "garbage config":
        (root / "g2p" / "config.json").write_text("{not json", encoding="utf-8")
    elif case == "bad generation setting":
        (root / "g2p" / "config.json").write_text('{"generation": {"max_stepz": 3}}')
    elif case == "truncated step":
        step = root / "g2p" / "1" / STEP_FILE
        step.write_bytes(step.read_bytes()[:1000])
    else:
        _one_row_step(root / "g2p" / "1")
    return root


CASES = [  # (case, the RepositoryIndex row of g2p, what clients read)
    ("garbage config", ("g2p", ""), READ_CONFIG),
    (
        "bad generation setting",
        ("g2p", ""),
        "bad generation settings (unknown setting 'max_stepz')",
    ),
    ("truncated step", ("g2p", "1"), "step.onnx: not a loadable ONNX model"),
    ("fails its warm-up runs", ("g2p", "1"), "failed its warm-up runs"),
]


def _index(target: str) -> dict[tuple[str, str], tuple[str, str]]:
    with grpc.insecure_channel(target) as ch:
        got = v2_grpc.GRPCInferenceServiceStub(ch).RepositoryIndex(
            v2.RepositoryIndexRequest(), timeout=5
        )
    return {(m.name, m.version): (m.state, m.reason) for m in got.models}


@pytest.mark.parametrize(("case", "row", "reason"), CASES)
def test_a_broken_encoder_decoder_is_reported_and_the_others_serve(
    tmp_path, caplog, case, row, reason
):
    root = _broken(tmp_path, case)
    settings = settings_for(DEFAULT_ONNX, model_repository=str(root), warmup_runs=2)
    with caplog.at_level(logging.WARNING), RunningServer(settings) as srv:  # no traceback
        with grpc.insecure_channel(srv.target) as ch:
            stub = pb_grpc.ParserStub(ch)
            assert stub.Parse(pb.ParseRequest(text="turn on the lamp"), timeout=10).intent
            with pytest.raises(grpc.RpcError) as err:
                stub.Generate(pb.GenerateRequest(model="g2p", text="lamp"), timeout=10)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        assert reason in err.value.details()
        assert str(tmp_path) not in err.value.details()
        assert "line 1" not in err.value.details()  # no parser internals
        assert srv.app is not None and str(tmp_path) not in str(srv.app.generation.index())
        index = _index(srv.target)
        assert ("g2p.encoder", "1") not in index and ("g2p.step", "1") not in index
    said = [r for r in caplog.records if str(root / "g2p") in str(getattr(r, "reason", ""))]
    assert len(said) == 1  # once, and with the path: for the operator
    assert reason.split(": ")[-1] in said[0].reason


@pytest.mark.parametrize(("case", "row", "reason"), [CASES[0], CASES[3]])
def test_a_broken_encoder_decoder_is_unavailable_in_the_repository_index(
    tmp_path, case, row, reason
):
    root = _broken(tmp_path, case)
    settings = settings_for(DEFAULT_ONNX, model_repository=str(root), warmup_runs=2)
    with RunningServer(settings) as srv, grpc.insecure_channel(srv.target) as ch:
        assert _index(srv.target)[row] == ("UNAVAILABLE", reason)
        stub = v2_grpc.GRPCInferenceServiceStub(ch)
        ready = stub.RepositoryIndex(v2.RepositoryIndexRequest(ready=True), timeout=10)
        assert all(m.state == "READY" for m in ready.models)
        for call, req in (
            (stub.RepositoryModelLoad, v2.RepositoryModelLoadRequest(model_name="g2p")),
            (stub.RepositoryModelUnload, v2.RepositoryModelUnloadRequest(model_name="g2p")),
        ):  # a failed encoder-decoder is one too: loaded at start only (was NOT_FOUND)
            with pytest.raises(grpc.RpcError) as err:
                call(req, timeout=10)
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
