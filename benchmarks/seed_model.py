"""The seed's model and its inference loop, rebuilt to benchmark the inference service against.

The seed captioned with an Xception (299x299) + LSTM *merge* model over a Flickr8k
vocabulary, and decoded greedily by calling Keras ``model.predict`` once per word
on the whole prefix, pre-padded to the maximum length. Only speed and agreement
are measured here, so every weight is random (nothing may be downloaded); the
shapes, and therefore the cost, are the seed's.

    python benchmarks/seed_model.py [--out runs/bench/xception_merge] [--images 4]

builds (or reuses) the model and its package and checks the seed's loop against
the package's ONNX decoder on real photos: seconds per caption and whether the
word ids agree.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import keras
import numpy as np

from captioner.images import Preprocessing
from captioner.text import Vocabulary
from training.models.captioner import CaptionModel, ModelConfig
from training.run_dir import RunDir, TrainedModel

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
# ../shared/data seen from the repository root, whatever the working directory is.
SHARED_DATA = ROOT.parent / "shared" / "data"
FLICKR8K_TEXT = SHARED_DATA / "flickr8k_text"
REAL_PHOTOS = SHARED_DATA / "real_photos"


def seed_vocabulary(flickr_text: Path | None) -> Vocabulary:
    """The vocabulary the trainer builds (min count 1, longest caption) from Flickr8k train.

    Falls back to the ``shapes`` training captions when the Flickr8k text is absent;
    the model is then far smaller than the seed's, which a log line says.
    """
    if flickr_text is not None and Path(flickr_text).is_dir():
        from training.datasets.flickr import load_flickr8k_original

        # Only the captions are needed; the images are never read (check=False).
        examples = load_flickr8k_original(flickr_text, flickr_text, "train", check=False)
        return Vocabulary.build(c for ex in examples for c in ex.captions)
    from training.datasets.shapes import load_shapes

    log.warning(
        "no Flickr8k text at %s: using the shapes vocabulary, much smaller than the seed's",
        flickr_text,
    )
    return Vocabulary.build(load_shapes("train").all_captions())


def build_xception_merge(
    out_dir: Path,
    flickr_text: Path | None = FLICKR8K_TEXT,
    seed: int = 0,
    variants: tuple[str, ...] = ("int8",),
) -> tuple[Path, Path]:
    """Build, or reuse, the seed's model with random weights and its package.

    Args:
        out_dir: gets ``model/`` (as the trainer writes it) and ``package/``.
        flickr_text: the folder with ``Flickr8k.token.txt`` and the split files.
        seed: seeds every random weight, so rebuilding gives the same model.
        variants: precision variants besides fp32 the package must offer.

    Returns:
        ``(model_dir, package_dir)``.
    """
    from captioner.package import MANIFEST, open_package
    from export.package import build_package

    run = RunDir(out_dir)
    model_dir, package_dir = run.model_dir, run.package_dir
    model_files = (RunDir.MODEL_CONFIG_FILE, RunDir.WEIGHTS_FILE, RunDir.VOCAB_FILE)
    saved = all((model_dir / name).is_file() for name in model_files)
    if saved and (package_dir / MANIFEST).is_file():
        if set(variants) <= set(open_package(package_dir).variants()):
            log.info("reusing the seed model in %s and its package in %s", model_dir, package_dir)
            return model_dir, package_dir
    started = time.perf_counter()
    if saved:
        log.info("reusing the seed model in %s; rebuilding its package", model_dir)
        shutil.rmtree(package_dir, ignore_errors=True)
        build_package(model_dir, package_dir, name="seed-xception-merge", variants=variants)
        return model_dir, package_dir
    vocab = seed_vocabulary(flickr_text)
    log.info("vocabulary: %d tokens, max length %d words", len(vocab), vocab.max_length)
    keras.utils.set_random_seed(seed)
    config = ModelConfig(
        architecture="merge", vocab_size=len(vocab), encoder="xception", input_size=299
    )
    model = CaptionModel(config, encoder_weights="random")
    model.build_all()
    TrainedModel(model, vocab).save(model_dir)
    log.info("model saved in %s; exporting Xception to ONNX (about a minute) ...", model_dir)
    build_package(model_dir, package_dir, name="seed-xception-merge", variants=variants)
    log.info("package in %s, built in %.0f s", package_dir, time.perf_counter() - started)
    return model_dir, package_dir


class SeedLoop:
    """The seed's inference: Keras encoder, then ``model.predict`` once per word.

    Args:
        model_dir: a model directory as :func:`build_xception_merge` writes it.

    Attributes:
        vocab: the model's vocabulary; ``vocab.max_length`` is the padded length.
        preprocessing: how images must be prepared for ``features``.
        encoder: images to pooled features [B, 2048].
        model: ``[features [B, 2048], pre-padded tokens [B, max_length]]`` to the
            next word's probabilities [B, V].
    """

    def __init__(self, model_dir: Path):
        trained = TrainedModel.load(model_dir)
        caption_model, self.vocab = trained.model, trained.vocab
        self.preprocessing = caption_model.config.preprocessing()
        self.encoder = caption_model.encoder
        dim = int(self.encoder.output.shape[-1])
        features = keras.Input((dim,), name="features")
        tokens = keras.Input((self.vocab.max_length,), dtype="int32", name="tokens")
        # The decoder gives logits at every position; with pre-padding (masked by
        # the embedding's zero mask) the last position is the newest word's.
        logits = caption_model.decoder(features, tokens)
        probs = keras.layers.Softmax(name="probs")(logits[:, -1, :])
        self.model = keras.Model([features, tokens], probs, name="seed_inference")

    def features(self, images: np.ndarray) -> np.ndarray:
        """Pooled features [B, 2048] of preprocessed images [B, 299, 299, 3]."""
        return self.encoder.predict(images, verbose=0)

    def caption(self, features_row: np.ndarray) -> list[int]:
        """Greedy word ids for one image's features, without ``<start>`` and ``<end>``.

        As the seed did: one ``model.predict`` per word, the whole prefix re-fed
        each time, so word k costs a Keras call over ``max_length`` steps.
        """
        length = self.vocab.max_length
        prefix = [self.vocab.start_id]
        batch = np.asarray(features_row, dtype=np.float32)[None]
        for _ in range(length):
            padded = keras.utils.pad_sequences([prefix], maxlen=length, padding="pre")
            probs = self.model.predict([batch, padded], verbose=0)
            word = int(np.argmax(probs[0]))
            if word == self.vocab.end_id:
                break
            prefix.append(word)
        return prefix[1:]


def load_photos(count: int, spec: Preprocessing) -> np.ndarray:
    """The first COUNT real photos, preprocessed as the package says."""
    from captioner.images import preprocess_bytes

    paths = sorted(REAL_PHOTOS.glob("*.jpg"))[:count]
    if not paths:
        raise FileNotFoundError(f"no .jpg photos in {REAL_PHOTOS}")
    return np.stack([preprocess_bytes(p.read_bytes(), spec) for p in paths])


def timed(caption: Callable[[np.ndarray], list[int]], rows: np.ndarray) -> tuple[list, float]:
    """Word ids for each feature row, and seconds per caption after one warm-up caption."""
    caption(rows[0])  # Keras builds its predict function on first use
    started = time.perf_counter()
    tokens = [caption(row) for row in rows]
    return tokens, (time.perf_counter() - started) / len(rows)


def main(argv: Sequence[str] | None = None) -> None:
    from captioner.decoding import DecodeOptions, decode
    from captioner.package import open_package
    from captioner.runtime import OnnxCaptioner

    parser = argparse.ArgumentParser(description="The seed's loop against the ONNX decoder.")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/xception_merge"))
    parser.add_argument("--flickr-text", type=Path, default=FLICKR8K_TEXT)
    parser.add_argument("--images", type=int, default=4, help="real photos to caption")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    started = time.perf_counter()
    model_dir, package_dir = build_xception_merge(args.out, args.flickr_text)
    print(f"build or reuse: {time.perf_counter() - started:.1f} s")
    package = open_package(package_dir)
    vocab = package.vocab
    images = load_photos(args.images, package.preprocessing())
    seed = SeedLoop(model_dir)
    runtime = OnnxCaptioner(package, providers=["CPUExecutionProvider"])
    features = seed.features(images)
    onnx_features, state = runtime.encode(images)
    # A merge model's initial state is zeros whatever the image, so one row serves all.
    zero_state = [s[:1] for s in state]
    options = DecodeOptions(max_length=vocab.max_length)

    def onnx_caption(row: np.ndarray) -> list[int]:
        ranked = decode(runtime, row[None], zero_state, vocab.start_id, vocab.end_id, options)
        return ranked[0][0].tokens

    # Random Xception weights shrink every photo's features to about 1e-4, so the
    # photos all get one caption; non-negative Gaussian rows, the size of trained
    # pooled features, make the agreement check see different captions too.
    synthetic = np.maximum(np.random.default_rng(0).normal(size=features.shape), 0)
    print(f"vocabulary {len(vocab)} tokens, max length {vocab.max_length}")
    print(f"encoders, max |Keras - ONNX| feature: {np.abs(features - onnx_features).max():.2e}")
    for label, rows in (("photos", features), ("synthetic", synthetic.astype(np.float32))):
        # Both decoders read the Keras features, so only the decoders are compared.
        seed_tokens, seed_seconds = timed(seed.caption, rows)
        onnx_tokens, onnx_seconds = timed(onnx_caption, rows)
        print(
            f"{label}: seed loop {seed_seconds:.3f} s per caption (model.predict per word), "
            f"ONNX {onnx_seconds:.4f} s (one image at a time), "
            f"ratio {seed_seconds / onnx_seconds:.0f}x"
        )
        for i, (a, b) in enumerate(zip(seed_tokens, onnx_tokens, strict=True)):
            verdict = "agree" if a == b else "DIFFER"
            print(f"  {label} {i}: {len(a)} words, {verdict}: {vocab.decode(a)[:60]!r}")


if __name__ == "__main__":
    main()
