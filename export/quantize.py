"""int8 dynamic quantization of an exported model, with its accuracy and agreement."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from export.data import Example
from export.onnx_eval import evaluate_onnx
from modelspec.meta import ModelMetadata


def quantize(src: str | Path, dst: str | Path) -> None:
    """Pre-process (shape inference) then quantize weights to int8 (dynamic activations)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        quantize_dynamic(
            str(pre),
            str(dst),
            weight_type=QuantType.QInt8,
            extra_options={"EnableSubgraph": True},  # a fallback model's If branches
        )


def compare(
    float_path: str | Path, int8_path: str | Path, examples: Sequence[Example], meta: ModelMetadata
) -> dict[str, Any]:
    """Task metrics of both models and how often their predictions agree."""
    fm, fi, ft = evaluate_onnx(float_path, examples, meta)
    qm, qi, qt = evaluate_onnx(int8_path, examples, meta)
    n_tags = sum(len(t) for t in ft)
    return {
        "float": {k: fm[k] for k in ("intent_accuracy", "slot_f1")},
        "int8": {k: qm[k] for k in ("intent_accuracy", "slot_f1")},
        "intent_agreement": sum(a == b for a, b in zip(fi, qi)) / max(1, len(fi)),
        "tag_agreement": sum(x == y for a, b in zip(ft, qt) for x, y in zip(a, b)) / max(1, n_tags),
        "float_bytes": Path(float_path).stat().st_size,
        "int8_bytes": Path(int8_path).stat().st_size,
    }
