"""rnnserve.v1.Parser: proto <-> numpy, then a call into the data plane (no onnxruntime here)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import numpy as np

from modelspec.context import HomeContext
from modelspec.io import TensorSpec
from rnnserve.v1 import rnnserve_pb2 as pb
from rnnserve.v1 import rnnserve_pb2_grpc as pb_grpc
from server.context import home_context
from server.context_wire import Typed, WireContexts, deserializer
from server.dataplane import DataPlane
from server.decoding import ParseOptions, ParseResult
from server.errors import FailedPrecondition, InvalidArgument, NotFound
from server.generate_codec import generate_input, response, stream_message
from server.generation_service import GenerationService
from server.model import ServedModel
from server.requests import ParseInput, StreamState
from server.tensor_codec import from_tensor, to_tensor


def _state_in(msg: pb.State) -> tuple[np.ndarray | None, np.ndarray | None]:
    h = from_tensor(msg.h, "initial_state.h") if msg.HasField("h") else None
    c = from_tensor(msg.c, "initial_state.c") if msg.HasField("c") else None
    return h, c


def _input(
    req: pb.ParseRequest | pb.ParseStreamRequest, which: str | None, context: HomeContext | None
) -> ParseInput:
    """A typed request (or stream chunk) and its context as the data plane's ParseInput."""
    h0, c0 = _state_in(req.initial_state) if isinstance(req, pb.ParseRequest) else (None, None)
    return ParseInput(
        model=req.model,
        version=req.version,
        text=req.text if which == "text" else None,
        token_ids=req.token_ids.ids if which == "token_ids" else None,  # no copy before the checks
        h0=h0,
        c0=c0,
        options=ParseOptions(top_k=req.top_k, steps=req.return_steps, state=req.return_state),
        context=context,
    )


def _fill(res: ParseResult) -> dict[str, object]:
    """Fields shared by ParseResponse and ParseStreamResponse (steps and state when asked)."""
    fields: dict[str, object] = {
        "intent": pb.IntentScore(name=res.intent[0], confidence=res.intent[1]),
        "no_intent": res.no_intent,
        "in_scope_score": res.in_scope_score,
        "top_intents": [pb.IntentScore(name=n, confidence=c) for n, c in res.top],
        "slots": [
            pb.Slot(
                name=s.name,
                value=s.value,
                token_start=s.token_start,
                token_end=s.token_end,
                char_start=s.char_start,
                char_end=s.char_end,
                confidence=s.confidence,
                canonical=s.canonical,
                entry_id=s.entry_id,
                entry_name=s.entry_name,
                entry_ids=s.entry_ids,
            )
            for s in res.slots
        ],
        "implied_slots": [pb.ImpliedSlot(name=n, value=v) for n, v in res.implied],
        "tokens": [
            pb.Token(text=t.text, id=t.id, char_start=t.char_start, char_end=t.char_end)
            for t in res.tokens
        ],
    }
    if res.outputs is not None and res.slot_scores is not None:
        fields["steps"] = pb.Steps(
            outputs=to_tensor(res.outputs),
            slot_scores=to_tensor(res.slot_scores),
            tags=res.tags,
            tag_names=res.tag_names,
        )
    if res.h_n is not None:
        state = pb.State(h=to_tensor(res.h_n))
        if res.c_n is not None:
            state.c.CopyFrom(to_tensor(res.c_n))
        fields["state"] = state
    return fields


def _tensor_info(t: TensorSpec) -> pb.TensorInfo:
    return pb.TensorInfo(
        name=t.name, datatype=t.dtype, shape=[str(d) for d in t.shape], optional=t.optional
    )


def model_info(model: ServedModel, versions: list[str]) -> pb.ModelInfoResponse:
    """A ModelInfoResponse describing a served model version."""
    cfg, meta, spec = model.meta.config, model.meta, model.validator.spec
    dev = model.device_parity  # None on CPU
    return pb.ModelInfoResponse(
        name=model.name,
        cell=model.cell,
        nonlinearity=str(cfg.get("nonlinearity", "")),
        num_layers=int(cfg["num_layers"]),
        num_directions=2 if model.bidirectional else 1,
        embedding_dim=int(cfg["embedding_dim"]),
        hidden_size=int(cfg["hidden_size"]),
        vocab_size=len(meta.vocab),
        intents=meta.intents,
        slot_tags=meta.slots,
        streaming=model.streaming,
        execution_provider=model.provider,
        parity_max_abs_diff=float(meta.parity.get("max_abs_diff", -1.0)),
        metrics_json=json.dumps(meta.metrics),
        parity_json=json.dumps(meta.parity),
        inputs=[_tensor_info(t) for t in spec.inputs],
        outputs=[
            pb.TensorInfo(name=t.name, datatype=t.dtype, shape=[str(d) for d in t.shape])
            for t in spec.outputs
        ],
        max_tokens=model.limits.max_tokens,
        no_intent_threshold=model.labels.no_intent_threshold,
        no_intent_score=model.labels.no_intent_score,
        version=model.version,
        versions=versions,
        cuda_tf32=bool(model.runtime.tf32),
        device_max_abs_diff_vs_cpu=dev.max_abs_diff_vs_cpu if dev else 0.0,
        device_max_abs_diff_alone_vs_batch=dev.max_abs_diff_alone_vs_batch if dev else 0.0,
    )


