"""KServe v2 / Open Inference Protocol (inference.GRPCInferenceService): tensors <-> numpy."""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator

import numpy as np

from rnnserve.kserve import grpc_predict_v2_pb2 as pb
from rnnserve.kserve import grpc_predict_v2_pb2_grpc as pb_grpc
from server.dataplane import DataPlane
from server.errors import INTERNAL_MESSAGE, InvalidArgument, NotFound, ServeError
from server.runtime import ModelRuntime, TensorInfo

log = logging.getLogger("rnnserve.kserve")

SERVER_NAME = "rnnserve"
SERVER_VERSION = "0.1.0"
PLATFORM = "onnxruntime_onnx"
VERSION = "1"

# v2 datatype -> (numpy dtype, InferTensorContents field)
DATATYPES: dict[str, tuple[type, str]] = {
    "BOOL": (np.bool_, "bool_contents"),
    "INT8": (np.int8, "int_contents"),
    "INT16": (np.int16, "int_contents"),
    "INT32": (np.int32, "int_contents"),
    "INT64": (np.int64, "int64_contents"),
    "UINT8": (np.uint8, "uint_contents"),
    "UINT16": (np.uint16, "uint_contents"),
    "UINT32": (np.uint32, "uint_contents"),
    "UINT64": (np.uint64, "uint64_contents"),
    "FP32": (np.float32, "fp32_contents"),
    "FP64": (np.float64, "fp64_contents"),
}
NP_TO_V2 = {"int64": "INT64", "float32": "FP32"}
CONFIG_TYPES = {"int64": pb.TYPE_INT64, "float32": pb.TYPE_FP32}
# What each input accepts (cast to the model's dtype after the check).
ACCEPTED = {"int64": ("INT64", "INT32"), "float32": ("FP32",)}


