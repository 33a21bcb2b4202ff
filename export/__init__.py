"""Export: Keras model -> ONNX encoder and one-step decoder -> a versioned model package."""
