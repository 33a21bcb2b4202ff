"""tf.data input pipelines for teacher forcing.

Inputs are prepared once with the shared numpy preprocessing (or taken from the
feature cache for frozen encoders); each epoch pairs every image with one of its
captions, drawn with a seed derived from the epoch so that a resumed run sees
the same batches it would have seen.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from captioner.images import Preprocessing, preprocess
from captioner.text import Vocabulary
from training.datasets.base import CaptionDataset


@dataclass
class TeacherForcingData:
    """Per-image inputs (images or features) and every caption as padded id sequences.

    ``image_weight`` (one per image, ``None`` for all 1) is how often an image is shown
    per epoch: weight 2 twice, 0.5 in half the epochs, drawn reproducibly per epoch.
    """

    inputs: np.ndarray
    input_key: str
    captions_in: np.ndarray
    captions_out: np.ndarray
    caption_image: np.ndarray
    image_weight: np.ndarray | None = None

    def per_epoch(self, all_captions: bool = False) -> int:
        """The captions an epoch shows on average (for the schedule's steps per epoch)."""
        if self.image_weight is None:
            return len(self.caption_image) if all_captions else len(self.inputs)
        if all_captions:
            return int(round(float(self.image_weight[self.caption_image].sum())))
        return int(round(float(self.image_weight.sum())))

    def epoch(
        self, epoch: int, seed: int, batch_size: int, all_captions: bool = False
    ) -> tf.data.Dataset:
        """One caption per image (or every caption), chosen and shuffled reproducibly."""
        return self._batches(self.epoch_captions(epoch, seed, all_captions), batch_size)

    def epoch_captions(self, epoch: int, seed: int, all_captions: bool = False) -> np.ndarray:
        """The caption rows epoch EPOCH shows, in order (what :meth:`epoch` batches)."""
        rng = np.random.default_rng([seed, epoch])
        if self.image_weight is not None:
            return self._weighted(rng, all_captions)
        if all_captions:
            return rng.permutation(len(self.caption_image))
        per_image: dict[int, list[int]] = {}
        for caption, image in enumerate(self.caption_image):
            per_image.setdefault(int(image), []).append(caption)
        chosen = np.array([rng.choice(per_image[i]) for i in sorted(per_image)])
        rng.shuffle(chosen)
        return chosen

    def _weighted(self, rng: np.random.Generator, all_captions: bool) -> np.ndarray:
        """Caption indices of one epoch with each image shown as often as its weight says."""
        assert self.image_weight is not None
        whole = np.floor(self.image_weight)
        shows = (whole + (rng.random(len(whole)) < self.image_weight - whole)).astype(int)
        if all_captions:
            chosen = np.repeat(np.arange(len(self.caption_image)), shows[self.caption_image])
        else:
            per_image: dict[int, list[int]] = {}
            for caption, image in enumerate(self.caption_image):
                per_image.setdefault(int(image), []).append(caption)
            chosen = np.array(
                [c for i in sorted(per_image) for c in rng.choice(per_image[i], shows[i])],
                dtype=np.int64,
            )
        return rng.permutation(chosen)

    def _batches(self, captions: np.ndarray, batch_size: int) -> tf.data.Dataset:
        inputs = tf.constant(self.inputs)
        key = self.input_key
        ds = tf.data.Dataset.from_tensor_slices(
            (self.caption_image[captions], self.captions_in[captions], self.captions_out[captions])
        )
        ds = ds.batch(batch_size)
        ds = ds.map(
            lambda i, x, y: ({key: tf.gather(inputs, i), "tokens": x}, y),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        return ds.prefetch(tf.data.AUTOTUNE)


def encode_captions(
    dataset: CaptionDataset, vocab: Vocabulary
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Input ids, target ids (each [C, max_length + 1]) and the image index of every caption."""
    ins, outs, owner = [], [], []
    for index, example in enumerate(dataset.examples):
        for caption in example.captions:
            x, y = vocab.sequences(caption)
            ins.append(x)
            outs.append(y)
            owner.append(index)
    return np.array(ins, np.int32), np.array(outs, np.int32), np.array(owner, np.int32)


def preprocess_images(
    dataset: CaptionDataset, spec: Preprocessing, progress: bool = True
) -> np.ndarray:
    """Every image of a dataset through the one shared preprocessing, stacked."""
    out = np.empty((len(dataset), spec.height, spec.width, 3), np.float32)
    for i, example in enumerate(
        tqdm(dataset.examples, desc="preprocess", disable=not progress, leave=False)
    ):
        out[i] = preprocess(dataset.image(example), spec)
    return out


def teacher_forcing_data(
    dataset: CaptionDataset,
    vocab: Vocabulary,
    inputs: np.ndarray,
    input_key: str,
    image_weight: np.ndarray | None = None,
) -> TeacherForcingData:
    ins, outs, owner = encode_captions(dataset, vocab)
    return TeacherForcingData(inputs, input_key, ins, outs, owner, image_weight)


def masked_cross_entropy(y_true, logits):
    """Mean cross-entropy over real tokens: padding (id 0) neither counts nor dilutes."""
    y_true = tf.cast(y_true, tf.int32)
    mask = tf.cast(tf.not_equal(y_true, 0), tf.float32)
    loss = tf.keras.losses.sparse_categorical_crossentropy(
        y_true, tf.cast(logits, tf.float32), from_logits=True
    )
    return tf.reduce_sum(loss * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)
