"""TLS, mutual TLS, bearer tokens, backpressure, deadlines, stream limits and drain."""

from __future__ import annotations

import asyncio
import logging
import os
import time

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client import generate_latest

from client import Client, RnnServeError
from rnnserve.kserve import grpc_predict_v2_pb2 as v2
from rnnserve.kserve import grpc_predict_v2_pb2_grpc as v2_grpc
from rnnserve.v1 import rnnserve_pb2 as pb
from rnnserve.v1 import rnnserve_pb2_grpc as pb_grpc

from .conftest import DEFAULT_ONNX
from .pki import issue, make_ca
from .serving import RunningServer, settings_for, small_model_file

TOKENS = ("s3cret-token-one", "another-token-2")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    out = tmp_path_factory.mktemp("pki")
    ca, ca_cert, ca_key = make_ca(out, "ca")
    rogue, rogue_cert, rogue_key = make_ca(out, "rogue")
    return {
        "ca": ca,
        "server": issue(out, "server", ca_cert, ca_key, server=True),
        "client": issue(out, "client", ca_cert, ca_key, server=False),
        "rogue_client": issue(out, "rogue-client", rogue_cert, rogue_key, server=False),
        "rogue_ca": rogue,
    }


def _code(fn):
    try:
        fn()
    except RnnServeError as err:
        return err.code
    return "OK"


# ---------------------------------------------------------------- TLS


def test_tls_server_is_reached_only_with_the_right_ca(pki):
    settings = settings_for(
        DEFAULT_ONNX, tls_cert=str(pki["server"].cert), tls_key=str(pki["server"].key)
    )
    with RunningServer(settings) as srv:
        with Client(srv.target, tls_ca=str(pki["ca"].cert), timeout=5) as c:
            assert c.parse("what time is it").intent.name == "HassGetCurrentTime"
        with Client(srv.target, timeout=2, retries=False) as c:  # plaintext to a TLS port
            assert _code(lambda: c.parse("what time is it")) == "UNAVAILABLE"
        with Client(srv.target, tls_ca=str(pki["rogue_ca"].cert), timeout=2, retries=False) as c:
            assert _code(lambda: c.parse("what time is it")) == "UNAVAILABLE"


def test_mutual_tls_refuses_clients_without_a_certificate_from_the_ca(pki):
    settings = settings_for(
        DEFAULT_ONNX,
        tls_cert=str(pki["server"].cert),
        tls_key=str(pki["server"].key),
        tls_client_ca=str(pki["ca"].cert),
    )
    ca = str(pki["ca"].cert)
    with RunningServer(settings) as srv:
        good = Client(
            srv.target,
            tls_ca=ca,
            tls_cert=str(pki["client"].cert),
            tls_key=str(pki["client"].key),
            timeout=5,
        )
        with good:
            assert good.parse("what time is it").intent.name == "HassGetCurrentTime"
        with Client(srv.target, tls_ca=ca, timeout=2, retries=False) as anon:
            assert _code(lambda: anon.parse("what time is it")) == "UNAVAILABLE"
        rogue = Client(
            srv.target,
            tls_ca=ca,
            tls_cert=str(pki["rogue_client"].cert),
            tls_key=str(pki["rogue_client"].key),
            timeout=2,
            retries=False,
        )
        with rogue:
            assert _code(lambda: rogue.parse("what time is it")) == "UNAVAILABLE"


# ---------------------------------------------------------------- tokens


@pytest.fixture
def token_server(tmp_path):
    path = tmp_path / "tokens"
    path.write_text("# accepted tokens\n" + "\n".join(TOKENS) + "\n")
    with RunningServer(settings_for(DEFAULT_ONNX, auth_token_file=str(path))) as srv:
        yield srv, path


