"""Operating the server: a repository that changes under it, TLS files, tokens, metrics, drain.

Each test starts a real server (in the test process on port 0, or `python -m server` for what
an operator sees at start-up) and asserts on what a client or the operator receives.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import onnx
import pytest
from cryptography.hazmat.primitives import serialization
from grpc_health.v1 import health_pb2, health_pb2_grpc
from onnx import TensorProto, helper
from prometheus_client import generate_latest

from client import Client, RnnServeError
from modelspec.names import INTENT_LOGITS
from rnnserve.kserve import grpc_predict_v2_pb2 as v2
from rnnserve.kserve import grpc_predict_v2_pb2_grpc as v2_grpc
from rnnserve.v1 import rnnserve_pb2 as pb
from rnnserve.v1 import rnnserve_pb2_grpc as pb_grpc
from server.settings import parse_settings

from .conftest import DEFAULT_ONNX, ROOT
from .pki import issue, make_ca
from .serving import ENV, RunningServer, ServerProcess, settings_for, small_model_file, wait_until

TEXT = "turn on the kitchen lights"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A small unidirectional model and a bidirectional one."""
    root = tmp_path_factory.mktemp("files")
    return {
        "uni": small_model_file(root / "uni.onnx", "gru", seed=1),
        "bi": small_model_file(root / "bi.onnx", "gru", bi=True),
    }


def _repo(root: Path, files: dict) -> Path:
    (root / "uni" / "1").mkdir(parents=True)
    shutil.copy(files["uni"], root / "uni" / "1" / "model.onnx")
    shutil.copy(files["bi"], root / "bi.onnx")
    return root


def _index(target: str) -> dict[tuple[str, str], tuple[str, str]]:
    with grpc.insecure_channel(target) as ch:
        got = v2_grpc.GRPCInferenceServiceStub(ch).RepositoryIndex(
            v2.RepositoryIndexRequest(), timeout=5
        )
    return {(m.name, m.version): (m.state, m.reason) for m in got.models}


def _polling(root: Path) -> RunningServer:
    settings = settings_for(
        DEFAULT_ONNX,
        model_repository=str(root),
        model_control_mode="poll",
        repository_poll_seconds=0.05,
    )
    return RunningServer(settings)


def _start(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "server", "--port", "0", "--metrics-port", "-1", *args],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _one_line(out: subprocess.CompletedProcess) -> str:
    lines = [line for line in out.stderr.splitlines() if not line.startswith("{")]
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    return lines[0]


# ---------------------------------------------------------------- the repository in poll mode


def test_a_repository_that_cannot_be_read_for_a_while_keeps_its_models_served(
    tmp_path, files, caplog
):
    root = _repo(tmp_path / "repo", files)
    aside = tmp_path / "aside"
    caplog.set_level(logging.WARNING, logger="rnnserve.repository")
    with _polling(root) as srv, Client(srv.target, timeout=10) as c:
        assert c.parse(TEXT, model="uni").model == "uni"
        root.rename(aside)  # moved, unmounted: a scan finds no folder
        assert wait_until(lambda: any("unreadable" in r.getMessage() for r in caplog.records))
        assert c.parse(TEXT, model="uni").model == "uni"
        assert c.parse(TEXT, model="bi").model == "bi"
        assert _index(srv.target)[("uni", "1")] == ("READY", "")
        aside.rename(root)
        shutil.copy(files["bi"], root / "later.onnx")
        assert wait_until(lambda: _index(srv.target).get(("later", "1"), ("",))[0] == "READY")
        assert _index(srv.target)[("uni", "1")] == ("READY", "")


def test_a_version_folder_named_with_other_digits_does_not_stop_polling(tmp_path, files):
    root = _repo(tmp_path / "repo", files)
    with _polling(root) as srv, Client(srv.target, timeout=10) as c:
        (root / "uni" / "²").mkdir()  # str.isdigit() says yes, int() says no
        (root / "uni" / "٣").mkdir()  # Arabic-Indic three
        shutil.copy(files["bi"], root / "later.onnx")  # seen only if polling goes on
        assert wait_until(lambda: _index(srv.target).get(("later", "1"), ("",))[0] == "READY")
        assert c.parse(TEXT, model="later").model == "later"
        assert c.info("uni").version == "1"


