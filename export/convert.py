"""Keras -> ONNX with tf2onnx: the encoder and a one-step decoder with explicit state.

The encoder graph takes scaled NHWC float32 images (pixel scaling stays in
``captioner.images``, the one implementation) and returns the image features
and the decoder's initial state. The decoder graph is one step: previous
token, state and features in; log-probabilities, new state (and attention
weights for attention models) out. Search runs outside, in numpy, so the server
can batch the steps of many requests and beams.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import tensorflow as tf
import tf2onnx

from captioner.package import (
    ATTENTION_OUTPUT,
    DECODER_INPUTS,
    DECODER_OUTPUTS,
    ENCODER_INPUT,
    ENCODER_OUTPUTS,
    Graph,
    Tensor,
)
from training.models.captioner import CaptionModel

OPSET = 17


def _name_batch_axis(path: Path) -> None:
    """Give every dynamic first axis the name ``batch`` (tf2onnx leaves ``unk__N``)."""
    model = onnx.load(str(path))
    for value in [*model.graph.input, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_param = "batch"
    onnx.save(model, str(path))


def _tensors(values) -> list[Tensor]:
    out = []
    for value in values:
        t = value.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name
        out.append(Tensor(name=value.name, shape=shape, dtype=dtype))
    return out


def _graph(path: Path) -> Graph:
    """The tensor contract of the ONNX file at PATH, as the manifest records it."""
    model = onnx.load(str(path))
    return Graph(inputs=_tensors(model.graph.input), outputs=_tensors(model.graph.output))


def export_encoder(model: CaptionModel, path: Path, opset: int = OPSET) -> Graph:
    pre = model.config.preprocessing()

    def encoder(images):
        features = model.encode(images)
        h, c = model.initial_state(features)
        return dict(zip(ENCODER_OUTPUTS, (features, h, c), strict=True))

    signature = [tf.TensorSpec([None, pre.height, pre.width, 3], tf.float32, name=ENCODER_INPUT)]
    tf2onnx.convert.from_function(
        tf.function(encoder, autograph=False),
        input_signature=signature,
        opset=opset,
        output_path=str(path),
    )
    _name_batch_axis(path)
    return _graph(path)


def export_decoder(model: CaptionModel, path: Path, opset: int = OPSET) -> Graph:
    pre = model.config.preprocessing()
    features = model.encode(np.zeros((1, pre.height, pre.width, 3), np.float32))
    units = model.decoder.units
    attention = model.config.architecture == "attention"

    def step(features, token, h, c):
        log_probs, (h_out, c_out), alpha = model.step(features, token, [h, c])
        outputs = dict(zip(DECODER_OUTPUTS, (log_probs, h_out, c_out), strict=True))
        if attention:
            outputs[ATTENTION_OUTPUT] = alpha
        return outputs

    shapes = ([None, *features.shape[1:]], [None], [None, units], [None, units])
    dtypes = (tf.float32, tf.int32, tf.float32, tf.float32)
    signature = [
        tf.TensorSpec(shape, dtype, name=name)
        for shape, dtype, name in zip(shapes, dtypes, DECODER_INPUTS, strict=True)
    ]
    tf2onnx.convert.from_function(
        tf.function(step, autograph=False),
        input_signature=signature,
        opset=opset,
        output_path=str(path),
    )
    _name_batch_axis(path)
    return _graph(path)
