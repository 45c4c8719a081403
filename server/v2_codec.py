"""KServe v2 messages <-> plain types: request tensors to numpy, results and models to messages.

No onnxruntime here; the model's I/O contract comes from modelspec via the ServedModel.
"""

from __future__ import annotations

import math

import numpy as np

from modelspec.io import DATATYPE_NAMES, TensorSpec
from rnnserve.kserve import grpc_predict_v2_pb2 as pb
from server.errors import InvalidArgument
from server.model import ServedModel
from server.requests import InferInput, InferResult, ModelVersion, SequenceRef

PLATFORM = "onnxruntime_onnx"

# v2 datatype -> (numpy dtype, InferTensorContents field); raw contents are little-endian.
DATATYPES: dict[str, tuple[np.dtype, str]] = {
    name: (np.dtype(kind).newbyteorder("<"), field)
    for name, kind, field in (
        ("BOOL", np.bool_, "bool_contents"),
        ("INT8", np.int8, "int_contents"),
        ("INT16", np.int16, "int_contents"),
        ("INT32", np.int32, "int_contents"),
        ("INT64", np.int64, "int64_contents"),
        ("UINT8", np.uint8, "uint_contents"),
        ("UINT16", np.uint16, "uint_contents"),
        ("UINT32", np.uint32, "uint_contents"),
        ("UINT64", np.uint64, "uint64_contents"),
        ("FP32", np.float32, "fp32_contents"),
        ("FP64", np.float64, "fp64_contents"),
    )
}
CONFIG_TYPES = {"int64": pb.TYPE_INT64, "float32": pb.TYPE_FP32}


def _array(tensor: pb.ModelInferRequest.InferInputTensor, raw: bytes | None) -> np.ndarray:
    if tensor.datatype not in DATATYPES:
        raise InvalidArgument(
            f"input {tensor.name!r}: datatype {tensor.datatype or 'empty'} is not supported"
        )
    shape = list(tensor.shape)
    if any(d < 0 for d in shape):
        raise InvalidArgument(f"input {tensor.name!r} has a negative dimension: {shape}")
    count = math.prod(shape)
    dtype, field = DATATYPES[tensor.datatype]
    if raw is not None:
        want = count * dtype.itemsize
        if len(raw) != want:
            raise InvalidArgument(
                f"input {tensor.name!r}: {len(raw)} raw bytes for shape {shape} ({want} expected)"
            )
        arr = np.frombuffer(raw, dtype=dtype)
        if not dtype.isnative:  # a big-endian host: native order for onnxruntime
            arr = arr.astype(dtype.newbyteorder("="))
    else:
        kinds = [f.name for f, _ in tensor.contents.ListFields()]
        if len(kinds) > 1 or (kinds and kinds[0] != field):
            raise InvalidArgument(
                f"input {tensor.name!r} is {tensor.datatype}: its values go in {field} "
                f"alone, not {' and '.join(kinds)}"
            )
        values = getattr(tensor.contents, field)
        if len(values) != count:
            raise InvalidArgument(f"input {tensor.name!r}: {len(values)} values for shape {shape}")
        arr = np.asarray(values, dtype=dtype.newbyteorder("="))
    return arr.reshape(shape)


def _sequence(req: pb.ModelInferRequest) -> SequenceRef | None:
    """(sequence id, start, end) from the request parameters, or None."""
    params = req.parameters
    if "sequence_id" not in params:
        for key in ("sequence_start", "sequence_end"):
            if key in params:
                raise InvalidArgument(f"parameter {key!r} needs a sequence_id")
        return None
    p = params["sequence_id"]
    which = p.WhichOneof("parameter_choice")
    if which in ("int64_param", "uint64_param"):
        key = str(getattr(p, which))
    elif which == "string_param":
        key = p.string_param
    else:
        raise InvalidArgument("parameter 'sequence_id' must be an integer or a string")
    if key in ("", "0"):
        raise InvalidArgument("sequence_id 0 or empty does not name a sequence")

    def flag(name: str) -> bool:
        if name not in params:
            return False
        q = params[name]
        if q.WhichOneof("parameter_choice") != "bool_param":
            raise InvalidArgument(f"parameter {name!r} must be a bool")
        return bool(q.bool_param)

    return SequenceRef(key, flag("sequence_start"), flag("sequence_end"))


def _output(out: pb.ModelInferRequest.InferRequestedOutputTensor) -> str:
    """A requested output's name; parameters that would change the answer are refused."""
    if "classification" in out.parameters:
        raise InvalidArgument(
            f"output {out.name!r}: classification is not supported; the answer is the raw tensor"
        )
    return out.name


