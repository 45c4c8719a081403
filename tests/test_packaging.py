"""Packaging contracts: fresh stubs, what the serving path must never import, the commands."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from importlib.metadata import entry_points
from pathlib import Path

from .conftest import ROOT

PROTOS = ["rnnserve/v1/rnnserve.proto", "rnnserve/kserve/grpc_predict_v2.proto"]
SCRIPTS = {"rnnserve": "client.__main__:main", "rnnserve-server": "server.__main__:main"}


def test_generated_stubs_are_fresh(tmp_path):
    from grpc_tools import protoc

    args = [
        "protoc",
        f"-I{ROOT / 'proto'}",
        f"--python_out={tmp_path}",
        f"--grpc_python_out={tmp_path}",
        f"--pyi_out={tmp_path}",
    ]
    assert protoc.main(args + [str(ROOT / "proto" / p) for p in PROTOS]) == 0
    generated = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert len(generated) == 6
    for rel in generated:
        committed = ROOT / rel
        assert committed.exists(), f"{rel} is not committed: run make proto"
        assert committed.read_bytes() == (tmp_path / rel).read_bytes(), (
            f"{rel} is stale: make proto"
        )


def _imported(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return {m.split(".")[0] for m in out.stdout.split()}


def test_server_never_imports_torch():
    mods = _imported("import server.app, server.__main__")
    assert "torch" not in mods and "onnxruntime" in mods


def test_client_needs_neither_torch_nor_onnxruntime_nor_numpy():
    mods = _imported("import client, client.__main__")
    assert not {"torch", "onnxruntime", "numpy"} & mods


def test_console_scripts_are_the_two_mains():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert declared == SCRIPTS
    installed = {ep.name: ep for ep in entry_points(group="console_scripts") if ep.name in SCRIPTS}
    assert {name: ep.value for name, ep in installed.items()} == SCRIPTS, (
        "stale install: make install"
    )
    for ep in installed.values():
        assert callable(ep.load()), ep.value


def test_installed_scripts_run_outside_the_checkout(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    bindir = Path(sys.executable).parent

    def run(*args: str) -> subprocess.CompletedProcess:
        script = bindir / args[0]
        assert script.is_file(), f"no {script}: make install"
        cmd = [str(script), *args[1:]]
        return subprocess.run(
            cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
        )

    client_help = run("rnnserve", "--help")
    assert client_help.returncode == 0, client_help.stderr
    assert client_help.stdout.startswith("usage: rnnserve [-h] {parse,stream,generate,info,health}")
    server_help = run("rnnserve-server", "--help")
    assert server_help.returncode == 0, server_help.stderr
    assert server_help.stdout.startswith("usage: ") and "--model" in server_help.stdout
    bad = run("rnnserve", "health", "--timeout=0")
    assert bad.returncode == 2 and bad.stderr.startswith("error: argument --timeout: ")


def test_server_modules_stay_small_and_name_no_tensor():
    """One job per module: none over 300 lines; tensor names come from modelspec only."""
    tensors = ('"input_ids"', '"lengths"', '"h0"', '"c0"', '"h_n"', '"c_n"', '"slot_logits"')
    for path in sorted((ROOT / "server").glob("*.py")):
        text = path.read_text()
        assert len(text.splitlines()) <= 300, path.name
        assert not [t for t in tensors if t in text], path.name
