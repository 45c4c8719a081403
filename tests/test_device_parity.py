"""The device-parity probe: on CPU the figures it measures are exact, on CUDA within the targets."""

from __future__ import annotations

import grpc
import numpy as np
import onnxruntime as ort
import pytest

from client import Client
from rnnserve.kserve import grpc_predict_v2_pb2 as v2
from rnnserve.kserve import grpc_predict_v2_pb2_grpc as v2_grpc
from server import device_parity, runtime
from tests.conftest import DEFAULT_ONNX
from tests.serving import RunningServer, settings_for


def _reported(settings) -> tuple[dict[str, str], tuple[float, float]]:
    """The v2 ModelConfig parameters and the typed ModelInfo's two device figures."""
    with RunningServer(settings) as srv, grpc.insecure_channel(srv.target) as ch:
        cfg = v2_grpc.GRPCInferenceServiceStub(ch).ModelConfig(
            v2.ModelConfigRequest(name="intent"), timeout=5
        )
        with Client(srv.target) as client:
            info = client.info()
    params = {k: v.string_value for k, v in cfg.config.parameters.items()}
    return params, (info.device_max_abs_diff_vs_cpu, info.device_max_abs_diff_alone_vs_batch)


def test_the_probe_mixes_lengths_within_the_vocabulary():
    vocab = len(runtime.ModelRuntime(DEFAULT_ONNX).meta.vocab)
    rows = device_parity.probe_rows(vocab)
    assert [len(r) for r in rows] == list(device_parity.PROBE_LENGTHS)
    assert all(r.min() >= 3 and r.max() < vocab for r in rows)
    again = device_parity.probe_rows(vocab)
    assert all(np.array_equal(a, b) for a, b in zip(rows, again))  # seeded: the same each load


def test_a_cpu_model_reports_no_device_figures():
    assert device_parity.check(runtime.ModelRuntime(DEFAULT_ONNX, device="cpu")) is None
    params, figures = _reported(settings_for(DEFAULT_ONNX, device="cpu"))
    assert params["execution_provider"] == runtime.CPU
    assert not any(k.startswith("device_max_abs_diff") for k in params)
    assert figures == (0.0, 0.0)


def test_on_cpu_rows_alone_equal_the_padded_batch_and_two_sessions_agree():
    a = runtime.ModelRuntime(DEFAULT_ONNX, device="cpu")
    b = runtime.ModelRuntime(DEFAULT_ONNX, device="cpu")
    figures = device_parity.measure(a, b)
    assert figures.provider == runtime.CPU
    assert figures.max_abs_diff_vs_cpu == 0.0
    assert figures.max_abs_diff_alone_vs_batch <= 1e-5


@pytest.mark.gpu
@pytest.mark.skipif(
    runtime.CUDA not in ort.get_available_providers(), reason="needs the CUDA provider"
)
def test_cuda_without_tf32_is_within_the_targets():
    rt = runtime.ModelRuntime(DEFAULT_ONNX, device="cuda")
    figures = device_parity.check(rt)
    assert figures is not None and figures.provider == runtime.CUDA
    assert figures.max_abs_diff_vs_cpu <= 1e-4
    assert figures.max_abs_diff_alone_vs_batch <= 2e-5
    params, (vs_cpu, alone) = _reported(settings_for(DEFAULT_ONNX, device="cuda"))
    assert float(params["device_max_abs_diff_vs_cpu"]) <= 1e-4
    assert float(params["device_max_abs_diff_alone_vs_batch"]) <= 2e-5
    assert vs_cpu == pytest.approx(figures.max_abs_diff_vs_cpu, rel=0.5, abs=1e-6)
    assert 0.0 <= alone <= 2e-5
