"""Feature-extraction rate on this machine: images/s for planning a COCO-sized run.

For each encoder (MobileNetV2 at 224, Xception at 299; random weights, which cost
the same as ImageNet ones) it measures, on real Flickr8k photos:

- ``FeatureCache.extract`` (the training path: a ``tf.data`` pipeline decoding
  ``threads`` images in parallel ahead of the encoder, shards written to disk) for
  each batch size and thread count;
- ``serial``: the same work without the pipeline (decode a batch, then encode it),
  which is how extraction ran before;
- the two limits: decoding alone (the pipeline, no encoder) and the encoder alone
  (on images decoded beforehand).

Configurations run interleaved, ``--repeats`` rounds after a warm-up, and the median
is printed as a markdown table with the ratio to ``serial``. A COCO run is then
``123,287 / rate`` seconds.

    python benchmarks/extract.py
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

from captioner.images import preprocess
from training.backbones import preprocessing_for
from training.datasets.base import CaptionDataset, Example
from training.encoders import build_encoder
from training.features import FeatureCache
from training.image_stream import decoded

PHOTOS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "flickr8k_images"
COCO_IMAGES = 123_287


def photos(count: int) -> CaptionDataset:
    names = sorted(p.name for p in PHOTOS.glob("*.jpg"))[:count]
    if len(names) < count:
        raise SystemExit(f"need {count} photos in {PHOTOS}, found {len(names)}")
    return CaptionDataset("photos", "train", [Example(n, ("",), PHOTOS / n) for n in names])


def machine() -> str:
    model, flags = platform.processor() or "?", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    wanted = ["avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile"]
    present = ", ".join(f for f in wanted if f in flags) or "none of " + ", ".join(wanted)
    import tensorflow as tf

    return f"{model}; {os.cpu_count()} cores; flags: {present}; TensorFlow {tf.__version__}"


def serial(dataset: CaptionDataset, encoder, spec, batch_size: int) -> None:
    """Extraction as it ran before the pipeline: decode a batch, then encode it."""
    examples = dataset.examples
    for start in range(0, len(examples), batch_size):
        batch = examples[start : start + batch_size]
        encoder.predict_on_batch(np.stack([preprocess(dataset.image(ex), spec) for ex in batch]))


def pipeline(dataset, encoder, spec, name, batch_size, threads, root: Path) -> None:
    cache = FeatureCache(root / str(time.perf_counter_ns()), name, "random", spec, "pooled")
    cache.extract(dataset, encoder, batch_size=batch_size, progress=False, threads=threads)


def decode_only(dataset, spec, threads) -> None:
    for _ in decoded(dataset, range(len(dataset)), spec, threads):
        pass


def encode_only(encoder, images: np.ndarray, batch_size: int) -> None:
    for start in range(0, len(images), batch_size):
        encoder.predict_on_batch(images[start : start + batch_size])


def measure(jobs: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    """Median seconds of each job over REPEATS interleaved rounds, after one warm-up each."""
    for job in jobs.values():
        job()
    times: dict[str, list[float]] = {k: [] for k in jobs}
    for _ in range(repeats):
        for key, job in jobs.items():
            start = time.perf_counter()
            job()
            times[key].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def table_rows(name: str, count: int, batches, threads, repeats: int) -> list[str]:
    """The markdown rows of one encoder: every configuration, interleaved."""
    dataset = photos(count)
    spec = preprocessing_for(name)
    encoder = build_encoder(name, "pooled")
    images = np.stack([preprocess(dataset.image(ex), spec) for ex in dataset.examples])
    base = max(batches[: len(batches) // 2 + 1])
    with tempfile.TemporaryDirectory() as root:
        jobs: dict[str, Callable[[], None]] = {
            f"serial|{base}|1": partial(serial, dataset, encoder, spec, base)
        }
        for b in batches:
            for t in threads:
                jobs[f"pipeline|{b}|{t or 'auto'}"] = partial(
                    pipeline, dataset, encoder, spec, name, b, t, Path(root)
                )
        jobs["decode only|-|auto"] = partial(decode_only, dataset, spec, 0)
        jobs[f"encoder only|{base}|-"] = partial(encode_only, encoder, images, base)
        seconds = measure(jobs, repeats)
    reference = count / seconds[f"serial|{base}|1"]
    rows = []
    for key, value in seconds.items():
        how, batch, thread = key.split("|")
        rate = count / value
        coco = f"{COCO_IMAGES / rate / 3600:.1f} h" if how != "decode only" else ""
        rows.append(
            f"| {name} | {spec.height} | {how} | {batch} | {thread} | {rate:.1f} | "
            f"{rate / reference:.2f}x | {coco} |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--encoders", default="mobilenet_v2:192,xception:64", help="NAME:IMAGES pairs"
    )
    parser.add_argument("--batch-sizes", default="16,32,64")
    parser.add_argument("--threads", default="1,2,0", help="0: tf.data tunes it")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    batches = [int(b) for b in args.batch_sizes.split(",")]
    threads = [int(t) for t in args.threads.split(",")]

    print(f"machine: {machine()}\n")
    print("| encoder | input | how | batch | threads | images/s | vs serial | COCO (123,287) |")
    print("|---|---|---|---:|---|---:|---:|---:|")
    for pair in args.encoders.split(","):
        name, count = pair.split(":")
        for row in table_rows(name, int(count), batches, threads, args.repeats):
            print(row, flush=True)
    print(f"\n{args.repeats} interleaved rounds after a warm-up, median; real Flickr8k photos.")


if __name__ == "__main__":
    main()