def test_a_model_folder_broken_then_fixed_while_polling_is_logged_once_and_leaves_no_stale_row(
    tmp_path, files, caplog
):
    root = _repo(tmp_path / "repo", files)
    config = root / "uni" / "config.json"
    caplog.set_level(logging.WARNING, logger="rnnserve.repository")
    with _polling(root) as srv, Client(srv.target, timeout=10) as c:
        config.write_text("{half-written")
        said = ("UNAVAILABLE", "config.json: not a readable JSON file")
        assert wait_until(lambda: _index(srv.target).get(("uni", "")) == said)
        assert _index(srv.target)[("uni", "1")] == ("READY", "")  # the loaded version serves on
        shutil.copy(files["bi"], root / "later.onnx")  # picked up by a later scan
        assert wait_until(lambda: ("later", "1") in _index(srv.target))
        warned = [r for r in caplog.records if r.getMessage() == "model not loaded"]
        assert len(warned) == 1 and str(config) in warned[0].__dict__["reason"]
        config.write_text('{"max_batch_size": 4}')
        assert wait_until(lambda: ("uni", "") not in _index(srv.target))
        assert _index(srv.target)[("uni", "1")] == ("READY", "")
        assert c.parse(TEXT, model="uni").model == "uni"


def test_a_model_that_cannot_be_read_is_reported_without_the_servers_paths(tmp_path, files):
    root = _repo(tmp_path / "repo", files)
    (root / "empty").mkdir()
    (root / "badconfig" / "1").mkdir(parents=True)
    shutil.copy(files["uni"], root / "badconfig" / "1" / "model.onnx")
    (root / "badconfig" / "config.json").write_text("{not json")
    (root / "policy" / "1").mkdir(parents=True)
    shutil.copy(files["uni"], root / "policy" / "1" / "model.onnx")
    policy = '{"version_policy": {"specific": {"versions": [4]}}}'
    (root / "policy" / "config.json").write_text(policy)
    (root / "padded" / "01").mkdir(parents=True)
    shutil.copy(files["uni"], root / "padded" / "01" / "model.onnx")
    (root / "typo" / "1").mkdir(parents=True)
    shutil.copy(files["uni"], root / "typo" / "1" / "model.onnx")
    (root / "typo" / "config.json").write_text('{"max_batch_szie": 8}')  # was ignored
    (root / "truth" / "1").mkdir(parents=True)
    shutil.copy(files["uni"], root / "truth" / "1" / "model.onnx")
    (root / "truth" / "config.json").write_text('{"max_batch_size": true}')  # was taken as 1
    settings = settings_for(DEFAULT_ONNX, model_repository=str(root), model_control_mode="explicit")
    with RunningServer(settings) as srv, grpc.insecure_channel(srv.target) as ch:
        stub = v2_grpc.GRPCInferenceServiceStub(ch)
        index = _index(srv.target)
        assert index[("empty", "")] == ("UNAVAILABLE", "no version folder holds model.onnx")
        assert index[("padded", "")] == (
            "UNAVAILABLE",
            "01: a version folder is named by its number, without leading zeros (1)",
        )
        assert index[("truth", "")] == (
            "UNAVAILABLE",
            "config.json: max_batch_size must be a non-negative integer",
        )
        assert index[("typo", "")] == (
            "UNAVAILABLE",
            "config.json: unknown key 'max_batch_szie' (did you mean 'max_batch_size'?); known: "
            "version_policy, max_batch_size, max_batch_delay_us, generation",
        )
        assert index[("badconfig", "")] == ("UNAVAILABLE", "config.json: not a readable JSON file")
        assert index[("policy", "")] == (
            "UNAVAILABLE",
            "config.json: version_policy selects none of the versions held (1)",
        )
        for name in ("empty", "badconfig", "policy", "padded", "typo"):
            with pytest.raises(grpc.RpcError) as err:
                stub.RepositoryModelLoad(v2.RepositoryModelLoadRequest(model_name=name), timeout=30)
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert str(tmp_path) not in err.value.details()
            with pytest.raises(grpc.RpcError) as err:
                stub.ModelMetadata(v2.ModelMetadataRequest(name=name), timeout=5)
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
            assert str(tmp_path) not in err.value.details()
            ready = stub.ModelReady(v2.ModelReadyRequest(name=name), timeout=5)
            assert not ready.ready
            with pytest.raises(grpc.RpcError) as err:  # was INTERNAL: the model's own "" key
                stub.ModelReady(v2.ModelReadyRequest(name=name, version="1"), timeout=5)
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
            assert "has no version '1' (known: none)" in err.value.details()
        assert all(str(tmp_path) not in reason for _, reason in _index(srv.target).values())


