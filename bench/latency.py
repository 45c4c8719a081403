"""Single-request latency at concurrency 1: raw onnxruntime, empty gRPC call, Parse, ModelInfer.

python bench/latency.py [--model models/intent.onnx] [--n 2000]
The server runs in its own process (as in production); the client is a blocking grpc stub.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from modelspec.meta import ModelMetadata  # noqa: E402
from rnnserve.kserve import grpc_predict_v2_pb2 as v2  # noqa: E402
from rnnserve.kserve import grpc_predict_v2_pb2_grpc as v2_grpc  # noqa: E402
from rnnserve.v1 import rnnserve_pb2 as pb  # noqa: E402
from rnnserve.v1 import rnnserve_pb2_grpc as pb_grpc  # noqa: E402

TEXT = "turn on the lights in the kitchen please"


def timed(fn, n: int) -> dict[str, float]:
    for _ in range(min(200, n)):
        fn()
    lat = np.empty(n)
    for i in range(n):
        t = time.perf_counter()
        fn()
        lat[i] = time.perf_counter() - t
    us = lat * 1e6
    return {
        "p50_us": float(np.percentile(us, 50)),
        "p99_us": float(np.percentile(us, 99)),
        "mean_us": float(us.mean()),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(ROOT / "models" / "intent.onnx"))
    ap.add_argument("--n", type=int, default=2000)
    args = ap.parse_args()

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    sess = ort.InferenceSession(args.model, so, providers=["CPUExecutionProvider"])
    meta = ModelMetadata.from_json(sess.get_modelmeta().custom_metadata_map["rnnserve"])
    tok = meta.make_tokenizer()
    ids = np.array([tok.ids(tok.tokenize(TEXT))], dtype=np.int64)
    lengths = np.array([ids.shape[1]], dtype=np.int64)
    results = {"tokens": int(ids.shape[1])}
    results["onnxruntime"] = timed(
        lambda: sess.run(None, {"input_ids": ids, "lengths": lengths}), args.n
    )

    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "server",
            "--model",
            args.model,
            "--port",
            "0",
            "--metrics-port",
            "-1",
        ],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    port = 0
    for line in proc.stderr:  # type: ignore[union-attr]
        rec = json.loads(line)
        port = rec.get("port", port)
        if rec["msg"] == "serving":
            break
    try:
        ch = grpc.insecure_channel(f"127.0.0.1:{port}")
        health = health_pb2_grpc.HealthStub(ch)
        parser = pb_grpc.ParserStub(ch)
        infer = v2_grpc.GRPCInferenceServiceStub(ch)
        hreq = health_pb2.HealthCheckRequest()
        preq = pb.ParseRequest(text=TEXT)
        ireq = v2.ModelInferRequest(model_name=Path(args.model).stem)
        ireq.inputs.add(name="input_ids", datatype="INT64", shape=list(ids.shape))
        ireq.inputs.add(name="lengths", datatype="INT64", shape=[1])
        ireq.raw_input_contents[:] = [ids.tobytes(), lengths.tobytes()]
        results["empty_rpc"] = timed(lambda: health.Check(hreq, timeout=5), args.n)
        results["parse"] = timed(lambda: parser.Parse(preq, timeout=5), args.n)
        results["model_infer"] = timed(lambda: infer.ModelInfer(ireq, timeout=5), args.n)
    finally:
        proc.terminate()
        proc.wait(30)
    floor = results["onnxruntime"]["p50_us"] + results["empty_rpc"]["p50_us"]
    for k in ("parse", "model_infer"):
        results[k]["p50_over_floor"] = results[k]["p50_us"] / floor
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
