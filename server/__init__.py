"""The rnnserve gRPC server (onnxruntime; never imports torch)."""
