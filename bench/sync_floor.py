"""A floor for `make bench`, not a product path: the smallest synchronous grpcio server that
answers KServe v2 ModelInfer with onnxruntime inline (no batching, no limits, no metrics).
It also answers the three describe calls Triton's perf_analyzer makes before a run.

python bench/sync_floor.py MODEL.onnx  -> prints the bound port on stdout, serves until killed
"""

import sys
from concurrent import futures
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rnnserve.kserve import grpc_predict_v2_pb2 as pb
from rnnserve.kserve import grpc_predict_v2_pb2_grpc as pb_grpc


class Floor(pb_grpc.GRPCInferenceServiceServicer):
    """ModelInfer: raw INT64 input_ids in, the requested outputs back as raw FP32."""

    def __init__(self, path: str) -> None:
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        self.session = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        self.outputs = [o.name for o in self.session.get_outputs()]

    def ServerLive(self, request, context):  # noqa: N802
        return pb.ServerLiveResponse(live=True)

    def ServerMetadata(self, request, context):  # noqa: N802
        return pb.ServerMetadataResponse(name="sync-floor", version="0")

    def ModelMetadata(self, request, context):  # noqa: N802
        resp = pb.ModelMetadataResponse(name=request.name, versions=["1"], platform="onnxruntime")
        resp.inputs.add(name="input_ids", datatype="INT64", shape=[-1, -1])
        for o in self.session.get_outputs():
            resp.outputs.add(name=o.name, datatype="FP32", shape=[-1] * len(o.shape))
        return resp

    def ModelConfig(self, request, context):  # noqa: N802
        resp = pb.ModelConfigResponse()
        cfg = resp.config
        cfg.name, cfg.platform, cfg.max_batch_size = request.name, "onnxruntime_onnx", 0
        cfg.input.add(name="input_ids", data_type=pb.TYPE_INT64, dims=[-1, -1])
        for o in self.session.get_outputs():
            cfg.output.add(name=o.name, data_type=pb.TYPE_FP32, dims=[-1] * len(o.shape))
        return resp

    def ModelInfer(self, request, context):  # noqa: N802
        t = request.inputs[0]
        ids = np.frombuffer(request.raw_input_contents[0], dtype=np.int64).reshape(list(t.shape))
        lengths = np.full((ids.shape[0],), ids.shape[1], dtype=np.int64)
        names = [o.name for o in request.outputs] or self.outputs
        outs = self.session.run(names, {"input_ids": ids, "lengths": lengths})
        resp = pb.ModelInferResponse(model_name=request.model_name, id=request.id)
        for name, arr in zip(names, outs):
            resp.outputs.add(name=name, datatype="FP32", shape=list(arr.shape))
            resp.raw_output_contents.append(np.ascontiguousarray(arr, np.float32).tobytes())
        return resp


def main() -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(Floor(sys.argv[1]), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