def _dims(info: TensorInfo) -> list[int]:
    return [d if isinstance(d, int) else -1 for d in info.shape]


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """The v2 protocol over the same data plane as the typed API."""

    def __init__(
        self,
        plane: DataPlane,
        instances: int,
        max_batch_rows: int,
        batch_size: int = 1,
        batch_delay_us: int = 0,
    ) -> None:
        self.plane = plane
        self.instances = instances
        self.max_batch_rows = max_batch_rows
        self.batch_size = batch_size
        self.batch_delay_us = batch_delay_us

    # ------------------------------------------------------------------ health and metadata

    async def ServerLive(self, request, context):  # noqa: N802
        """The process is up."""
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request, context):  # noqa: N802
        """Every model is loaded and warm, and the server is not draining."""
        return pb.ServerReadyResponse(ready=self.plane.ready and not self.plane.draining)

    def _model(self, name: str, version: str) -> ModelRuntime:
        rt = self.plane.models.get(name)
        if rt is None:
            raise NotFound(f"unknown model {name!r}")
        if version not in ("", VERSION):
            raise NotFound(f"model {name!r} has no version {version!r} (versions: {VERSION})")
        return rt

    async def ModelReady(self, request, context):  # noqa: N802
        """Whether this model can take requests."""
        self._model(request.name, request.version)
        return pb.ModelReadyResponse(ready=self.plane.ready and not self.plane.draining)

    async def ServerMetadata(self, request, context):  # noqa: N802
        """Name, version, protocol extensions."""
        return pb.ServerMetadataResponse(
            name=SERVER_NAME, version=SERVER_VERSION, extensions=["model_configuration"]
        )

    async def ModelMetadata(self, request, context):  # noqa: N802
        """The model's tensors (-1 marks a dynamic dimension)."""
        rt = self._model(request.name, request.version)
        meta = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=rt.name,
            versions=[VERSION],
            platform=PLATFORM,
            inputs=[
                meta(name=t.name, datatype=NP_TO_V2[t.dtype], shape=_dims(t)) for t in rt.inputs
            ],
            outputs=[
                meta(name=t.name, datatype=NP_TO_V2[t.dtype], shape=_dims(t)) for t in rt.outputs
            ],
        )

    async def ModelConfig(self, request, context):  # noqa: N802
        """A Triton-style model configuration (what perf_analyzer and Triton clients read)."""
        rt = self._model(request.name, request.version)
        gpu = rt.provider.startswith("CUDA")
        cfg = pb.ModelConfig(
            name=rt.name,
            platform=PLATFORM,
            backend="onnxruntime",
            max_batch_size=0,
            input=[
                pb.ModelInput(
                    name=t.name, data_type=CONFIG_TYPES[t.dtype], dims=_dims(t), optional=t.optional
                )
                for t in rt.inputs
            ],
            output=[
                pb.ModelOutput(name=t.name, data_type=CONFIG_TYPES[t.dtype], dims=_dims(t))
                for t in rt.outputs
            ],
            instance_group=[
                pb.ModelInstanceGroup(
                    name=rt.name,
                    count=self.instances,
                    kind=pb.ModelInstanceGroup.KIND_GPU if gpu else pb.ModelInstanceGroup.KIND_CPU,
                )
            ],
        )
        store = self.plane.sequences.get(rt.name)
        if store is not None:  # unidirectional: Triton tools drive it as a sequence model
            cfg.sequence_batching.max_sequence_idle_microseconds = int(store.idle_timeout_s * 1e6)
            cfg.sequence_batching.direct.max_queue_delay_microseconds = self.batch_delay_us
        elif self.batch_size > 1:
            cfg.dynamic_batching.max_queue_delay_microseconds = self.batch_delay_us
            cfg.dynamic_batching.preferred_batch_size.append(self.batch_size)
        for key, value in (
            ("cell", rt.cell),
            ("bidirectional", str(rt.bidirectional).lower()),
            ("num_layers", str(rt.meta.config["num_layers"])),
            ("hidden_size", str(rt.meta.config["hidden_size"])),
            ("execution_provider", rt.provider),
        ):
            cfg.parameters[key].string_value = value
        return pb.ModelConfigResponse(config=cfg)

    # ------------------------------------------------------------------ inference

    def _decode_inputs(self, rt: ModelRuntime, req: pb.ModelInferRequest) -> dict[str, np.ndarray]:
        expected = {t.name: t for t in rt.inputs}
        raw = list(req.raw_input_contents)
        if raw and len(raw) != len(req.inputs):
            raise InvalidArgument(
                f"raw_input_contents has {len(raw)} entries for {len(req.inputs)} inputs"
            )
        feeds: dict[str, np.ndarray] = {}
        for i, tensor in enumerate(req.inputs):
            info = expected.get(tensor.name)
            if info is None:
                raise InvalidArgument(
                    f"unknown input {tensor.name!r}; inputs: {', '.join(expected)}"
                )
            if tensor.name in feeds:
                raise InvalidArgument(f"input {tensor.name!r} appears twice")
            if tensor.datatype not in ACCEPTED[info.dtype]:
                raise InvalidArgument(
                    f"input {tensor.name!r} must be {' or '.join(ACCEPTED[info.dtype])}, "
                    f"not {tensor.datatype or 'empty'}"
                )
            shape = list(tensor.shape)
            if len(shape) != len(info.shape) or any(d < 0 for d in shape):
                raise InvalidArgument(
                    f"input {tensor.name!r} must have {len(info.shape)} non-negative dims "
                    f"{_dims(info)}, got {shape}"
                )
            count = math.prod(shape)
            limit = self.max_batch_rows * max(rt.max_tokens, rt.state_shape[0] * rt.state_shape[1])
            if count > limit:
                raise InvalidArgument(f"input {tensor.name!r} has {count} elements; limit {limit}")
            dtype, field = DATATYPES[tensor.datatype]
            if raw:
                buf = raw[i]
                want = count * np.dtype(dtype).itemsize
                if len(buf) != want:
                    raise InvalidArgument(
                        f"input {tensor.name!r}: {len(buf)} raw bytes for shape {shape} "
                        f"({want} expected)"
                    )
                arr = np.frombuffer(buf, dtype=np.dtype(dtype).newbyteorder("<"))
            else:
                values = getattr(tensor.contents, field)
                if len(values) != count:
                    raise InvalidArgument(
                        f"input {tensor.name!r}: {len(values)} values for shape {shape}"
                    )
                arr = np.asarray(values, dtype=dtype)
            feeds[tensor.name] = arr.reshape(shape).astype(info.dtype, copy=False)
        if "input_ids" not in feeds:
            raise InvalidArgument("input 'input_ids' is required")
        if feeds["input_ids"].ndim == 2 and feeds["input_ids"].shape[0] > self.max_batch_rows:
            raise InvalidArgument(
                f"{feeds['input_ids'].shape[0]} rows is over the limit of {self.max_batch_rows}"
            )
        return feeds

    @staticmethod
    def _sequence(req: pb.ModelInferRequest) -> tuple[str, bool, bool] | None:
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

        return key, flag("sequence_start"), flag("sequence_end")

    async def _infer(
        self, req: pb.ModelInferRequest, in_stream: bool = False
    ) -> pb.ModelInferResponse:
        rt = self._model(req.model_name, req.model_version)
        seq = self._sequence(req)
        feeds = self._decode_inputs(rt, req)
        wanted = [o.name for o in req.outputs] or None
        if seq is None:
            out = await self.plane.infer(rt.name, feeds, wanted, in_stream)
        else:
            out = await self.plane.infer_sequence(rt.name, *seq, feeds, wanted, in_stream)
        resp = pb.ModelInferResponse(model_name=rt.name, model_version=VERSION, id=req.id)
        for name, arr in out.items():
            a = np.ascontiguousarray(arr, dtype=np.float32)
            resp.outputs.add(name=name, datatype="FP32", shape=list(a.shape))
            resp.raw_output_contents.append(a.tobytes())
        return resp

    async def ModelInfer(self, request, context):  # noqa: N802
        """Run the model on raw tensors."""
        return await self._infer(request)

    async def ModelStreamInfer(  # noqa: N802
        self, request_iterator: AsyncIterator[pb.ModelInferRequest], context
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        """Each request answered in order; a bad request answers with error_message only.

        An open stream keeps being served while the server drains.
        """
        with self.plane.stream_slot():
            async for resp in self._stream(request_iterator):
                yield resp

    async def _stream(
        self, request_iterator: AsyncIterator[pb.ModelInferRequest]
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        async for req in request_iterator:
            try:
                yield pb.ModelStreamInferResponse(
                    infer_response=await self._infer(req, in_stream=True)
                )
            except ServeError as exc:
                yield pb.ModelStreamInferResponse(error_message=f"{exc.code}: {exc}")
            except Exception:
                log.exception("ModelStreamInfer request failed")
                yield pb.ModelStreamInferResponse(error_message=INTERNAL_MESSAGE)
