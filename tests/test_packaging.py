"""Packaging contracts: fresh stubs, and what the serving path must never import."""

from __future__ import annotations

import subprocess
import sys

from .conftest import ROOT

PROTOS = ["rnnserve/v1/rnnserve.proto", "rnnserve/kserve/grpc_predict_v2.proto"]


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
