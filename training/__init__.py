"""Training: datasets, encoders, Keras captioning models, decoding and evaluation."""
