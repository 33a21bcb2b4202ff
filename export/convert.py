"""Keras -> ONNX with tf2onnx: the encoder and a one-step decoder with explicit state.

The encoder graph takes scaled NHWC float32 images (pixel scaling stays in
``captioner.images``, the one implementation) and returns the image features
and the decoder's initial state. The decoder graph is one step: previous
token, state and features in; log-probabilities, new state (and attention
weights for attention models) out. Search runs outside, in numpy, so the server
can batch the steps of many requests and beams.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import tensorflow as tf
import tf2onnx

from training.models.captioner import CaptionModel

OPSET = 17
ENCODER_INPUT = "images"
ENCODER_OUTPUTS = ("features", "init_h", "init_c")
DECODER_INPUTS = ("features", "token", "h", "c")
DECODER_OUTPUTS = ("log_probs", "h_out", "c_out")
ATTENTION_OUTPUT = "attention"


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int | None, ...]
    dtype: str

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


def _name_batch_axis(path: Path) -> None:
    """Give every dynamic first axis the name ``batch`` (tf2onnx leaves ``unk__N``)."""
    model = onnx.load(str(path))
    for value in [*model.graph.input, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_param = "batch"
    onnx.save(model, str(path))


def _infos(path: Path, inputs: bool) -> list[TensorInfo]:
    model = onnx.load(str(path))
    values = model.graph.input if inputs else model.graph.output
    out = []
    for value in values:
        t = value.type.tensor_type
        shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim)
        out.append(
            TensorInfo(value.name, shape, onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name)
        )
    return out


def export_encoder(model: CaptionModel, path: Path, opset: int = OPSET) -> list[TensorInfo]:
    pre = model.config.preprocessing()

    def encoder(images):
        features = model.encode(images)
        h, c = model.initial_state(features)
        return {"features": features, "init_h": h, "init_c": c}

    signature = [tf.TensorSpec([None, pre.height, pre.width, 3], tf.float32, name=ENCODER_INPUT)]
    tf2onnx.convert.from_function(
        tf.function(encoder, autograph=False),
        input_signature=signature,
        opset=opset,
        output_path=str(path),
    )
    _name_batch_axis(path)
    return [*_infos(path, True), *_infos(path, False)]


def export_decoder(model: CaptionModel, path: Path, opset: int = OPSET) -> list[TensorInfo]:
    pre = model.config.preprocessing()
    features = model.encode(np.zeros((1, pre.height, pre.width, 3), np.float32))
    units = model.decoder.units
    attention = model.config.architecture == "attention"

    def step(features, token, h, c):
        log_probs, (h_out, c_out), alpha = model.step(features, token, [h, c])
        outputs = {"log_probs": log_probs, "h_out": h_out, "c_out": c_out}
        if attention:
            outputs[ATTENTION_OUTPUT] = alpha
        return outputs

    signature = [
        tf.TensorSpec([None, *features.shape[1:]], tf.float32, name="features"),
        tf.TensorSpec([None], tf.int32, name="token"),
        tf.TensorSpec([None, units], tf.float32, name="h"),
        tf.TensorSpec([None, units], tf.float32, name="c"),
    ]
    tf2onnx.convert.from_function(
        tf.function(step, autograph=False),
        input_signature=signature,
        opset=opset,
        output_path=str(path),
    )
    _name_batch_axis(path)
    return [*_infos(path, True), *_infos(path, False)]
