"""A blocking Python client for the rnnserve typed API and health service."""

from __future__ import annotations

import itertools
import json
import math
import operator
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from client.context import Home, PreparedContext, context_message, prepare_context
from rnnserve.v1 import rnnserve_pb2 as pb
from rnnserve.v1 import rnnserve_pb2_grpc as pb_grpc

DEFAULT_TARGET = "127.0.0.1:50051"
DEFAULT_TIMEOUT = 10.0
# gRPC turns far larger deadlines into ones that have already expired.
MAX_TIMEOUT = 86_400.0


class RnnServeError(Exception):
    """A failed call: `code` is the gRPC status name (INVALID_ARGUMENT, UNAVAILABLE, ...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    @classmethod
    def from_rpc(cls, err: grpc.RpcError) -> RnnServeError:
        """Wrap a grpc error."""
        code = err.code() if hasattr(err, "code") else None
        details = err.details() if hasattr(err, "details") else str(err)
        return cls(code.name if code is not None else "UNKNOWN", details or "")


def check_timeout(seconds: float) -> float:
    """`seconds` if it is a usable deadline (finite, > 0, at most MAX_TIMEOUT); else ValueError."""
    if not (math.isfinite(seconds) and 0 < seconds <= MAX_TIMEOUT):
        raise ValueError(
            f"timeout must be a number of seconds above 0 and at most {MAX_TIMEOUT:g},"
            f" not {seconds!r}"
        )
    return seconds


UINT32_MAX = 2**32 - 1
# Calls of parse_many/generate_many in flight at once: half a server's default --max-queue
# (256), so a long list keeps the server busy without filling the queue it admits calls from.
IN_FLIGHT = 128


def check_counts(**counts: int) -> None:
    """ValueError naming the first of `counts` that is not a whole number in [0, 2**32)."""
    for name, value in counts.items():
        try:
            whole = operator.index(value)
        except TypeError:
            whole = -1
        if not 0 <= whole <= UINT32_MAX:
            raise ValueError(f"{name} must be a whole number from 0 to {UINT32_MAX}, not {value!r}")


def state_message(state: pb.State | dict[str, Any] | None) -> pb.State | None:
    """A State from a State message or from its dict form {"h": {"shape", "values"}, "c": ...}."""
    if state is None or isinstance(state, pb.State):
        return state
    msg = pb.State()
    for key in ("h", "c"):
        if key in state and state[key] is not None:
            t = getattr(msg, key)
            t.shape[:] = list(state[key]["shape"])
            t.values[:] = list(state[key]["values"])
    return msg


PARSE_METHOD = f"/{pb.DESCRIPTOR.services_by_name['Parser'].full_name}/Parse"
PARSE_CONTEXT = pb.ParseRequest.DESCRIPTOR.fields_by_name["context"].number

# Retry only what is safe: parsing is a pure function, so a call the server refused
# (RESOURCE_EXHAUSTED: admission queue full; UNAVAILABLE: not ready, draining, unreachable)
# can be sent again. Streams are never retried.
RETRY_POLICY = {
    "methodConfig": [
        {
            "name": [
                {"service": "rnnserve.v1.Parser", "method": "Parse"},
                {"service": "rnnserve.v1.Parser", "method": "ModelInfo"},
                {"service": "grpc.health.v1.Health", "method": "Check"},
            ],
            "retryPolicy": {
                "maxAttempts": 4,
                "initialBackoff": "0.05s",
                "maxBackoff": "1s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["RESOURCE_EXHAUSTED", "UNAVAILABLE"],
            },
        }
    ]
}


def tensor_message(value: Any) -> pb.Tensor:
    """A Tensor from a numpy array or nested lists of numbers (no numpy needed)."""
    if hasattr(value, "shape") and hasattr(value, "ravel"):
        return pb.Tensor(shape=list(value.shape), values=[float(v) for v in value.ravel()])
    shape: list[int] = []
    level = value
    while isinstance(level, list | tuple):
        shape.append(len(level))
        level = level[0] if level else None
    flat = list(value)
    for _ in shape[1:]:
        flat = [v for row in flat for v in row]
    return pb.Tensor(shape=shape, values=[float(v) for v in flat])


def _read(path: str | None) -> bytes | None:
    return Path(path).read_bytes() if path else None


class Client:
    """Context manager around its channels; every call carries a deadline (`timeout` seconds).

    `connections` > 1 opens that many channels, each with its own connection, and sends each
    call (a stream: all its messages) on the next one in turn, so one client reaches every
    worker process of a server started with --workers (the kernel assigns each connection
    to a worker, so use a few connections per worker).

    TLS when any of `tls_ca` / `tls_cert` / `tls_key` is given (`tls_ca` verifies the server;
    `tls_cert` + `tls_key` are this client's certificate for mutual TLS, one needs the other).
    `token` is sent as `authorization: Bearer <token>`. A bad `timeout` or a certificate
    without its key (or the reverse) raises ValueError.
    """

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        timeout: float = DEFAULT_TIMEOUT,
        options: Sequence[tuple[str, Any]] = (),
        *,
        tls_ca: str | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        token: str | None = None,
        retries: bool = True,
        connections: int = 1,
    ) -> None:
        if bool(tls_cert) != bool(tls_key):
            raise ValueError("tls_cert and tls_key go together: mutual TLS needs both")
        if isinstance(connections, bool) or not isinstance(connections, int) or connections < 1:
            raise ValueError(
                f"connections must be a whole number of at least 1, not {connections!r}"
            )
        self.target = target
        self.timeout = check_timeout(timeout)
        opts = list(options)
        if retries:
            opts += [("grpc.enable_retries", 1), ("grpc.service_config", json.dumps(RETRY_POLICY))]
        if connections > 1:  # channels in one process share connections unless told not to
            opts.append(("grpc.use_local_subchannel_pool", 1))
        creds = None
        if tls_ca or tls_cert or tls_key:
            creds = grpc.ssl_channel_credentials(
                root_certificates=_read(tls_ca),
                private_key=_read(tls_key),
                certificate_chain=_read(tls_cert),
            )
        self.channels = [
            grpc.insecure_channel(target, options=opts)
            if creds is None
            else grpc.secure_channel(target, creds, options=opts)
            for _ in range(connections)
        ]
        self.channel = self.channels[0]
        self.metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {token}"),) if token else ()
        )
        self.stubs = [pb_grpc.ParserStub(ch) for ch in self.channels]
        self._raw_parse = [  # Parse with the request already serialized
            ch.unary_unary(PARSE_METHOD, response_deserializer=pb.ParseResponse.FromString)
            for ch in self.channels
        ]
        self.health_stubs = [health_pb2_grpc.HealthStub(ch) for ch in self.channels]
        self.stub, self.health_stub = self.stubs[0], self.health_stubs[0]
        self._turn = itertools.cycle(range(connections))  # next() is atomic: thread safe

    def _next(self) -> int:
        """The channel for the next call (round robin)."""
        return next(self._turn)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the channels."""
        for channel in self.channels:
            channel.close()

    def _deadline(self, timeout: float | None) -> float:
        return self.timeout if timeout is None else check_timeout(timeout)

    def _call(self, fn: Any, request: Any, timeout: float | None) -> Any:
        try:
            return fn(request, timeout=self._deadline(timeout), metadata=self.metadata)
        except grpc.RpcError as err:
            raise RnnServeError.from_rpc(err) from None

    @staticmethod
    def request(
        text: str | None = None,
        ids: Sequence[int] | None = None,
        *,
        model: str = "",
        version: str = "",
        top_k: int = 0,
        steps: bool = False,
        state: bool = False,
        initial_state: pb.State | dict[str, Any] | None = None,
        context: Home | None = None,
    ) -> pb.ParseRequest:
        """Build a ParseRequest from text or token ids; `context` is the caller's home in Home
        Assistant's shape ({"floors": [...], "areas": [...], "entities": [...]}), or one made
        once with `client.context.prepare_context` to send with many requests."""
        check_counts(top_k=top_k)
        req = pb.ParseRequest(
            model=model, version=version, top_k=top_k, return_steps=steps, return_state=state
        )
        if text is not None:
            req.text = text
        elif ids is not None:
            req.token_ids.ids[:] = list(ids)
        init = state_message(initial_state)
        if init is not None:
            req.initial_state.CopyFrom(init)
        if context is not None:
            req.context.CopyFrom(context_message(context))
        return req

    def parse(self, text: str, *, timeout: float | None = None, **kw: Any) -> pb.ParseResponse:
        """Parse one utterance."""
        return self._parse(timeout, text=text, **kw)

    def parse_tokens(
        self, ids: Sequence[int], *, timeout: float | None = None, **kw: Any
    ) -> pb.ParseResponse:
        """Parse token ids (the model's vocabulary ids)."""
        return self._parse(timeout, ids=ids, **kw)

    def _parse(self, timeout: float | None, **kw: Any) -> pb.ParseResponse:
        """One Parse call; a prepared context travels as its bytes, never re-serialized."""
        k = self._next()
        home = kw.get("context")
        if not isinstance(home, PreparedContext):
            return self._call(self.stubs[k].Parse, self.request(**kw), timeout)
        wire = self.request(**{**kw, "context": None}).SerializeToString()
        return self._call(self._raw_parse[k], wire + home.field(PARSE_CONTEXT), timeout)

    def parse_many(
        self, texts: Sequence[str], *, timeout: float | None = None, **kw: Any
    ) -> list[pb.ParseResponse | RnnServeError]:
        """Send all texts at once; answers (or errors) in input order. A context is converted
        and serialized once for all of them (`prepare_context`)."""
        home = kw.get("context")
        if home is None:
            reqs = [self.request(text=t, **kw) for t in texts]
            return self._all([s.Parse for s in self.stubs], reqs, timeout)
        tail, kw = prepare_context(home).field(PARSE_CONTEXT), {**kw, "context": None}
        wires = [self.request(text=t, **kw).SerializeToString() + tail for t in texts]
        return self._all(self._raw_parse, wires, timeout)

    def _all(
        self, methods: Sequence[Any], requests: Sequence[Any], timeout: float | None
    ) -> list[Any]:
        """Send every request of one unary method (its callable per connection), at most
        IN_FLIGHT at a time, spread over the connections; answers (or RnnServeErrors) in input
        order. Each request's deadline starts when it is sent."""
        slots = threading.BoundedSemaphore(IN_FLIGHT)
        futures = []
        for req in requests:
            slots.acquire()
            f = methods[self._next()].future(
                req, timeout=self._deadline(timeout), metadata=self.metadata
            )
            f.add_done_callback(lambda _: slots.release())
            futures.append(f)
        out: list[Any] = []
        for f in futures:
            try:
                out.append(f.result())
            except grpc.RpcError as err:
                out.append(RnnServeError.from_rpc(err))
        return out

    def stream(
        self,
        chunks: Iterable[str | Sequence[int]],
        *,
        model: str = "",
        version: str = "",
        steps: bool = False,
        state: bool = False,
        top_k: int = 0,
        timeout: float | None = None,
        context: Home | None = None,
    ) -> Iterator[pb.ParseStreamResponse]:
        """Send an utterance in chunks (text pieces or token-id lists); one answer per chunk.

        An exception raised while reading `chunks` (or turning one into a request) ends the
        stream: the chunks before it are answered, then the exception is raised here.
        """
        check_counts(top_k=top_k)
        deadline = self._deadline(timeout)
        failed: list[Exception] = []
        home = context_message(context) if context is not None else None

        def requests() -> Iterator[pb.ParseStreamRequest]:
            nonlocal home
            try:
                for chunk in chunks:
                    req = pb.ParseStreamRequest(
                        model=model,
                        version=version,
                        return_steps=steps,
                        return_state=state,
                        top_k=top_k,
                    )
                    if isinstance(chunk, str):
                        req.text = chunk
                    else:
                        req.token_ids.ids[:] = list(chunk)
                    if home is not None:  # the server reads it from the first message
                        req.context.CopyFrom(home)
                        home = None
                    yield req
            except Exception as exc:  # gRPC would report it only as UNKNOWN
                failed.append(exc)

        try:
            stub = self.stubs[self._next()]
            yield from stub.ParseStream(requests(), timeout=deadline, metadata=self.metadata)
        except grpc.RpcError as err:
            raise RnnServeError.from_rpc(err) from None
        if failed:
            raise failed[0]

    def info(
        self, model: str = "", version: str = "", *, timeout: float | None = None
    ) -> pb.ModelInfoResponse:
        """Describe the served model."""
        return self._call(
            self.stubs[self._next()].ModelInfo,
            pb.ModelInfoRequest(model=model, version=version),
            timeout,
        )

    @staticmethod
    def generate_request(
        text: str | None = None,
        ids: Sequence[int] | None = None,
        *,
        model: str = "",
        version: str = "",
        beam_size: int = 0,
        max_steps: int = 0,
        num_results: int = 0,
        states: bool = False,
        h0: Any = None,
        memory: Any = None,
    ) -> pb.GenerateRequest:
        """Build a GenerateRequest from a word, source ids, or (1 vs N) h0 and/or memory
        (array-likes: h0 [hidden], memory [source, width] or [width])."""
        check_counts(beam_size=beam_size, max_steps=max_steps, num_results=num_results)
        req = pb.GenerateRequest(
            model=model,
            version=version,
            beam_size=beam_size,
            max_steps=max_steps,
            num_results=num_results,
            return_states=states,
        )
        if text is not None:
            req.text = text
        elif ids is not None:
            req.token_ids.ids[:] = list(ids)
        elif h0 is not None or memory is not None:
            for name, value in (("h0", h0), ("memory", memory)):
                if value is not None:
                    getattr(req.context, name).CopyFrom(tensor_message(value))
        return req

    def generate(
        self, text: str, *, timeout: float | None = None, **kw: Any
    ) -> pb.GenerateResponse:
        """The output sequence of one input word (g2p: its phonemes)."""
        req = self.generate_request(text=text, **kw)
        return self._call(self.stubs[self._next()].Generate, req, timeout)

    def generate_from(self, *, timeout: float | None = None, **kw: Any) -> pb.GenerateResponse:
        """Generate from source ids (`ids=`) or, 1 vs N, from `h0=` and/or `memory=`."""
        req = self.generate_request(**kw)
        return self._call(self.stubs[self._next()].Generate, req, timeout)

    def generate_many(
        self, texts: Sequence[str], *, timeout: float | None = None, **kw: Any
    ) -> list[pb.GenerateResponse | RnnServeError]:
        """Send all words at once (the server batches their decoder steps); answers (or
        errors) in input order."""
        reqs = [self.generate_request(text=t, **kw) for t in texts]
        return self._all([s.Generate for s in self.stubs], reqs, timeout)

    def generate_stream(
        self, text: str, *, timeout: float | None = None, **kw: Any
    ) -> Iterator[pb.GenerateStreamResponse]:
        """One message per output token as it is decoded, then one with the whole answer."""
        req = self.generate_request(text=text, **kw)
        try:
            stub = self.stubs[self._next()]
            yield from stub.GenerateStream(
                req, timeout=self._deadline(timeout), metadata=self.metadata
            )
        except grpc.RpcError as err:
            raise RnnServeError.from_rpc(err) from None

    def health(self, service: str = "", *, timeout: float | None = None) -> str:
        """grpc.health.v1 status name: SERVING, NOT_SERVING, SERVICE_UNKNOWN (a service the
        server does not report on: Check answers NOT_FOUND), UNKNOWN."""
        try:
            resp = self._call(
                self.health_stubs[self._next()].Check,
                health_pb2.HealthCheckRequest(service=service),
                timeout,
            )
        except RnnServeError as err:
            if err.code == "NOT_FOUND":
                return "SERVICE_UNKNOWN"
            raise
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status))
