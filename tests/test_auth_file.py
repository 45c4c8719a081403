"""The bearer-token file fails closed: emptied, unreadable or not UTF-8, it denies every call."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from prometheus_client import generate_latest

from client import Client, RnnServeError
from rnnserve.kserve import grpc_predict_v2_pb2 as v2
from rnnserve.kserve import grpc_predict_v2_pb2_grpc as v2_grpc
from server.auth import TokenStore
from server.metrics import Metrics

from .conftest import DEFAULT_ONNX, ROOT
from .serving import ENV, RunningServer, ServerProcess, settings_for

TOKENS = ("file-token-one", "file-token-two")
NO_TOKENS = "no tokens (one per line)"


def _rewrite(path: Path, data: bytes) -> None:
    """New content with a later mtime than before, so the change is seen however soon it comes."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_bytes(data)
    mtime = max(path.stat().st_mtime_ns, before + 1_000_000)
    os.utime(path, ns=(mtime, mtime))


def _tokens_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens"
    path.write_text("# accepted tokens\n" + "\n".join(TOKENS) + "\n")
    return path


def _parse_code(target: str, token: str | None) -> str:
    with Client(target, token=token, timeout=5, retries=False) as c:
        try:
            c.parse("what time is it")
        except RnnServeError as err:
            return err.code
        return "OK"


def _all_denied(target: str) -> None:
    """Every token is refused on the typed API and on KServe v2; health still answers."""
    for token in TOKENS:
        assert _parse_code(target, token) == "PERMISSION_DENIED"
        with Client(target, token=token, timeout=5, retries=False) as c:
            with pytest.raises(RnnServeError) as err:
                c.info()
            assert err.value.code == "PERMISSION_DENIED"
            assert c.health() == "SERVING"
    with grpc.insecure_channel(target) as ch:
        stub = v2_grpc.GRPCInferenceServiceStub(ch)
        with pytest.raises(grpc.RpcError) as rpc:
            stub.ModelMetadata(
                v2.ModelMetadataRequest(name="intent"),
                metadata=[("authorization", f"Bearer {TOKENS[0]}")],
                timeout=5,
            )
        assert rpc.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert _parse_code(target, None) == "UNAUTHENTICATED"


def _warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "rnnserve.auth" and r.levelno >= logging.WARNING]


@pytest.fixture
def token_server(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="rnnserve")
    path = _tokens_file(tmp_path)
    with RunningServer(settings_for(DEFAULT_ONNX, auth_token_file=str(path))) as srv:
        assert _parse_code(srv.target, TOKENS[0]) == "OK"
        yield srv, path


def test_a_file_left_with_only_comments_revokes_every_token(token_server, caplog):
    srv, path = token_server
    _rewrite(path, b"# every token revoked\n\n")
    _all_denied(srv.target)
    _all_denied(srv.target)
    (warning,) = _warnings(caplog)
    assert warning.reason == NO_TOKENS and warning.path == str(path)
    assert all(t not in caplog.text for t in TOKENS)
    _rewrite(path, f"{TOKENS[1]}\n".encode())
    assert _parse_code(srv.target, TOKENS[1]) == "OK"
    assert _parse_code(srv.target, TOKENS[0]) == "PERMISSION_DENIED"


def test_a_file_that_is_not_utf8_denies_every_call_rather_than_failing_it(token_server, caplog):
    srv, path = token_server
    _rewrite(path, TOKENS[0].encode() + b"\n\xff\xfe" + TOKENS[1].encode() + b"\n")
    _all_denied(srv.target)
    (warning,) = _warnings(caplog)
    assert warning.reason.startswith("the token file is not UTF-8")
    assert all(t not in caplog.text for t in TOKENS)
    _rewrite(path, "\n".join(TOKENS).encode())
    assert _parse_code(srv.target, TOKENS[0]) == "OK"


def test_an_unreadable_file_denies_every_call_until_it_is_readable_again(token_server, caplog):
    srv, path = token_server
    path.unlink()
    _all_denied(srv.target)
    path.mkdir()  # present, but not a file that can be read
    _all_denied(srv.target)
    reasons = [w.reason for w in _warnings(caplog)]
    assert len(reasons) == 2 and all(r.startswith("cannot read the token file") for r in reasons)
    path.rmdir()
    _rewrite(path, f"{TOKENS[0]}\n".encode())
    assert _parse_code(srv.target, TOKENS[0]) == "OK"


def test_the_warning_is_one_json_line_that_never_holds_a_token(tmp_path):
    path = _tokens_file(tmp_path)
    srv = ServerProcess("--model", str(DEFAULT_ONNX), "--auth-token-file", str(path))
    try:
        assert _parse_code(srv.target, TOKENS[0]) == "OK"
        _rewrite(path, b"# revoked\n")
        for _ in range(3):
            assert _parse_code(srv.target, TOKENS[0]) == "PERMISSION_DENIED"
    finally:
        rc, records = srv.stop()
    assert rc == 0
    warnings = [r for r in records if r["level"] == "warning" and r["logger"] == "rnnserve.auth"]
    assert [(w["path"], w["reason"]) for w in warnings] == [(str(path), NO_TOKENS)]
    everything = "".join(srv.rest) + repr(srv.lines)
    assert all(t not in everything for t in TOKENS)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"# tokens go here\n\n", NO_TOKENS),
        (b"file-token-one\n\xff\n", "the token file is not UTF-8 (byte 15)"),
        (None, "cannot read the token file (No such file or directory)"),
        (
            b"file-token-one\ncaf\xc3\xa9\n",
            "line 2: a token must be printable ASCII (as gRPC sends)",
        ),
        (b"tab\ttoken\n", "line 1: a token must be printable ASCII (as gRPC sends)"),
    ],
)
def test_an_unusable_file_at_start_up_is_a_one_line_error(tmp_path, content, reason):
    path = tmp_path / "tokens"
    if content is not None:
        path.write_bytes(content)
    args = ["--model", str(DEFAULT_ONNX), "--port", "0", "--metrics-port", "-1"]
    out = subprocess.run(
        [sys.executable, "-m", "server", *args, "--auth-token-file", str(path)],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    assert out.stderr.splitlines() == [f"error: {path}: {reason}"]


def test_a_token_file_starting_with_a_byte_order_mark_is_read(tmp_path):
    path = tmp_path / "tokens"
    path.write_bytes(b"\xef\xbb\xbf" + TOKENS[0].encode() + b"\r\n")
    with RunningServer(settings_for(DEFAULT_ONNX, auth_token_file=str(path))) as srv:
        assert _parse_code(srv.target, TOKENS[0]) == "OK"
        assert _parse_code(srv.target, TOKENS[1]) == "PERMISSION_DENIED"


def test_the_token_count_reaches_the_gauge(tmp_path):
    metrics = Metrics()
    path = _tokens_file(tmp_path)
    store = TokenStore(path, on_change=metrics.auth_tokens.set)

    def gauge() -> float:
        for line in generate_latest(metrics.registry).decode().splitlines():
            if line.startswith("rnnserve_auth_tokens "):
                return float(line.split()[1])
        raise AssertionError("no rnnserve_auth_tokens sample")

    assert gauge() == 2
    _rewrite(path, b"# revoked\n")
    assert not store.check(TOKENS[0].encode()) and gauge() == 0
    _rewrite(path, b"\xff")
    assert not store.check(TOKENS[0].encode()) and gauge() == 0
    _rewrite(path, f"{TOKENS[0]}\n".encode())
    assert store.check(TOKENS[0].encode()) and gauge() == 1
