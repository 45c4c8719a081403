"""The prepared device checks (`python -m bench.device`) run on any machine: the parts whose
hardware is missing say so, the others measure."""

from __future__ import annotations

import json

from bench import device


def test_the_device_checks_measure_what_the_machine_has(tmp_path):
    assert device.main(["--out", str(tmp_path), "--seconds", "0.2", "--workers", "64"]) == 0
    results = json.loads((tmp_path / "device.json").read_text())
    if device.cuda_available():
        assert set(results["exactness"]) == {"tf32_off", "tf32_on"}
        assert results["exactness"]["tf32_off"]["session_tf32"] is False
    else:
        assert "no CUDA provider" in results["exactness"]["skipped"]
    cpu = results["batch_costs"]["cpu"]
    assert [r["batch"] for r in cpu] == list(device.BATCHES)
    assert all(r["p50_us"] > 0 and r["seq_per_s"] > 0 for r in cpu)
    assert results["workers"]["points"] == [{"workers": 64, "skipped": "needs 128 cores"}]
    assert "| cpu | 512 |" in (tmp_path / "device.md").read_text()
