"""rnnserve.v1.Parser: proto <-> numpy, then a call into the data plane (no onnxruntime here)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import numpy as np

from rnnserve.v1 import rnnserve_pb2 as pb
from rnnserve.v1 import rnnserve_pb2_grpc as pb_grpc
from server.dataplane import DataPlane, ParseOptions, ParseResult, StreamState
from server.errors import InvalidArgument


def to_tensor(arr: np.ndarray) -> pb.Tensor:
    """A numpy array as a float32 Tensor message."""
    a = np.asarray(arr, dtype=np.float32)
    return pb.Tensor(shape=list(a.shape), values=a.ravel().tolist())


def from_tensor(t: pb.Tensor, name: str) -> np.ndarray:
    """A Tensor message as a float32 array; InvalidArgument when values and shape disagree."""
    shape = list(t.shape)
    if any(d < 0 for d in shape) or len(shape) > 8:
        raise InvalidArgument(f"{name}: bad shape {shape}")
    n = int(np.prod(shape)) if shape else 0
    if n != len(t.values) or n == 0:
        raise InvalidArgument(f"{name}: shape {shape} needs {n} values, got {len(t.values)}")
    return np.asarray(t.values, dtype=np.float32).reshape(shape)


def _state_in(msg: pb.State) -> tuple[np.ndarray | None, np.ndarray | None]:
    h = from_tensor(msg.h, "initial_state.h") if msg.HasField("h") else None
    c = from_tensor(msg.c, "initial_state.c") if msg.HasField("c") else None
    return h, c


def _options(top_k: int, steps: bool, state: bool) -> ParseOptions:
    return ParseOptions(top_k=top_k, steps=steps, state=state)


def _fill(res: ParseResult, tag_names: list[str]) -> dict[str, object]:
    """Fields shared by ParseResponse and ParseStreamResponse (steps and state when asked)."""
    fields: dict[str, object] = {
        "intent": pb.IntentScore(name=res.intent[0], confidence=res.intent[1]),
        "no_intent": res.no_intent,
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
            )
            for s in res.slots
        ],
        "tokens": [
            pb.Token(text=t.text, id=t.id, char_start=t.char_start, char_end=t.char_end)
            for t in res.tokens
        ],
    }
    steps, state = _steps(res, tag_names), _state_out(res)
    if steps is not None:
        fields["steps"] = steps
    if state is not None:
        fields["state"] = state
    return fields


def _steps(res: ParseResult, tag_names: list[str]) -> pb.Steps | None:
    if res.outputs is None or res.slot_scores is None:
        return None
    return pb.Steps(
        outputs=to_tensor(res.outputs),
        slot_scores=to_tensor(res.slot_scores),
        tags=res.tags,
        tag_names=tag_names,
    )


def _state_out(res: ParseResult) -> pb.State | None:
    if res.h_n is None:
        return None
    state = pb.State(h=to_tensor(res.h_n))
    if res.c_n is not None:
        state.c.CopyFrom(to_tensor(res.c_n))
    return state


class ParserServicer(pb_grpc.ParserServicer):
    """The typed API."""

    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane

    async def Parse(self, request: pb.ParseRequest, context: object) -> pb.ParseResponse:  # noqa: N802
        """Parse one utterance."""
        plane = self.plane
        rt = plane.model(request.model)
        which = request.WhichOneof("input")
        text: str | None = None
        if which == "text":
            text = request.text
            tokens, ids = plane.encode_text(rt, text)
        elif which == "token_ids":
            tokens, ids = plane.encode_ids(rt, request.token_ids.ids)
        else:
            raise InvalidArgument("the request needs text or token_ids")
        h0, c0 = plane.state_arrays(rt, *_state_in(request.initial_state))
        opts = _options(request.top_k, request.return_steps, request.return_state)
        res = await plane.parse(request.model, tokens, ids, h0, c0, opts, text)
        return pb.ParseResponse(
            model=res.model,
            no_intent_threshold=rt.no_intent_threshold,
            **_fill(res, rt.meta.slots),  # type: ignore[arg-type]
        )

    async def ParseStream(  # noqa: N802
        self, request_iterator: AsyncIterator[pb.ParseStreamRequest], context: object
    ) -> AsyncIterator[pb.ParseStreamResponse]:
        """Parse an utterance chunk by chunk, carrying the recurrent state inside the stream."""
        with self.plane.stream_slot():
            async for resp in self._stream(request_iterator):
                yield resp

    async def _stream(
        self, request_iterator: AsyncIterator[pb.ParseStreamRequest]
    ) -> AsyncIterator[pb.ParseStreamResponse]:
        stream: StreamState | None = None
        async for req in request_iterator:
            if stream is None:
                stream = self.plane.open_stream(req.model)
            which = req.WhichOneof("chunk")
            text = req.text if which == "text" else None
            ids = list(req.token_ids.ids) if which == "token_ids" else None
            if which is None:
                raise InvalidArgument("a stream chunk needs text or token_ids")
            opts = _options(req.top_k, req.return_steps, req.return_state)
            res = await stream.feed(self.plane, text, ids, opts)
            yield pb.ParseStreamResponse(
                chunk_index=stream.chunks - 1,
                total_steps=res.total_steps,
                **_fill(res, stream.rt.meta.slots),  # type: ignore[arg-type]
            )

    async def ModelInfo(  # noqa: N802
        self, request: pb.ModelInfoRequest, context: object
    ) -> pb.ModelInfoResponse:
        """Describe the model."""
        rt = self.plane.model(request.model)
        cfg, meta = rt.meta.config, rt.meta
        return pb.ModelInfoResponse(
            name=rt.name,
            cell=rt.cell,
            nonlinearity=str(cfg.get("nonlinearity", "")),
            num_layers=int(cfg["num_layers"]),
            num_directions=2 if rt.bidirectional else 1,
            embedding_dim=int(cfg["embedding_dim"]),
            hidden_size=int(cfg["hidden_size"]),
            vocab_size=rt.vocab_size,
            intents=meta.intents,
            slot_tags=meta.slots,
            streaming=not rt.bidirectional,
            execution_provider=rt.provider,
            parity_max_abs_diff=float(meta.parity.get("max_abs_diff", -1.0)),
            metrics_json=json.dumps(meta.metrics),
            parity_json=json.dumps(meta.parity),
            inputs=[
                pb.TensorInfo(
                    name=t.name,
                    datatype=t.dtype,
                    shape=[str(d) for d in t.shape],
                    optional=t.optional,
                )
                for t in rt.inputs
            ],
            outputs=[
                pb.TensorInfo(name=t.name, datatype=t.dtype, shape=[str(d) for d in t.shape])
                for t in rt.outputs
            ],
            max_tokens=rt.max_tokens,
            no_intent_threshold=rt.no_intent_threshold,
        )