def infer_input(req: pb.ModelInferRequest) -> InferInput:
    """A ModelInferRequest as plain tensors (shape, datatype and byte counts checked)."""
    raw = list(req.raw_input_contents)
    if raw and len(raw) != len(req.inputs):
        raise InvalidArgument(
            f"raw_input_contents has {len(raw)} entries for {len(req.inputs)} inputs"
        )
    feeds: dict[str, np.ndarray] = {}
    for i, tensor in enumerate(req.inputs):
        if tensor.name in feeds:
            raise InvalidArgument(f"input {tensor.name!r} appears twice")
        if raw and tensor.HasField("contents"):
            raise InvalidArgument(
                f"input {tensor.name!r} has contents as well as raw_input_contents; send one"
            )
        feeds[tensor.name] = _array(tensor, raw[i] if raw else None)
    return InferInput(
        model=req.model_name,
        version=req.model_version,
        feeds=feeds,
        outputs=[_output(o) for o in req.outputs],
        sequence=_sequence(req),
    )


def infer_response(result: InferResult, request_id: str) -> pb.ModelInferResponse:
    """Outputs as raw little-endian FP32 tensors."""
    resp = pb.ModelInferResponse(
        model_name=result.model, model_version=result.version, id=request_id
    )
    for name, arr in result.outputs.items():
        a = np.ascontiguousarray(arr, dtype="<f4")
        resp.outputs.add(name=name, datatype="FP32", shape=list(a.shape))
        resp.raw_output_contents.append(a.tobytes())
    return resp


def _tensor_meta(t: TensorSpec) -> pb.ModelMetadataResponse.TensorMetadata:
    return pb.ModelMetadataResponse.TensorMetadata(
        name=t.name, datatype=DATATYPE_NAMES[t.dtype], shape=t.dims
    )


def model_metadata(model: ServedModel, versions: list[str]) -> pb.ModelMetadataResponse:
    """The model's tensors (-1 marks a dynamic dimension) and its ready versions."""
    spec = model.validator.spec
    return pb.ModelMetadataResponse(
        name=model.name,
        versions=versions,
        platform=PLATFORM,
        inputs=[_tensor_meta(t) for t in spec.inputs],
        outputs=[_tensor_meta(t) for t in spec.outputs],
    )


def model_config(model: ServedModel) -> pb.ModelConfigResponse:
    """A Triton-style model configuration (what perf_analyzer and Triton clients read).

    Rows are batched inside the server, and the tensors' dims include the batch axis, so
    max_batch_size is 0; Triton forbids dynamic_batching with it, so the batcher's settings
    travel as parameters.
    """
    spec = model.validator.spec
    gpu = model.provider.startswith("CUDA")
    kind = pb.ModelInstanceGroup.KIND_GPU if gpu else pb.ModelInstanceGroup.KIND_CPU
    cfg = pb.ModelConfig(
        name=model.name,
        platform=PLATFORM,
        backend="onnxruntime",
        max_batch_size=0,
        input=[
            pb.ModelInput(
                name=t.name, data_type=CONFIG_TYPES[t.dtype], dims=t.dims, optional=t.optional
            )
            for t in spec.inputs
        ],
        output=[
            pb.ModelOutput(name=t.name, data_type=CONFIG_TYPES[t.dtype], dims=t.dims)
            for t in spec.outputs
        ],
        instance_group=[pb.ModelInstanceGroup(name=model.name, count=model.instances, kind=kind)],
    )
    batching = model.batching
    if model.streaming:  # unidirectional: Triton tools drive it as a sequence model
        idle_us = int(model.limits.sequence_idle_timeout * 1e6)
        cfg.sequence_batching.max_sequence_idle_microseconds = idle_us
        cfg.sequence_batching.direct.max_queue_delay_microseconds = batching.max_batch_delay_us
    config = model.meta.config
    params = {
        "cell": model.cell,
        "bidirectional": str(model.bidirectional).lower(),
        "num_layers": str(config["num_layers"]),
        "hidden_size": str(config["hidden_size"]),
        "execution_provider": model.provider,
        "max_batch_rows": str(model.limits.max_batch_rows),
    }
    if model.runtime.tf32 is not None:  # a CUDA session: TF32 matmuls or exact float32
        params["cuda_tf32"] = str(model.runtime.tf32).lower()
    if model.device_parity is not None:  # measured at load against a CPU session
        figures = model.device_parity
        params["device_max_abs_diff_vs_cpu"] = f"{figures.max_abs_diff_vs_cpu:.3g}"
        params["device_max_abs_diff_alone_vs_batch"] = f"{figures.max_abs_diff_alone_vs_batch:.3g}"
    if batching.max_batch_size > 1:
        params["dynamic_batching.max_batch_size"] = str(batching.max_batch_size)
        params["dynamic_batching.max_queue_delay_microseconds"] = str(batching.max_batch_delay_us)
    for key, value in params.items():
        cfg.parameters[key].string_value = value
    return pb.ModelConfigResponse(config=cfg)


def repository_index(entries: list[ModelVersion]) -> pb.RepositoryIndexResponse:
    """Triton's repository index: every model version with its state and reason."""
    index = pb.RepositoryIndexResponse.ModelIndex
    return pb.RepositoryIndexResponse(
        models=[
            index(name=e.name, version=e.version, state=e.state, reason=e.reason) for e in entries
        ]
    )
