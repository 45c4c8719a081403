"""The model-file contract shared by the exporter and the server (no torch, no onnxruntime)."""