def test_tokens_guard_every_rpc_but_health_and_reflection(token_server, caplog):
    srv, _ = token_server
    caplog.set_level(logging.DEBUG, logger="rnnserve")
    with Client(srv.target, timeout=5, retries=False) as none:
        assert _code(lambda: none.parse("hi there")) == "UNAUTHENTICATED"
        assert none.health() == "SERVING"
    with Client(srv.target, token="wrong", timeout=5, retries=False) as wrong:
        assert _code(lambda: wrong.parse("hi there")) == "PERMISSION_DENIED"
        assert _code(lambda: wrong.info()) == "PERMISSION_DENIED"
    for token in TOKENS:
        with Client(srv.target, token=token, timeout=5) as ok:
            assert ok.parse("what time is it").intent.name == "HassGetCurrentTime"
    with grpc.insecure_channel(srv.target) as ch:
        stub = pb_grpc.ParserStub(ch)
        req = pb.ParseRequest(text="what time is it")
        for md in (
            [("x-api-key", TOKENS[0])],
            [("authorization", f"Basic {TOKENS[0]}")],
            [("authorization", "Bearer ")],
        ):
            with pytest.raises(grpc.RpcError) as err:
                stub.Parse(req, metadata=md, timeout=5)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED, md
        v2stub = v2_grpc.GRPCInferenceServiceStub(ch)
        with pytest.raises(grpc.RpcError) as err:
            v2stub.ModelMetadata(v2.ModelMetadataRequest(name="intent"), timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        refl = reflection_pb2_grpc.ServerReflectionStub(ch)
        (resp,) = list(
            refl.ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
            )
        )
        assert resp.list_services_response.service
    assert all(t not in caplog.text for t in TOKENS)


def test_rewriting_the_token_file_rotates_tokens(token_server):
    srv, path = token_server
    path.write_text("rotated-token-3\n")
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    with Client(srv.target, token=TOKENS[0], timeout=5, retries=False) as old:
        assert _code(lambda: old.parse("hi there")) == "PERMISSION_DENIED"
    with Client(srv.target, token="rotated-token-3", timeout=5) as new:
        assert new.parse("what time is it").intent.name == "HassGetCurrentTime"


# ---------------------------------------------------------------- backpressure and deadlines

SLOW_BATCHES = {"inference_threads": 0, "max_batch_size": 64, "max_batch_delay_us": 300_000}


async def _many(target, n, timeout=10.0):
    async with grpc.aio.insecure_channel(target) as ch:
        stub = pb_grpc.ParserStub(ch)
        calls = [
            stub.Parse(pb.ParseRequest(text="what time is it"), timeout=timeout) for _ in range(n)
        ]
        return await asyncio.gather(*calls, return_exceptions=True)


def _batch_rows(srv) -> float:
    for line in generate_latest(srv.app.metrics.registry).decode().splitlines():
        if line.startswith("rnnserve_batch_rows_sum"):
            return float(line.split()[1])
    return 0.0


def test_a_full_admission_queue_answers_resource_exhausted_at_once():
    with RunningServer(settings_for(DEFAULT_ONNX, max_queue=3, **SLOW_BATCHES)) as srv:
        results = asyncio.run(_many(srv.target, 10))
    ok = [r for r in results if isinstance(r, pb.ParseResponse)]
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(ok) == 3 and len(refused) == 7
    assert all(r.code() == grpc.StatusCode.RESOURCE_EXHAUSTED for r in refused)
    assert all(r.intent.name == "HassGetCurrentTime" for r in ok)  # nothing admitted was lost
    assert "retry with backoff" in refused[0].details()


def test_an_expired_request_never_reaches_onnxruntime():
    with RunningServer(settings_for(DEFAULT_ONNX, **SLOW_BATCHES)) as srv:
        (late,) = asyncio.run(_many(srv.target, 1, timeout=0.05))
        assert isinstance(late, grpc.aio.AioRpcError)
        assert late.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        (ok,) = asyncio.run(_many(srv.target, 1))  # runs after the expired one's batch window
        assert isinstance(ok, pb.ParseResponse)
        assert _batch_rows(srv) == 1.0  # only the second request's row was ever run


