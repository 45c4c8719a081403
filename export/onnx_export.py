"""Trace IntentSlotRNN to ONNX (TorchScript exporter, native RNN/LSTM/GRU nodes)."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from export.model import IntentSlotRNN
from export.onnx_dispatch import dispatch
from modelspec.io import IOSpec, TensorSpec
from modelspec.names import (
    BATCH_AXIS,
    C0,
    CONTEXT,
    GRU,
    H0,
    INPUT_IDS,
    INTENT_LOGITS,
    LENGTHS,
    LSTM,
    OUTPUTS,
    RNN,
    SLOT_LOGITS,
    TIME_AXIS,
    has_cell_state,
    input_names,
    output_names,
)

OPSET = 17
# The tensors with a time axis: [batch, time, ...].
PER_STEP = (INPUT_IDS, CONTEXT, OUTPUTS, SLOT_LOGITS)
RECURRENT_OPS = {RNN: "RNN", LSTM: "LSTM", GRU: "GRU"}


class ExportError(RuntimeError):
    """The exported graph does not have the promised shape or operators."""


_DTYPES: dict[int, str] = {
    onnx.TensorProto.INT64: "int64",
    onnx.TensorProto.FLOAT: "float32",
    onnx.TensorProto.INT32: "int32",
}


def _spec(value_info: onnx.ValueInfoProto, optional: bool) -> TensorSpec:
    t = value_info.type.tensor_type
    shape = tuple(d.dim_param if d.dim_param else d.dim_value for d in t.shape.dim)
    return TensorSpec(value_info.name, _DTYPES.get(t.elem_type, str(t.elem_type)), shape, optional)


def _dynamic_axes(cell: str, context: bool) -> dict[str, dict[int, str]]:
    """The batch and time axes of every graph input and output, by name."""
    axes: dict[str, dict[int, str]] = {}
    for name in input_names(cell, context) + output_names(cell):
        if name in PER_STEP:
            axes[name] = {0: BATCH_AXIS, 1: TIME_AXIS}
        elif name in (LENGTHS, INTENT_LOGITS):
            axes[name] = {0: BATCH_AXIS}
        else:  # a state: [layers x directions, batch, hidden]
            axes[name] = {1: BATCH_AXIS}
    return axes


class _Positional(torch.nn.Module):
    """The model (or one of its answers: `plain_answer`, `context_answer`) with its graph
    inputs as positional arguments: (ids, lengths, h0[, c0], context) — a GRU's forward has
    no c0 before the context."""

    def __init__(self, model: IntentSlotRNN, answer: str = "") -> None:
        super().__init__()
        self.model = model
        self.answer = answer

    def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if has_cell_state(self.model.config.cell):
            ids, lengths, h0, c0, context = args
        else:
            (ids, lengths, h0, context), c0 = args, None
        if self.answer == "plain_answer":
            return self.model.plain_answer(ids, lengths, h0, c0)
        if self.answer == "context_answer":
            return self.model.context_answer(ids, lengths, h0, c0, context)
        return self.model(ids, lengths, h0, c0, context)


def to_onnx(model: IntentSlotRNN, opset: int = OPSET) -> onnx.ModelProto:
    """Trace the model and return the ONNX graph with h0/c0 (and the context input) made
    optional (zero default). A model with a fallback network becomes the dispatching graph of
    export/onnx_dispatch.py."""
    if not model.config.fallback:
        proto = _trace(model, opset)
    else:
        pair, plain, own = (_trace(model, opset, a) for a in ("", "plain_answer", "context_answer"))
        proto = dispatch(pair, plain, own)
    check_graph(proto, model.config.cell)
    return proto


def _trace(model: IntentSlotRNN, opset: int, answer: str = "") -> onnx.ModelProto:
    model.eval()
    cfg = model.config
    context = cfg.context_dim > 0
    # Lengths sorted and shorter than time, so the trace includes the padding path.
    ids = torch.randint(1, cfg.vocab_size, (2, 5))
    lengths = torch.tensor([5, 3])
    args: tuple[torch.Tensor, ...] = (ids, lengths, model.zero_state(1))
    if has_cell_state(cfg.cell):
        args += (model.zero_state(1),)
    if context:
        args += (torch.rand(2, 5, cfg.context_dim).round(),)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Positional(model, answer).eval() if context else model,  # export restores its mode
            args,
            buf,  # type: ignore[arg-type]
            input_names=input_names(cfg.cell, context),
            output_names=output_names(cfg.cell),
            dynamic_axes=_dynamic_axes(cfg.cell, context),
            opset_version=opset,
            dynamo=False,
            do_constant_folding=True,
        )
    proto = onnx.load_from_string(buf.getvalue())
    _make_state_optional(proto, model)
    return proto


def _make_state_optional(proto: onnx.ModelProto, model: IntentSlotRNN) -> None:
    """Give h0 (and c0) a zero initializer of batch 1, and the context input one of batch 1
    and time 1: onnxruntime then treats the input as optional, and the graph broadcasts the
    default to the batch (and the time)."""
    ld, h = model.config.state_shape
    defaults = {H0: (ld, 1, h), C0: (ld, 1, h), CONTEXT: (1, 1, model.config.context_dim)}
    for name, shape in defaults.items():
        if any(i.name == name for i in proto.graph.input):
            proto.graph.initializer.append(
                numpy_helper.from_array(np.zeros(shape, dtype=np.float32), name)
            )


def check_graph(proto: onnx.ModelProto, cell: str) -> None:
    """Raise ExportError unless the graph has native recurrent nodes and symbolic batch/time."""
    onnx.checker.check_model(proto)
    ops = {n.op_type for n in _nodes(proto.graph)}
    if RECURRENT_OPS[cell] not in ops:
        raise ExportError(f"graph has no native {RECURRENT_OPS[cell]} node (ops: {sorted(ops)})")
    for vi in list(proto.graph.input) + list(proto.graph.output):
        dims = vi.type.tensor_type.shape.dim
        if vi.name in PER_STEP and not (dims[0].dim_param and dims[1].dim_param):
            raise ExportError(f"{vi.name}: batch and time axes must be symbolic")


def _nodes(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """Every node of the graph and of its subgraphs (If branches)."""
    out = []
    for n in graph.node:
        out.append(n)
        for a in n.attribute:
            if a.HasField("g"):
                out.extend(_nodes(a.g))
    return out


def io_spec(proto: onnx.ModelProto) -> IOSpec:
    """The graph's I/O spec (inputs with an initializer are optional)."""
    inits = {i.name for i in proto.graph.initializer}
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    return IOSpec(
        tuple(_spec(v, v.name in inits) for v in proto.graph.input),
        tuple(_spec(v, False) for v in proto.graph.output),
        opset,
    )


def export_onnx(model: IntentSlotRNN, path: str | Path, opset: int = OPSET) -> IOSpec:
    """Export to `path` and return the I/O spec."""
    proto = to_onnx(model, opset)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(path))
    return io_spec(proto)


def embed_metadata(path: str | Path, key: str, value: str) -> None:
    """Write one metadata_props entry into an ONNX file (replacing an old one) and re-check it."""
    proto = onnx.load(str(path))
    kept = [p for p in proto.metadata_props if p.key != key]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    proto.metadata_props.add(key=key, value=value)
    proto.producer_name = "rnnserve"
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
