"""On-disk cache of frozen-encoder features, written in shards so extraction resumes.

Layout under ``root``::

    {encoder}-{output}-{key}/                 key = sha256(encoder, weights id,
        manifest.json                              preprocessing.key(), output)[:12]
        {dataset}-{split}-{ids hash}/
            shard-00000.npy, shard-00000.json  while extracting (features, image ids)
            features.npy, ids.json             once every shard is done

The key includes the preprocessing (input size, scaling, layout, resize filter), so
changing any of them, the weights or the output kind gives a new directory and
never reuses stale features. Every file is written under a temporary name and
renamed into place, and a shard's ``.json`` is written after its ``.npy``, so an
interrupted run leaves only whole shards; the next run skips them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from tqdm import tqdm

from captioner.images import Preprocessing
from training.atomic import write_json, write_npy
from training.datasets.base import CaptionDataset
from training.image_stream import decoded, default_threads

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FEATURES = "features.npy"
IDS = "ids.json"


class FeatureCacheError(ValueError):
    """Features that are not in the cache, or an encoder that does not fit it."""


class FeatureCache:
    """Features of one encoder (weights, preprocessing, output kind) for any dataset.

    Args:
        root: folder holding every cache.
        encoder_name: e.g. ``xception``.
        weights_id: identity of the weights (:func:`training.encoder_weights.weights_id`).
        preprocessing: how images become encoder inputs.
        output: ``pooled`` or ``grid``.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        encoder_name: str,
        weights_id: str,
        preprocessing: Preprocessing,
        output: str,
    ):
        self.root = Path(root)
        self.encoder_name = encoder_name
        self.weights_id = weights_id
        self.preprocessing = preprocessing
        self.output = output
        identity = json.dumps([encoder_name, weights_id, preprocessing.key(), output])
        self.key = hashlib.sha256(identity.encode()).hexdigest()[:12]
        self.directory = self.root / f"{encoder_name}-{output}-{self.key}"
        self._index: dict[str, tuple[Path, int]] | None = None

    def extract(
        self,
        dataset: CaptionDataset,
        encoder,
        batch_size: int = 32,
        shard_size: int = 256,
        progress: bool = True,
        threads: int | None = None,
    ) -> np.ndarray:
        """Features of every image of DATASET, in ``dataset.examples`` order.

        Shards already on disk with the same image ids are reused; only the missing
        ones run through ENCODER (anything with ``predict_on_batch``, normally the
        model of :func:`training.encoders.build_encoder`). Images are read and
        preprocessed by a ``tf.data`` pipeline, ``threads`` at a time, ahead of the
        encoder, so decoding overlaps the encoder's work
        (see :func:`training.image_stream.decoded`).

        Args:
            threads: images decoded in parallel; default
                :func:`training.image_stream.default_threads`, 0 lets tf.data tune it.

        Returns:
            A read-only memory map ``[N, ...]`` of float32.
        """
        if batch_size < 1 or shard_size < 1:
            raise ValueError("batch_size and shard_size must be positive")
        self._check_input(encoder)
        if not dataset.examples:
            raise FeatureCacheError(f"{dataset.name}[{dataset.split}] has no images")
        ids = [ex.image_id for ex in dataset.examples]
        folder = self.directory / _dataset_folder(dataset.name, dataset.split, ids)
        if _read_ids(folder / IDS) == ids and (folder / FEATURES).is_file():
            return np.load(folder / FEATURES, mmap_mode="r")
        folder.mkdir(parents=True, exist_ok=True)
        self._write_manifest()

        starts = range(0, len(ids), shard_size)
        todo = [
            s for s in starts if not _shard_done(folder, s // shard_size, ids[s : s + shard_size])
        ]
        done = len(ids) - sum(len(ids[s : s + shard_size]) for s in todo)
        order = [i for s in todo for i in range(s, min(s + shard_size, len(ids)))]
        images = decoded(dataset, order, self.preprocessing, threads, prefetch=2 * batch_size)
        began = time.perf_counter()
        with tqdm(
            total=len(ids),
            initial=done,
            desc=f"{self.encoder_name} {self.output} features",
            unit="img",
            disable=not progress,
        ) as bar:
            bar.set_postfix(resumed=done)
            for start in todo:
                count = len(ids[start : start + shard_size])
                features = self._encode(images, count, encoder, batch_size, bar)
                index = start // shard_size
                write_npy(_shard(folder, index, ".npy"), features)
                write_json(
                    _shard(folder, index, ".json"), ids[start : start + shard_size], indent=None
                )
        if order:
            seconds = time.perf_counter() - began
            log.info(
                "%s %s features of %d images in %.1f s: %.1f images/s (batch %d, %s threads)",
                self.encoder_name, self.output, len(order), seconds, len(order) / seconds,
                batch_size, threads if threads is not None else f"{default_threads()} (default)",
            )  # fmt: skip
        self._index = None
        return self._consolidate(folder, ids, len(starts))

    def load(self, image_ids: Iterable[str]) -> np.ndarray:
        """Features ``[len(image_ids), ...]`` of images extracted before, in the order given.

        Raises:
            FeatureCacheError: some ids have no features in this cache.
        """
        image_ids = list(image_ids)
        if self._index is None or any(i not in self._index for i in image_ids):
            self._index = self._build_index()
        missing = [i for i in image_ids if i not in self._index]
        if missing:
            raise FeatureCacheError(
                f"{len(missing)} of {len(image_ids)} images have no features in "
                f"{self.directory} (first: {', '.join(missing[:5])}); run extract first"
            )
        arrays: dict[Path, np.ndarray] = {}
        rows = []
        for image_id in image_ids:
            path, row = self._index[image_id]
            if path not in arrays:
                arrays[path] = np.load(path, mmap_mode="r")
            rows.append(arrays[path][row])
        return np.stack(rows) if rows else np.zeros((0,), np.float32)

    @staticmethod
    def _encode(images: Iterator[np.ndarray], count: int, encoder, batch_size, bar) -> np.ndarray:
        """The next COUNT images of the pipeline through ENCODER, BATCH_SIZE at a time."""
        outputs = []
        for start in range(0, count, batch_size):
            batch = np.stack([next(images) for _ in range(min(batch_size, count - start))])
            outputs.append(np.asarray(encoder.predict_on_batch(batch), dtype=np.float32))
            bar.update(len(batch))
        return np.concatenate(outputs)

    def _consolidate(self, folder: Path, ids: list[str], shards: int) -> np.ndarray:
        """Join the shards into one file, so callers get a single memory map."""
        first = np.load(_shard(folder, 0, ".npy"), mmap_mode="r")
        temporary = folder / f".{FEATURES}.{os.getpid()}.tmp"
        joined = np.lib.format.open_memmap(
            temporary, mode="w+", dtype=np.float32, shape=(len(ids), *first.shape[1:])
        )
        row = 0
        for index in range(shards):
            shard = np.load(_shard(folder, index, ".npy"), mmap_mode="r")
            joined[row : row + len(shard)] = shard
            row += len(shard)
        joined.flush()
        del joined, first
        os.replace(temporary, folder / FEATURES)
        write_json(folder / IDS, ids, indent=None)
        for index in range(shards):
            for suffix in (".json", ".npy"):
                _shard(folder, index, suffix).unlink(missing_ok=True)
        return np.load(folder / FEATURES, mmap_mode="r")

    def _build_index(self) -> dict[str, tuple[Path, int]]:
        index: dict[str, tuple[Path, int]] = {}
        for ids_file in sorted(self.directory.glob("*/*.json")):
            ids = _read_ids(ids_file)
            array = ids_file.with_name(FEATURES if ids_file.name == IDS else f"{ids_file.stem}.npy")
            if ids is not None and array.is_file():
                index.update((image_id, (array, row)) for row, image_id in enumerate(ids))
        return index

    def _check_input(self, encoder) -> None:
        shape = getattr(encoder, "input_shape", None)
        expected = (self.preprocessing.height, self.preprocessing.width)
        if isinstance(shape, tuple) and len(shape) == 4 and tuple(shape[1:3]) != expected:
            raise FeatureCacheError(
                f"encoder takes {shape[1]}x{shape[2]} images but the cache's preprocessing "
                f"is {self.preprocessing.key()}"
            )

    def _write_manifest(self) -> None:
        manifest = {
            "encoder": self.encoder_name,
            "weights_id": self.weights_id,
            "preprocessing": self.preprocessing.to_dict(),
            "preprocessing_key": self.preprocessing.key(),
            "output": self.output,
        }
        write_json(self.directory / MANIFEST, manifest, indent=None)


def _dataset_folder(name: str, split: str, ids: list[str]) -> str:
    """One folder per dataset sample, so different samples never overwrite each other."""
    digest = hashlib.sha256("\n".join(ids).encode()).hexdigest()[:8]
    return f"{name}-{split}-{digest}"


def _shard(folder: Path, index: int, suffix: str) -> Path:
    return folder / f"shard-{index:05d}{suffix}"


def _shard_done(folder: Path, index: int, ids: list[str]) -> bool:
    """Whether a shard of these image ids is on disk (its json is written last)."""
    return (
        _read_ids(_shard(folder, index, ".json")) == ids and _shard(folder, index, ".npy").is_file()
    )


def _read_ids(path: Path) -> list[str] | None:
    try:
        ids = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return ids if isinstance(ids, list) else None
