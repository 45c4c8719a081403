"""The v2 service with the encoder–decoder graphs beside the other models: calls naming a
graph (`NAME.encoder`, `NAME.step`) go to server/graphs.py, all others to the data plane."""

from __future__ import annotations

from modelspec.io import DATATYPE_NAMES
from rnnserve.kserve import grpc_predict_v2_pb2 as pb
from server import v2_codec
from server.dataplane import DataPlane
from server.errors import FailedPrecondition
from server.generation_service import GenerationService
from server.graphs import GraphModel, GraphModels
from server.kserve_servicer import InferenceServicer
from server.model import READY


def _metadata(model: GraphModel, versions: list[str]) -> pb.ModelMetadataResponse:
    tensor = pb.ModelMetadataResponse.TensorMetadata
    return pb.ModelMetadataResponse(
        name=model.name,
        versions=versions,
        platform=v2_codec.PLATFORM,
        inputs=[
            tensor(name=t.name, datatype=DATATYPE_NAMES[t.dtype], shape=t.dims)
            for t in model.io.inputs
        ],
        outputs=[
            tensor(name=t.name, datatype=DATATYPE_NAMES[t.dtype], shape=t.dims)
            for t in model.io.outputs
        ],
    )


def _config(model: GraphModel) -> pb.ModelConfigResponse:
    types = v2_codec.CONFIG_TYPES
    cfg = pb.ModelConfig(
        name=model.name,
        platform=v2_codec.PLATFORM,
        backend="onnxruntime",
        max_batch_size=0,
        input=[
            pb.ModelInput(name=t.name, data_type=types[t.dtype], dims=t.dims)
            for t in model.io.inputs
        ],
        output=[
            pb.ModelOutput(name=t.name, data_type=types[t.dtype], dims=t.dims)
            for t in model.io.outputs
        ],
    )
    params = {
        "seq2seq_model": model.owner.name,
        "seq2seq_role": model.graph.meta.role,
        "execution_provider": model.graph.provider,
    }
    for key, value in params.items():
        cfg.parameters[key].string_value = value
    return pb.ModelConfigResponse(config=cfg)


class GraphInferenceServicer(InferenceServicer):
    """InferenceServicer that also serves the graphs of the encoder–decoder models."""

    def __init__(
        self, plane: DataPlane, generation: GenerationService, max_message_bytes: int = 2**31 - 1
    ) -> None:
        super().__init__(plane)
        self.graphs = GraphModels(generation, max_message_bytes)

    async def ModelReady(self, request, context):  # noqa: N802
        """Whether this model (or graph) can take requests."""
        if self.graphs.owns(request.name):
            self.graphs.find(request.name, request.version)
            return pb.ModelReadyResponse(ready=self.plane.server_ready())
        return await super().ModelReady(request, context)

    async def ModelMetadata(self, request, context):  # noqa: N802
        """The model's (or graph's) tensors."""
        if self.graphs.owns(request.name):
            model = self.graphs.find(request.name, request.version)
            return _metadata(model, self.graphs.versions(request.name))
        return await super().ModelMetadata(request, context)

    async def ModelConfig(self, request, context):  # noqa: N802
        """A Triton-style configuration of the model (or graph)."""
        if self.graphs.owns(request.name):
            return _config(self.graphs.find(request.name, request.version))
        return await super().ModelConfig(request, context)

    def _not_seq2seq(self, name: str) -> None:
        """Encoder–decoders load at start only: say so rather than that the model is unknown."""
        generation = self.graphs.generation
        failed = any(n == name for n, _ in generation.failed)
        if name in generation.models or failed or self.graphs.owns(name):
            raise FailedPrecondition(
                f"model {name!r} is (a graph of) an encoder-decoder: it is loaded at start only, "
                "never by RepositoryModelLoad or RepositoryModelUnload"
            )

    async def RepositoryModelLoad(self, request, context):  # noqa: N802
        """Load a model; an encoder–decoder's name is FAILED_PRECONDITION."""
        self._not_seq2seq(request.model_name)
        return await super().RepositoryModelLoad(request, context)

    async def RepositoryModelUnload(self, request, context):  # noqa: N802
        """Unload a model; an encoder–decoder's name is FAILED_PRECONDITION."""
        self._not_seq2seq(request.model_name)
        return await super().RepositoryModelUnload(request, context)

    async def RepositoryIndex(self, request, context):  # noqa: N802
        """The repository's models, the graphs of the encoder–decoders, and (unless only the
        ready ones are asked for) the encoder–decoders that failed to load."""
        resp = await super().RepositoryIndex(request, context)
        for name, version in self.graphs.index():
            resp.models.add(name=name, version=version, state=READY)
        if not request.ready:
            for name, version, state, reason in self.graphs.generation.index():
                resp.models.add(name=name, version=version, state=state, reason=reason)
        return resp

    async def infer(self, request: pb.ModelInferRequest) -> pb.ModelInferResponse:
        """Run a model (or graph) on raw tensors: for ModelInfer and ModelStreamInfer alike."""
        if self.graphs.owns(request.model_name):
            result = await self.graphs.infer(v2_codec.infer_input(request))
            return v2_codec.infer_response(result, request.id)
        return await super().infer(request)
