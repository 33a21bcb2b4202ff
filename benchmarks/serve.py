"""The inference service against the seed and against the bare encoder, side by side in one run.

On the seed's model (Xception merge at 299x299, random weights, Flickr8k-sized
vocabulary; see benchmarks/seed_model.py) and the seven real photos:

1. decoding: the seed's loop (Keras ``model.predict`` once per word, the whole
   prefix re-fed, greedy) against the service's decoder (ONNX Runtime, one step
   per word with explicit state, images batched), on the same features;
2. single-request latency through HTTP against one bare encoder forward pass;
3. throughput with 16 concurrent HTTP clients against the bare encoder's best
   batched throughput, and the errors seen;
4. the serving process's peak memory, and the installed size of the ``serve``
   extra (no TensorFlow) next to the ``train`` extra.

Prints a markdown table and the ratios.

    python benchmarks/serve.py [--out runs/bench] [--requests 96] [--clients 16]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.footprint import footprint  # noqa: E402
from benchmarks.seed_model import SeedLoop, build_xception_merge  # noqa: E402
from benchmarks.timing import median_time  # noqa: E402
from captioner.decoding import DecodeOptions, decode  # noqa: E402
from captioner.images import preprocess_bytes  # noqa: E402
from captioner.package import open_package  # noqa: E402
from captioner.runtime import OnnxCaptioner  # noqa: E402
from tests.helpers import REAL_PHOTOS, ProcessServer  # noqa: E402


def decoding(
    model_dir: Path, package_dir: Path, images: np.ndarray, providers: list[str]
) -> dict[str, float]:
    """Seconds per caption: the seed's loop against the service's step decoder."""
    seed = SeedLoop(model_dir)
    runtime = OnnxCaptioner(open_package(package_dir), providers=providers)
    vocab = runtime.package.vocab
    options = DecodeOptions(max_length=vocab.max_length)
    start_id, end_id = vocab.start_id, vocab.end_id
    seed_features = seed.features(images)
    features, state = runtime.encode(images)
    seed.caption(seed_features[0])  # warm-up: Keras builds its predict function
    start = time.perf_counter()
    seed_tokens = [seed.caption(row) for row in seed_features]
    seed_seconds = (time.perf_counter() - start) / len(images)

    def solo():
        return [
            decode(
                runtime,
                features[i : i + 1],
                [s[i : i + 1] for s in state],
                start_id,
                end_id,
                options,
            )[0]
            for i in range(len(images))
        ]

    def batched():
        return decode(runtime, features, state, start_id, end_id, options)

    solo_seconds = median_time(solo, 5) / len(images)
    batched_seconds = median_time(batched, 5) / len(images)
    onnx_tokens = [c[0].tokens for c in batched()]
    agree = sum(a == b for a, b in zip(seed_tokens, onnx_tokens, strict=True)) / len(images)
    return {
        "seed_seconds": seed_seconds,
        "solo_seconds": solo_seconds,
        "batched_seconds": batched_seconds,
        "words": statistics.mean(len(t) for t in seed_tokens),
        "agreement": agree,
    }


def bare_encoder(
    package_dir: Path, images: np.ndarray, providers: list[str], variant: str
) -> tuple[OnnxCaptioner, dict[str, float]]:
    """The encoder session alone, and its best images/s over batch sizes."""
    runtime = OnnxCaptioner(open_package(package_dir), variant, providers=providers)
    best, best_batch = 0.0, 1
    for batch in (1, 2, 4, 8, 16):
        stacked = np.concatenate([images] * (batch // len(images) + 1))[:batch]
        rate = batch / median_time(lambda s=stacked: runtime.encode(s), 3)
        if rate > best:
            best, best_batch = rate, batch
    return runtime, {"best_rate": best, "best_batch": best_batch}


def peak_rss(pid: int) -> int:
    """Peak resident set size of a process (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def typical_length() -> int:
    """Mean words per Flickr8k reference caption: what a trained model's captions run to."""
    from benchmarks.seed_model import FLICKR8K_TEXT
    from captioner.text import normalize
    from training.datasets.flickr import TOKEN_FILE, read_flickr8k_captions

    captions = read_flickr8k_captions(FLICKR8K_TEXT / TOKEN_FILE)
    lengths = [len(normalize(c)) for group in captions.values() for c in group]
    return round(statistics.mean(lengths))


def through_http(
    package_dir: Path,
    photos: list[bytes],
    requests: int,
    clients: int,
    out: Path,
    typical: int,
    providers: list[str],
    variant: str,
    bare: OnnxCaptioner,
    images: np.ndarray,
    repeats: int = 21,
):
    """Latency and throughput through HTTP, with the bare encoder timed in between.

    Single-image timings alternate (bare encoder, HTTP 35 words, HTTP typical
    length) so that load from elsewhere on a shared machine falls on all three.
    """
    import json

    import httpx

    server = ProcessServer(
        package_dir,
        out / f"server-{variant}.log",
        log_level="warning",
        providers=json.dumps(providers),
        variant=variant,
    )
    with server:
        server.wait_ready(300)
        url = f"{server.url}/v1/captions"
        with httpx.Client(timeout=120) as client:

            def one(i: int, max_length: int | None = None) -> int:
                files = {"image": ("photo.jpg", photos[i % len(photos)], "image/jpeg")}
                data = {"max_length": str(max_length)} if max_length else None
                return client.post(url, files=files, data=data).status_code

            one(0)
            bare.encode(images[:1])
            times: dict[str, list[float]] = {"bare": [], "full": [], "typical": []}
            for _ in range(repeats):
                for key, run in (
                    ("bare", lambda: bare.encode(images[:1])),
                    ("full", lambda: one(0)),
                    ("typical", lambda: one(0, typical)),
                ):
                    start = time.perf_counter()
                    run()
                    times[key].append(time.perf_counter() - start)
            with ThreadPoolExecutor(clients) as pool:
                list(pool.map(one, range(clients)))  # warm-up at full concurrency
                start = time.perf_counter()
                codes = list(pool.map(one, range(requests)))
                elapsed = time.perf_counter() - start
        assert server.process is not None
        memory = peak_rss(server.process.pid)
    return {
        "single_seconds": statistics.median(times["bare"]),
        "latency_seconds": statistics.median(times["full"]),
        "typical_latency_seconds": statistics.median(times["typical"]),
        "rate": requests / elapsed,
        "errors": sum(code != 200 for code in codes),
        "peak_rss": memory,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench")
    parser.add_argument("--requests", type=int, default=96)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--variants", default="fp32,int8", help="package variants to serve")
    parser.add_argument(
        "--provider",
        default="CPUExecutionProvider",
        help="execution provider for the bare encoder and the service (CPU as fallback)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    providers = list(dict.fromkeys([args.provider, "CPUExecutionProvider"]))
    model_dir, package_dir = build_xception_merge(args.out / "xception_merge")
    spec = open_package(package_dir).preprocessing()
    photos = [p.read_bytes() for p in sorted(REAL_PHOTOS.glob("*.jpg"))]
    images = np.stack([preprocess_bytes(p, spec) for p in photos])

    typical = typical_length()
    enc, http = {}, {}
    for variant in args.variants.split(","):
        print(f"{variant}: bare encoder ...", flush=True)
        bare, enc[variant] = bare_encoder(package_dir, images, providers, variant)
        print(f"{variant}: through HTTP ...", flush=True)
        http[variant] = through_http(
            package_dir,
            photos,
            args.requests,
            args.clients,
            args.out,
            typical,
            providers,
            variant,
            bare,
            images,
        )
        del bare
    # Keras runs last, so its thread pools are not around while HTTP is timed.
    print("decoding: seed loop vs service decoder (fp32) ...", flush=True)
    dec = decoding(model_dir, package_dir, images, providers)
    serve_mb = sum(footprint("serve").values()) / 1e6
    train_mb = sum(footprint("train").values()) / 1e6

    print(f"\nCPU: {os.cpu_count()} cores; execution providers {providers}\n")
    print("| measure | value |\n|---|---|")
    for name, value in (
        ("seed decoding, s per caption (Keras predict per word)", f"{dec['seed_seconds']:.3f}"),
        ("service decoder, s per caption (one image at a time)", f"{dec['solo_seconds']:.4f}"),
        ("service decoder, s per caption (7 images batched)", f"{dec['batched_seconds']:.4f}"),
        ("words per caption (both run to max length: random weights)", f"{dec['words']:.1f}"),
        ("identical captions, seed vs service", f"{dec['agreement']:.0%}"),
        ("installed size, serve extra (no TensorFlow), MB", f"{serve_mb:.0f}"),
        ("installed size, train extra, MB", f"{train_mb:.0f}"),
    ):
        print(f"| {name} | {value} |")
    variants = list(enc)
    print("\n| measure | " + " | ".join(variants) + " |\n|---|" + "---|" * len(variants))
    per_variant = [
        ("bare encoder, one image, s", lambda v: f"{http[v]['single_seconds']:.4f}"),
        ("HTTP one request, s (median, 35 words)", lambda v: f"{http[v]['latency_seconds']:.4f}"),
        (
            f"HTTP one request, s (median, max_length {typical})",
            lambda v: f"{http[v]['typical_latency_seconds']:.4f}",
        ),
        (
            "bare encoder best throughput, img/s (batch)",
            lambda v: f"{enc[v]['best_rate']:.2f} ({enc[v]['best_batch']})",
        ),
        (f"HTTP throughput, {args.clients} clients, img/s", lambda v: f"{http[v]['rate']:.2f}"),
        (f"HTTP errors in {args.requests} requests", lambda v: str(http[v]["errors"])),
        ("serving process peak RSS, MB", lambda v: f"{http[v]['peak_rss'] / 1e6:.0f}"),
        (
            "latency / bare encoder, 35 words (target <= 1.2x)",
            lambda v: f"{http[v]['latency_seconds'] / http[v]['single_seconds']:.2f}x",
        ),
        (
            f"latency / bare encoder, {typical} words (target <= 1.2x)",
            lambda v: f"{http[v]['typical_latency_seconds'] / http[v]['single_seconds']:.2f}x",
        ),
        (
            "throughput / bare encoder best (target >= 80%)",
            lambda v: f"{http[v]['rate'] / enc[v]['best_rate']:.0%}",
        ),
    ]
    for name, cell in per_variant:
        print(f"| {name} | " + " | ".join(cell(v) for v in variants) + " |")
    print()
    solo = dec["seed_seconds"] / dec["solo_seconds"]
    batched = dec["seed_seconds"] / dec["batched_seconds"]
    print(f"decoding speed-up, seed / service: {solo:.0f}x one image at a time (target >= 20x),")
    print(f"                                   {batched:.0f}x with the 7 images batched")


if __name__ == "__main__":
    main()
