"""KServe v2 / Open Inference Protocol (inference.GRPCInferenceService): one data-plane call
per RPC; the messages are built by server/v2_codec.py."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from rnnserve.kserve import grpc_predict_v2_pb2 as pb
from rnnserve.kserve import grpc_predict_v2_pb2_grpc as pb_grpc
from server import v2_codec
from server.dataplane import DataPlane
from server.errors import INTERNAL_MESSAGE, InvalidArgument, ServeError
from server.version import SERVER_NAME, SERVER_VERSION

log = logging.getLogger("rnnserve.kserve")


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """The v2 protocol over the same data plane as the typed API."""

    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane

    async def ServerLive(self, request, context):  # noqa: N802
        """The process is up."""
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request, context):  # noqa: N802
        """Every model is loaded and warm (false while draining: see server/admission.py)."""
        return pb.ServerReadyResponse(ready=self.plane.server_ready())

    async def ModelReady(self, request, context):  # noqa: N802
        """Whether this model can take requests."""
        return pb.ModelReadyResponse(ready=self.plane.model_ready(request.name, request.version))

    async def ServerMetadata(self, request, context):  # noqa: N802
        """Name, version, protocol extensions."""
        return pb.ServerMetadataResponse(
            name=SERVER_NAME,
            version=SERVER_VERSION,
            extensions=["model_configuration", "model_repository"],
        )

    async def ModelMetadata(self, request, context):  # noqa: N802
        """The model's tensors (-1 marks a dynamic dimension)."""
        return v2_codec.model_metadata(*self.plane.describe(request.name, request.version))

    async def ModelConfig(self, request, context):  # noqa: N802
        """A Triton-style model configuration."""
        return v2_codec.model_config(self.plane.describe(request.name, request.version)[0])

    async def RepositoryIndex(self, request, context):  # noqa: N802
        """Every model version the server knows of, with its state (Triton's extension)."""
        return v2_codec.repository_index(self.plane.repository_index(request.ready))

    async def RepositoryModelLoad(self, request, context):  # noqa: N802
        """Load or reload a model (explicit control mode) as the repository holds it; Triton's
        overrides (a `config` parameter, `file:` contents) are refused, not ignored."""
        for key in request.parameters:
            if key == "config" or key.startswith("file:"):
                raise InvalidArgument(
                    f"parameter {key!r} is not supported: a model loads as the repository "
                    "holds it (place its files and config.json there)"
                )
        await self.plane.load_model(request.model_name)
        return pb.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(self, request, context):  # noqa: N802
        """Stop serving a model (explicit control mode)."""
        await self.plane.unload_model(request.model_name)
        return pb.RepositoryModelUnloadResponse()

    async def infer(self, request: pb.ModelInferRequest) -> pb.ModelInferResponse:
        """One v2 request, run: what ModelInfer and each ModelStreamInfer request answer."""
        result = await self.plane.infer(v2_codec.infer_input(request))
        return v2_codec.infer_response(result, request.id)

    async def ModelInfer(self, request, context):  # noqa: N802
        """Run the model on raw tensors."""
        return await self.infer(request)

    async def ModelStreamInfer(  # noqa: N802
        self, request_iterator: AsyncIterator[pb.ModelInferRequest], context
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        """Each request answered in order; a bad request answers with error_message only."""
        async for req in request_iterator:
            try:
                yield pb.ModelStreamInferResponse(infer_response=await self.infer(req))
            except ServeError as exc:
                yield pb.ModelStreamInferResponse(error_message=f"{exc.code}: {exc}")
            except Exception:
                log.exception("ModelStreamInfer request failed")
                yield pb.ModelStreamInferResponse(error_message=INTERNAL_MESSAGE)
