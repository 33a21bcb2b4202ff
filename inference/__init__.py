"""The inference service: FastAPI on ONNX Runtime, batched decoding, Prometheus and OpenTelemetry.

Nothing here imports TensorFlow, Keras or tf2onnx (a test enforces it).
"""
