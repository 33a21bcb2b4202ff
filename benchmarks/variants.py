"""FP32 vs FP16 vs INT8 package variants, side by side in one run, on the CPU provider.

For each variant the package offers: caption agreement with fp32 (the share of
identical captions, greedy and beam 3), corpus CIDEr and its difference to fp32,
the share of exactly correct captions (``shapes`` only), and speed: encoder
images/s and end-to-end greedy captions/s (encoder plus search), each the median
of ``--repeats`` runs after a warm-up. Timed runs interleave the variants, so a
neighbour's load on a shared machine falls on all of them alike. Prints a
markdown table and the speed ratios to fp32.

    python benchmarks/variants.py --package runs/demo/package --dataset "shapes[test]"
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import numpy as np
from tqdm import tqdm

from captioner.decoding import DecodeOptions
from captioner.images import preprocess
from captioner.package import open_package
from captioner.runtime import OnnxCaptioner
from training.datasets.base import CaptionDataset
from training.datasets.registry import load_dataset
from training.scoring import score_captions

SEARCHES = {"greedy": 1, "beam3": 3}
PROVIDERS = ["CPUExecutionProvider"]


def caption_all(
    runtime: OnnxCaptioner, images: np.ndarray, beam_size: int, batch_size: int
) -> list[str]:
    """The best caption for every image, decoded in batches."""
    vocab = runtime.package.vocab
    options = DecodeOptions(beam_size=beam_size, max_length=vocab.max_length)
    captions: list[str] = []
    for start in range(0, len(images), batch_size):
        ranked = runtime.caption(images[start : start + batch_size], options)
        captions += [vocab.decode(candidates[0].tokens) for candidates in ranked]
    return captions


def encode_all(runtime: OnnxCaptioner, images: np.ndarray, batch_size: int) -> None:
    for start in range(0, len(images), batch_size):
        runtime.encode(images[start : start + batch_size])


def interleaved_medians(
    jobs: dict[str, Callable[[], object]], repeats: int, desc: str
) -> dict[str, float]:
    """Median seconds of each job: one warm-up each, then ``repeats`` rounds of all jobs."""
    for job in jobs.values():
        job()
    seconds: dict[str, list[float]] = {name: [] for name in jobs}
    for _ in tqdm(range(repeats), desc=desc):
        for name, job in jobs.items():
            started = time.perf_counter()
            job()
            seconds[name].append(time.perf_counter() - started)
    return {name: statistics.median(s) for name, s in seconds.items()}


def quality(captions: dict[str, list[str]], dataset: CaptionDataset) -> dict[str, dict[str, float]]:
    """Agreement with fp32, CIDEr and correct share for each variant's captions of one search."""
    ids = [e.image_id for e in dataset.examples]
    references = dataset.references()
    rows = {}
    for variant, hyps in captions.items():
        by_id = dict(zip(ids, hyps, strict=True))
        row = {
            "identical": float(
                np.mean([a == b for a, b in zip(hyps, captions["fp32"], strict=True)])
            ),
            "cider": score_captions(references, by_id, ("CIDEr",), tokenize=False).corpus["CIDEr"],
        }
        if dataset.name == "shapes":
            from training.datasets.shapes import correct_share, is_correct

            row["correct"] = correct_share(by_id, dataset)
            # Differing captions that are both exactly right: shapes has several equally
            # likely phrasings, near-ties that small numeric changes flip.
            row["differ_both_correct"] = sum(
                a != b and is_correct(a, e.scene) and is_correct(b, e.scene)
                for a, b, e in zip(hyps, captions["fp32"], dataset.examples, strict=True)
            )
            row["differ"] = sum(a != b for a, b in zip(hyps, captions["fp32"], strict=True))
        rows[variant] = row
    return rows


def table(
    scores: dict[str, dict[str, dict[str, float]]], speed: dict[str, dict[str, float]]
) -> str:
    nan = float("nan")
    head = ["variant"]
    for search in SEARCHES:
        head += [f"identical {search}", f"CIDEr {search} (Δ fp32)", f"correct {search}"]
    head += ["encoder img/s", "greedy captions/s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for variant in speed:
        cells = [variant]
        for search in SEARCHES:
            row, base = scores[search][variant], scores[search]["fp32"]
            cells += [
                f"{row['identical']:.1%}",
                f"{row['cider']:.3f} ({row['cider'] - base['cider']:+.3f})",
                f"{row.get('correct', nan):.1%}",
            ]
        cells += [f"{speed[variant]['encoder']:.0f}", f"{speed[variant]['greedy']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="FP32/FP16/INT8 package variants on CPU.")
    parser.add_argument("--package", type=Path, default=Path("runs/demo/package"))
    parser.add_argument("--dataset", default="shapes[test]")
    parser.add_argument("--data-root", type=Path, default=Path("data"))
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per variant")
    parser.add_argument(
        "--timing-images", type=int, default=256, help="images per timed run (first N)"
    )
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads, 0: auto")
    args = parser.parse_args(argv)

    package = open_package(args.package)
    dataset = load_dataset(args.dataset, args.data_root)
    pre = package.preprocessing()
    images = np.stack(
        [preprocess(dataset.image(e), pre) for e in tqdm(dataset.examples, desc="images")]
    )
    runtimes = {
        v: OnnxCaptioner(package, v, providers=PROVIDERS, threads=args.threads)
        for v in package.variants()
    }
    captions: dict[str, dict[str, list[str]]] = {search: {} for search in SEARCHES}
    for variant, runtime in tqdm(runtimes.items(), desc="decoding"):
        for search, beam in SEARCHES.items():
            captions[search][variant] = caption_all(runtime, images, beam, args.batch_size)
    scores = {search: quality(captions[search], dataset) for search in SEARCHES}

    timing = images[: args.timing_images]
    encoder = interleaved_medians(
        {v: partial(encode_all, r, timing, args.batch_size) for v, r in runtimes.items()},
        args.repeats,
        "timing encoder",
    )
    greedy = interleaved_medians(
        {v: partial(caption_all, r, timing, 1, args.batch_size) for v, r in runtimes.items()},
        args.repeats,
        "timing greedy",
    )
    speed = {
        v: {"encoder": len(timing) / encoder[v], "greedy": len(timing) / greedy[v]}
        for v in runtimes
    }

    import onnxruntime

    print(
        f"\n{len(images)} images of {args.dataset}; onnxruntime {onnxruntime.__version__}, "
        f"CPUExecutionProvider, batch {args.batch_size}, threads {args.threads or 'auto'}; "
        f"speed: median of {args.repeats} interleaved runs over {len(timing)} images\n"
    )
    print(table(scores, speed))
    print()
    for variant in runtimes:
        if variant == "fp32":
            continue
        ratio = {k: speed[variant][k] / speed["fp32"][k] for k in ("encoder", "greedy")}
        print(
            f"{variant}/fp32 on CPU: encoder {ratio['encoder']:.2f}x, "
            f"greedy end to end {ratio['greedy']:.2f}x"
        )
        for search in SEARCHES:
            row = scores[search][variant]
            if "differ" in row:
                print(
                    f"  {search}: {row['differ']:.0f} captions differ from fp32, "
                    f"{row['differ_both_correct']:.0f} of them both exactly correct"
                )


if __name__ == "__main__":
    main()