# ---------------------------------------------------------------- TLS files


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    out = tmp_path_factory.mktemp("pki")
    _ca, ca_cert, ca_key = make_ca(out, "ca")
    one = issue(out, "one", ca_cert, ca_key, server=True)
    other = issue(out, "other", ca_cert, ca_key, server=True)
    key = serialization.load_pem_private_key(one.key.read_bytes(), password=None)
    encrypted = out / "encrypted.key"  # the legacy form: BEGIN EC PRIVATE KEY + Proc-Type
    encrypted.write_bytes(
        key.private_bytes(  # type: ignore[union-attr]
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    broken = out / "broken.crt"
    broken.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    return {"one": one, "other": other, "encrypted": encrypted, "broken": broken}


@pytest.mark.parametrize(
    ("cert", "key", "ca", "says"),
    [
        ("one", "other", None, "{key}: the TLS key is not the key of {cert}"),
        ("one", "encrypted", None, "{cert}, {key}: the TLS certificate and key do not parse"),
        ("broken", "one", None, "{cert}, {key}: the TLS certificate and key do not parse"),
        ("one", "one", "broken", "{ca}: the client CA does not parse as PEM certificates"),
    ],
)
def test_tls_files_that_do_not_make_a_server_are_named_before_the_model_loads(
    pki, cert, key, ca, says
):
    def path(name: str, part: str) -> str:
        item = pki[name]
        return str(item if isinstance(item, Path) else getattr(item, part))

    c, k = path(cert, "cert"), path(key, "key")
    flags = ["--tls-cert", c, "--tls-key", k]
    if ca is not None:
        flags += ["--tls-client-ca", path(ca, "cert")]
    out = _start(*flags)
    assert out.returncode == 1
    line = _one_line(out)
    ca_path = path(ca, "cert") if ca else ""
    assert line.startswith("error: " + says.format(cert=c, key=k, ca=ca_path)), line
    assert "bind" not in line and "model loaded" not in out.stderr


# ---------------------------------------------------------------- metrics


def _samples(srv: RunningServer) -> dict[str, float]:
    """Every sample of the server's metrics, by name with labels as printed."""
    assert srv.app is not None
    text = generate_latest(srv.app.metrics.registry).decode()
    return {
        key: float(value)
        for line in text.splitlines()
        if not line.startswith("#")
        for key, _, value in [line.rpartition(" ")]
    }


def test_a_version_that_fails_to_load_reads_zero_in_model_ready(tmp_path, files):
    root = _repo(tmp_path / "repo", files)
    (root / "broken" / "1").mkdir(parents=True)
    (root / "broken" / "1" / "model.onnx").write_bytes(b"not an onnx file")
    (root / "uni" / "config.json").write_text('{"version_policy": {"all": {}}}')
    with _polling(root) as srv:
        assert _samples(srv)['rnnserve_model_ready{model="broken",version="1"}'] == 0
        assert _samples(srv)['rnnserve_model_ready{model="uni",version="1"}'] == 1
        (root / "uni" / "2").mkdir()
        (root / "uni" / "2" / "model.onnx").write_bytes(DEFAULT_ONNX.read_bytes()[:5000])
        assert wait_until(lambda: ("uni", "2") in _index(srv.target))
        assert _samples(srv)['rnnserve_model_ready{model="uni",version="2"}'] == 0
        assert _samples(srv)['rnnserve_model_ready{model="uni",version="1"}'] == 1


def test_the_token_gauge_is_there_only_with_a_token_file(tmp_path, files):
    with RunningServer(settings_for(files["uni"])) as srv:
        assert not [k for k in _samples(srv) if k.startswith("rnnserve_auth_tokens")]
    tokens = tmp_path / "tokens"
    tokens.write_text("# rotated monthly\none-token\n\n  two-token  \none-token\n")
    with RunningServer(settings_for(files["uni"], auth_token_file=str(tokens))) as srv:
        assert _samples(srv)["rnnserve_auth_tokens"] == 2  # one-token once
        with Client(srv.target, timeout=10, token="two-token") as c:
            assert c.parse(TEXT).model == "uni"
            tokens.write_text("# every token revoked\n")
            with pytest.raises(RnnServeError) as err:  # the next call on the same connection
                c.parse(TEXT)
        assert err.value.code == "PERMISSION_DENIED"
        assert _samples(srv)["rnnserve_auth_tokens"] == 0


def _batching(stub, name: str) -> str:
    got = stub.ModelConfig(v2.ModelConfigRequest(name=name), timeout=5)
    param = got.config.parameters.get("dynamic_batching.max_batch_size")
    return param.string_value if param is not None else ""


def test_a_load_after_config_json_changes_takes_its_new_batching(tmp_path, files):
    root = _repo(tmp_path / "repo", files)
    config = root / "uni" / "config.json"
    config.write_text('{"max_batch_size": 4}')
    settings = settings_for(DEFAULT_ONNX, model_repository=str(root), model_control_mode="explicit")
    with (
        RunningServer(settings) as srv,
        grpc.insecure_channel(srv.target) as ch,
        Client(srv.target, timeout=10) as c,
    ):
        stub = v2_grpc.GRPCInferenceServiceStub(ch)
        assert _batching(stub, "uni") == "4"
        config.write_text('{"max_batch_size": 8}')  # the model file is left as it is
        stub.RepositoryModelLoad(v2.RepositoryModelLoadRequest(model_name="uni"), timeout=30)
        assert _batching(stub, "uni") == "8"
        assert c.parse(TEXT, model="uni").model_version == "1"
        stub.RepositoryModelLoad(v2.RepositoryModelLoadRequest(model_name="uni"), timeout=30)
        assert _batching(stub, "uni") == "8"


# ---------------------------------------------------------------- settings


def test_a_model_flag_wins_over_a_repository_from_the_environment(tmp_path, files):
    root = _repo(tmp_path / "repo", files)
    environ = {"RNNSERVE_MODEL_REPOSITORY": str(root), "RNNSERVE_PORT": "0"}
    argv = ["--model", str(files["uni"]), "--metrics-port", "-1", "--warmup-runs", "1"]
    settings = parse_settings(argv, environ)
    with RunningServer(settings) as srv:
        assert set(_index(srv.target)) == {("uni", "1")}
    with RunningServer(parse_settings(argv[2:], environ)) as srv:  # no flag: the repository
        assert set(_index(srv.target)) == {("uni", "1"), ("bi", "1")}
    out = _start("--model", str(files["uni"]), "--model-repository", str(root))
    assert out.returncode == 2
    assert (
        _one_line(out) == "error: --model and --model-repository both say what to serve: give one"
    )


# ---------------------------------------------------------------- overload


def test_v2_probes_answer_a_server_at_capacity_while_work_is_refused(tmp_path, files):
    settings = settings_for(
        files["uni"],
        max_queue=1,
        inference_threads=0,
        max_batch_size=64,
        max_batch_delay_us=2_000_000,
    )
    with RunningServer(settings) as srv, grpc.insecure_channel(srv.target) as ch:
        assert srv.app is not None
        stub = v2_grpc.GRPCInferenceServiceStub(ch)
        held = Client(srv.target, timeout=30)
        with held, ThreadPoolExecutor(1) as pool:
            first = pool.submit(held.parse, TEXT)  # waits in the batch window, holding the slot
            assert wait_until(lambda: srv.app.admission.unary == 1)
            assert stub.ServerLive(v2.ServerLiveRequest(), timeout=5).live
            assert stub.ServerReady(v2.ServerReadyRequest(), timeout=5).ready
            assert stub.ModelReady(v2.ModelReadyRequest(name="uni"), timeout=5).ready
            assert stub.ModelMetadata(v2.ModelMetadataRequest(name="uni"), timeout=5).name == "uni"
            with pytest.raises(grpc.RpcError) as err:
                pb_grpc.ParserStub(ch).Parse(pb.ParseRequest(text=TEXT), timeout=5)
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert first.result(timeout=30).model == "uni"


# ---------------------------------------------------------------- explicit control


def test_unloading_an_unloaded_model_succeeds_and_an_unknown_name_is_not_found(tmp_path, files):
    root = _repo(tmp_path / "repo", files)
    (root / "broken" / "1").mkdir(parents=True)
    (root / "broken" / "1" / "model.onnx").write_bytes(b"not an onnx file")
    settings = settings_for(DEFAULT_ONNX, model_repository=str(root), model_control_mode="explicit")
    with RunningServer(settings) as srv, grpc.insecure_channel(srv.target) as ch:
        stub = v2_grpc.GRPCInferenceServiceStub(ch)
        for name in ("uni", "uni", "broken"):  # twice; and one that never loaded
            stub.RepositoryModelUnload(v2.RepositoryModelUnloadRequest(model_name=name), timeout=10)
        assert _index(srv.target)[("uni", "1")] == ("UNAVAILABLE", "unloaded")
        assert not stub.ModelReady(v2.ModelReadyRequest(name="uni"), timeout=5).ready
        for name in ("nope", ""):
            with pytest.raises(grpc.RpcError) as err:
                stub.RepositoryModelUnload(
                    v2.RepositoryModelUnloadRequest(model_name=name), timeout=5
                )
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
            assert err.value.details() == f"unknown model {name!r}"
        stub.RepositoryModelLoad(v2.RepositoryModelLoadRequest(model_name="uni"), timeout=30)
        assert stub.ModelReady(v2.ModelReadyRequest(name="uni"), timeout=5).ready
        with Client(srv.target, timeout=10) as c:
            assert c.parse(TEXT, model="uni").model == "uni"


# ---------------------------------------------------------------- signals


def test_sigterm_while_the_models_load_drains_and_exits_zero():
    proc = subprocess.Popen(
        [sys.executable, "-m", "server", "--model-repository", "models", "--port", "0"]
        + ["--metrics-port", "-1"],
        cwd=ROOT,
        env=ENV,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    lines = []
    for line in proc.stderr:  # the first model is loaded; the others, and warm-up, are to come
        lines.append(line)
        if '"model loaded"' in line:
            break
    proc.send_signal(signal.SIGTERM)
    _, rest = proc.communicate(timeout=60)
    said = [json.loads(x)["msg"] for x in lines + rest.splitlines() if x.startswith("{")]
    assert proc.returncode == 0, rest
    assert said[-2:] == ["draining", "stopped"]


def test_a_misspelt_setting_variable_is_named_at_start(tmp_path, files):
    env = {
        **ENV,
        "RNNSERVE_AUTH_TOKENS": str(tmp_path / "tokens"),  # the setting is AUTH_TOKEN_FILE
        "RNNSERVE_MAX_QUE": "8",
        "RNNSERVE_TOKEN": "the-clients",  # the client's variable
        "RNNSERVE_SERVICE_HOST": "10.0.0.7",  # a Kubernetes service link
        "RNNSERVE_PORT_50051_TCP_ADDR": "10.0.0.7",
    }
    server = ServerProcess("--model", str(files["uni"]), env=env)
    try:
        warned = {
            r["variable"]: r.get("did_you_mean", "")
            for r in server.lines
            if r["msg"] == "not a setting; ignored"
        }
        assert warned == {
            "RNNSERVE_AUTH_TOKENS": "RNNSERVE_AUTH_TOKEN_FILE",
            "RNNSERVE_MAX_QUE": "RNNSERVE_MAX_QUEUE",
        }
        with Client(server.target, timeout=10) as c:  # and it serves, as before
            assert c.parse(TEXT).model == "uni"
    finally:
        assert server.stop()[0] == 0


def test_a_version_that_failed_at_start_is_not_loaded_again_until_it_changes(
    tmp_path, files, caplog
):
    root = _repo(tmp_path / "repo", files)
    (root / "uni" / "2").mkdir()
    (root / "uni" / "2" / "model.onnx").write_bytes(b"not an onnx file")
    (root / "uni" / "config.json").write_text('{"version_policy": {"all": {}}}')
    caplog.set_level(logging.INFO, logger="rnnserve")
    with _polling(root) as srv:
        shutil.copy(files["bi"], root / "later.onnx")  # seen only by a later scan
        assert wait_until(lambda: ("later", "1") in _index(srv.target))
        again = [r for r in caplog.records if r.getMessage() == "model version not loaded"]
        assert again == []  # the start-up line said it; the unchanged file was not retried
        assert _index(srv.target)[("uni", "2")] == ("UNAVAILABLE", "not a loadable ONNX model")
        assert _index(srv.target)[("uni", "1")] == ("READY", "")


def test_a_failed_version_whose_file_is_removed_is_no_longer_reported_as_failing(tmp_path, files):
    root = _repo(tmp_path / "repo", files)
    with _polling(root) as srv:
        (root / "uni" / "2").mkdir()
        (root / "uni" / "2" / "model.onnx").write_bytes(b"not an onnx file")
        (root / "broken.onnx").write_bytes(b"not an onnx file")
        failing = ("UNAVAILABLE", "not a loadable ONNX model")
        assert wait_until(lambda: _index(srv.target).get(("broken", "1")) == failing)
        assert _index(srv.target)[("uni", "2")] == failing
        shutil.rmtree(root / "uni" / "2")
        (root / "broken.onnx").unlink()
        gone = ("UNAVAILABLE", "removed from the repository")
        assert wait_until(lambda: _index(srv.target).get(("broken", "1")) == gone)
        assert _index(srv.target)[("uni", "2")] == (
            "UNAVAILABLE",
            "no longer in the repository's policy",
        )
        assert _index(srv.target)[("uni", "1")] == ("READY", "")


# ---------------------------------------------------------------- a model that loads but cannot run


def _batch_of_one_only(src: Path, out: Path) -> Path:
    """`src` with its intent logits reshaped to one row: it loads, and fails on two rows."""
    model = onnx.load(str(src))
    for node in model.graph.node:
        node.output[:] = ["raw" if o == INTENT_LOGITS else o for o in node.output]
    model.graph.initializer.append(helper.make_tensor("one_row", TensorProto.INT64, [2], [1, 3]))
    model.graph.node.append(helper.make_node("Reshape", ["raw", "one_row"], [INTENT_LOGITS]))
    onnx.save(model, str(out))
    return out


def test_a_version_that_fails_its_warm_up_runs_is_reported_not_fatal(tmp_path, files):
    bad = _batch_of_one_only(files["uni"], tmp_path / "bad.onnx")
    root = _repo(tmp_path / "repo", files)
    (root / "bad" / "1").mkdir(parents=True)
    shutil.copy(bad, root / "bad" / "1" / "model.onnx")
    settings = settings_for(
        DEFAULT_ONNX, model_repository=str(root), model_control_mode="explicit", warmup_runs=2
    )
    failing = ("UNAVAILABLE", "failed its warm-up runs")
    with RunningServer(settings) as srv, grpc.insecure_channel(srv.target) as ch:
        stub = v2_grpc.GRPCInferenceServiceStub(ch)
        assert _index(srv.target)[("bad", "1")] == failing  # at start: the others serve
        assert not stub.ModelReady(v2.ModelReadyRequest(name="bad"), timeout=5).ready
        assert _samples(srv)['rnnserve_model_ready{model="bad",version="1"}'] == 0
        (root / "late" / "1").mkdir(parents=True)
        shutil.copy(bad, root / "late" / "1" / "model.onnx")
        with pytest.raises(grpc.RpcError) as err:  # while serving: refused, not INTERNAL
            stub.RepositoryModelLoad(v2.RepositoryModelLoadRequest(model_name="late"), timeout=30)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "failed its warm-up runs" in err.value.details()
        assert str(tmp_path) not in err.value.details()
        assert _index(srv.target)[("late", "1")] == failing
        with Client(srv.target, timeout=10) as c:
            assert c.parse(TEXT, model="uni").model == "uni"
    out = _start("--model", str(bad), "--warmup-runs", "2")
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith(f"error: {bad}: failed its warm-up runs")


def test_load_and_unload_of_an_encoder_decoder_say_it_loads_at_start_only():
    settings = settings_for(DEFAULT_ONNX, model_repository="models", model_control_mode="explicit")
    with RunningServer(settings) as srv, grpc.insecure_channel(srv.target) as ch:
        stub = v2_grpc.GRPCInferenceServiceStub(ch)
        assert ("g2p.encoder", "1") in _index(srv.target)
        for name in ("g2p", "g2p.encoder", "g2p.step"):
            for call, request in (
                (stub.RepositoryModelLoad, v2.RepositoryModelLoadRequest),
                (stub.RepositoryModelUnload, v2.RepositoryModelUnloadRequest),
            ):
                with pytest.raises(grpc.RpcError) as err:
                    call(request(model_name=name), timeout=10)
                assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
                assert "loaded at start only" in err.value.details()
        assert stub.ModelReady(v2.ModelReadyRequest(name="g2p.encoder"), timeout=5).ready


def test_a_repository_of_an_encoder_decoder_alone_says_it_needs_another_model(tmp_path):
    shutil.copytree(ROOT / "models" / "g2p", tmp_path / "g2p")
    out = _start("--model-repository", str(tmp_path))
    assert out.returncode == 1
    assert _one_line(out) == (
        "error: the model repository holds no model besides any encoder-decoder (needs one)"
    )


def test_probes_arriving_all_the_time_do_not_hold_a_drain_open(files):
    stop = threading.Event()
    with RunningServer(settings_for(files["uni"])) as srv:
        assert srv.app is not None

        def probe() -> None:  # a balancer health-checking as fast as it can
            with grpc.insecure_channel(srv.target) as ch:
                stub = v2_grpc.GRPCInferenceServiceStub(ch)
                while not stop.is_set():
                    with contextlib.suppress(grpc.RpcError):  # UNAVAILABLE once it stops
                        stub.ServerReady(v2.ServerReadyRequest(), timeout=5)

        prober = threading.Thread(target=probe)
        prober.start()
        try:
            probes = 'rnnserve_requests_total{code="OK",method="ServerReady"}'
            assert wait_until(lambda: srv.metric(probes) > 20)
            srv.call(srv.app.drain(60), timeout=30)  # returns once no work is left, not at 60 s
        finally:
            stop.set()
            prober.join(10)


def test_an_open_health_watch_does_not_hold_a_drain_open(files):
    with RunningServer(settings_for(files["uni"])) as srv:
        assert srv.app is not None
        with grpc.insecure_channel(srv.target) as ch:
            watch = health_pb2_grpc.HealthStub(ch).Watch(
                health_pb2.HealthCheckRequest(service=""), timeout=60
            )
            assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
            srv.call(srv.app.drain(60), timeout=30)  # returns once no work is left, not at 60 s
            assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