def _unwrap(request: Any, contexts: WireContexts) -> tuple[Any, HomeContext | None]:
    """The message and its context: read from the bytes the deserializer kept apart
    (server/context_wire.py), else from the message itself."""
    msg, wire = request if isinstance(request, Typed) else (request, b"")
    if wire:
        return msg, contexts.get(wire)
    return msg, home_context(msg.context) if msg.HasField("context") else None


def _carries_context(request: Any) -> bool:
    """Whether a request sent a context (kept apart as bytes, or in the message)."""
    if isinstance(request, Typed):
        return bool(request.context) or request.message.HasField("context")
    return bool(request.HasField("context"))


def _same_model(stream: StreamState, req: pb.ParseStreamRequest) -> None:
    """A later message may name the stream's model and version again, but no other."""
    model = stream.model
    if model is not None and (
        req.model not in ("", model.name) or req.version not in ("", model.version)
    ):
        raise InvalidArgument(
            f"the stream runs on model {model.name!r} version {model.version!r} from its first "
            "message; a later message may not name another (start a new stream)"
        )


def deserializers() -> dict[str, Callable[[bytes], Typed]]:
    """Request deserializers of the methods that keep a large context apart, by method."""
    service = pb.DESCRIPTOR.services_by_name["Parser"].full_name
    return {
        f"/{service}/Parse": deserializer(pb.ParseRequest),
        f"/{service}/ParseStream": deserializer(pb.ParseStreamRequest),
    }


class ParserServicer(pb_grpc.ParserServicer):
    """The typed API: each method translates, then makes one data-plane call."""

    def __init__(self, plane: DataPlane, generation: GenerationService | None = None) -> None:
        self.plane = plane
        self.generation = generation or GenerationService()
        self.contexts = WireContexts()

    async def Parse(self, request: Typed | pb.ParseRequest, context: object) -> pb.ParseResponse:  # noqa: N802
        """Parse one utterance."""
        msg, home = _unwrap(request, self.contexts)
        try:
            res = await self.plane.parse(_input(msg, msg.WhichOneof("input"), home))
        except NotFound:
            self._not_an_intent_model(msg.model)
            raise
        fields = _fill(res)
        return pb.ParseResponse(
            model=res.model,
            model_version=res.version,
            no_intent_threshold=res.no_intent_threshold,
            no_intent_score=res.no_intent_score,
            **fields,  # type: ignore[arg-type]
        )

    async def ParseStream(  # noqa: N802
        self, request_iterator: AsyncIterator[pb.ParseStreamRequest], context: object
    ) -> AsyncIterator[pb.ParseStreamResponse]:
        """Parse an utterance chunk by chunk, carrying the recurrent state inside the stream."""
        stream = StreamState()
        first = True
        async for request in request_iterator:
            if not first and _carries_context(request):
                raise InvalidArgument(
                    "context goes with a stream's first message only; a later message may not "
                    "carry one (start a new stream for another home)"
                )
            first = False
            req, home = _unwrap(request, self.contexts)
            _same_model(stream, req)
            try:
                res = await self.plane.feed(stream, _input(req, req.WhichOneof("chunk"), home))
            except NotFound:
                self._not_an_intent_model(req.model)
                raise
            yield pb.ParseStreamResponse(
                model=res.model,
                model_version=res.version,
                chunk_index=res.chunk_index,
                total_steps=res.total_steps,
                **_fill(res),  # type: ignore[arg-type]
            )

    async def ModelInfo(  # noqa: N802
        self, request: pb.ModelInfoRequest, context: object
    ) -> pb.ModelInfoResponse:
        """Describe the model."""
        try:
            return model_info(*self.plane.describe(request.model, request.version))
        except NotFound:
            self._not_an_intent_model(request.model)
            raise

    def _not_an_intent_model(self, name: str) -> None:
        """An intent call naming an encoder–decoder is told which calls serve it."""
        if name and name in self.generation.models:
            raise FailedPrecondition(
                f"model {name!r} is an encoder–decoder: call Generate or GenerateStream "
                "(v2 ModelMetadata describes its graphs)"
            )

    async def Generate(  # noqa: N802
        self, request: pb.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> pb.GenerateResponse:
        """Generate one sequence with an encoder–decoder model."""
        req = generate_input(request, context.time_remaining())
        return response(await self.generation.generate(req))

    async def GenerateStream(  # noqa: N802
        self, request: pb.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.GenerateStreamResponse]:
        """Generate one sequence, sending each token as it is decoded."""
        req = generate_input(request, context.time_remaining())
        async for model, item in self.generation.generate_stream(req):
            yield stream_message(item, model.runtime.target_vocab)
