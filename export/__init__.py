"""Training side: data, the torch model, training, ONNX export, parity, quantization."""