def test_stream_limit_and_cancelled_streams_free_their_slot(tmp_path):
    path = small_model_file(tmp_path / "uni.onnx", "gru")

    async def go(target, srv):
        async with grpc.aio.insecure_channel(target) as ch:
            stub = pb_grpc.ParserStub(ch)
            first = stub.ParseStream(timeout=10)
            await first.write(pb.ParseStreamRequest(text="turn on"))
            assert (await first.read()).total_steps == 2
            # Refused as it opens. (Writing to it races with the refusal: gRPC's client may then
            # report its own INTERNAL "error from Core" instead of the server's status.)
            second = stub.ParseStream(timeout=10)
            assert await second.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "streams are open" in await second.details()
            first.cancel()
            deadline = time.monotonic() + 10
            while srv.metric("rnnserve_open_streams") and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            assert srv.metric("rnnserve_open_streams") == 0
            third = stub.ParseStream(timeout=10)
            await third.write(pb.ParseStreamRequest(text="kitchen"))
            assert (await third.read()).total_steps == 1
            await third.done_writing()

    with RunningServer(settings_for(path, max_streams=1)) as srv:
        asyncio.run(go(srv.target, srv))


def test_drain_refuses_new_work_and_lets_open_streams_finish(tmp_path):
    path = small_model_file(tmp_path / "uni.onnx", "lstm")

    async def go(srv):
        async with grpc.aio.insecure_channel(srv.target) as ch:
            stub = pb_grpc.ParserStub(ch)
            stream = stub.ParseStream(timeout=20)
            await stream.write(pb.ParseStreamRequest(text="turn on the"))
            await stream.read()
            drain = asyncio.wrap_future(
                asyncio.run_coroutine_threadsafe(srv.app.drain(10), srv.loop)
            )
            deadline = time.monotonic() + 10
            health = health_pb2_grpc.HealthStub(ch)
            serving = health_pb2.HealthCheckResponse.SERVING
            while time.monotonic() < deadline:  # the drain has begun once health says so
                status = (await health.Check(health_pb2.HealthCheckRequest(), timeout=5)).status
                if status != serving:
                    break
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.Parse(pb.ParseRequest(text="what time is it"), timeout=5)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            await stream.write(pb.ParseStreamRequest(text="kitchen lights"))
            last = await stream.read()
            assert last.total_steps == 5
            await stream.done_writing()
            assert await stream.code() == grpc.StatusCode.OK
            await drain

    srv = RunningServer(settings_for(path))
    with srv:
        asyncio.run(go(srv))
        srv.app = None  # drained already


def test_v2_rows_over_the_limit_and_huge_messages_are_refused():
    with (
        RunningServer(
            settings_for(DEFAULT_ONNX, max_batch_rows=4, max_message_bytes=64 * 1024)
        ) as srv,
        grpc.insecure_channel(srv.target) as ch,
    ):
        stub = v2_grpc.GRPCInferenceServiceStub(ch)
        ids = np.ones((5, 3), np.int64)
        r = v2.ModelInferRequest(model_name="intent")
        r.inputs.add(name="input_ids", datatype="INT64", shape=[5, 3])
        r.raw_input_contents.append(ids.tobytes())
        with pytest.raises(grpc.RpcError) as err:
            stub.ModelInfer(r, timeout=5)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        big = v2.ModelInferRequest(model_name="intent")
        big.inputs.add(name="input_ids", datatype="INT64", shape=[1, 20000])
        big.raw_input_contents.append(np.ones((1, 20000), np.int64).tobytes())
        with pytest.raises(grpc.RpcError) as err:
            stub.ModelInfer(big, timeout=5)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert stub.ServerReady(v2.ServerReadyRequest(), timeout=5).ready


def test_connections_past_their_max_age_are_replaced_without_failing_calls(caplog):
    caplog.set_level(logging.DEBUG, logger="rnnserve.server")
    settings = settings_for(DEFAULT_ONNX, max_connection_age=0.2, drain_seconds=5)
    with RunningServer(settings) as srv, Client(srv.target, timeout=5, retries=False) as c:
        codes = []
        end = time.monotonic() + 1.5  # several connection lifetimes
        while time.monotonic() < end:
            codes.append(_code(lambda: c.parse("what time is it")))
    assert len(codes) > 10 and set(codes) == {"OK"}
    peers = {r.peer for r in caplog.records if getattr(r, "method", "") == "Parse"}
    assert len(peers) > 1, "the client kept one connection: max age was not enforced"
