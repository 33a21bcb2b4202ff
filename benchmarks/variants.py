"""FP32 vs FP16 vs INT8 package variants, side by side in one run, on CPU.

For each variant: caption agreement with fp32 (greedy and beam 3), corpus CIDEr
and its difference to fp32, the share of exactly correct captions (shapes), and
speed (encoder images/s, end-to-end greedy captions/s; median of repeats after a
warm-up). Prints a markdown table and the INT8/FP32 speed ratios.

    python benchmarks/variants.py --package runs/demo/package --dataset "shapes[test]"
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from captioner.decoding import DecodeOptions
from captioner.images import preprocess
from captioner.package import open_package
from captioner.runtime import OnnxCaptioner
from training.datasets.registry import load_dataset
from training.metrics import score_captions


def caption_all(runtime: OnnxCaptioner, images: np.ndarray, beam: int, batch: int) -> list[str]:
    vocab = runtime.package.vocab
    options = DecodeOptions(beam_size=beam, max_length=vocab.max_length)
    out: list[str] = []
    for start in range(0, len(images), batch):
        for ranked in runtime.caption(images[start : start + batch], options):
            out.append(vocab.decode(ranked[0].tokens))
    return out


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", type=Path, default=Path("runs/demo/package"))
    parser.add_argument("--dataset", default="shapes[test]")
    parser.add_argument("--data-root", type=Path, default=Path("data"))
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()

    package = open_package(args.package)
    dataset = load_dataset(args.dataset, args.data_root)
    spec = package.preprocessing()
    images = np.stack(
        [preprocess(dataset.image(e), spec) for e in tqdm(dataset.examples, desc="images")]
    )
    ids = [e.image_id for e in dataset.examples]
    references = dataset.references()
    shapes = dataset.name == "shapes"
    if shapes:
        from training.datasets.shapes import correct_share, is_correct

    rows = {}
    baseline: dict[int, list[str]] = {}
    for variant in tqdm(package.variants(), desc="variants"):
        runtime = OnnxCaptioner(
            package, variant, providers=["CPUExecutionProvider"], threads=args.threads
        )
        row: dict[str, float] = {}
        for beam in (1, 3):
            captions = caption_all(runtime, images, beam, args.batch_size)
            baseline.setdefault(beam, captions)
            row[f"agree_b{beam}"] = float(
                np.mean([a == b for a, b in zip(captions, baseline[beam], strict=True)])
            )
            hyps = dict(zip(ids, captions, strict=True))
            row[f"cider_b{beam}"] = score_captions(
                references, hyps, ("CIDEr",), tokenize=False
            ).corpus["CIDEr"]
            if shapes:
                row[f"correct_b{beam}"] = correct_share(hyps, dataset)
                # Identical, or both exactly right: shapes has several equally good
                # phrasings, and near-tied synonyms flip under small numeric changes.
                pairs = zip(captions, baseline[beam], dataset.examples, strict=True)
                row[f"equiv_b{beam}"] = float(
                    np.mean(
                        [
                            a == b or (is_correct(a, e.scene) and is_correct(b, e.scene))
                            for a, b, e in pairs
                        ]
                    )
                )
        batch = images[: args.batch_size]
        row["encoder_ips"] = len(batch) / timed(
            lambda runtime=runtime, batch=batch: runtime.encode(batch), args.repeats
        )
        row["greedy_cps"] = len(batch) / timed(
            lambda runtime=runtime, batch=batch: caption_all(runtime, batch, 1, args.batch_size),
            args.repeats,
        )
        rows[variant] = row

    fp32 = rows["fp32"]
    print(f"\n{len(images)} images of {args.dataset}, batch {args.batch_size}, CPU provider\n")
    columns = (
        "variant|agree greedy|agree beam3|equivalent greedy|equivalent beam3|CIDEr greedy (Δ)"
        "|CIDEr beam3 (Δ)|correct greedy|encoder img/s|greedy captions/s"
    ).split("|")
    print("| " + " | ".join(columns) + " |")
    print("|---" * len(columns) + "|")
    nan = float("nan")
    for variant, row in rows.items():
        cells = [
            variant,
            f"{row['agree_b1']:.1%}",
            f"{row['agree_b3']:.1%}",
            f"{row.get('equiv_b1', nan):.1%}",
            f"{row.get('equiv_b3', nan):.1%}",
            f"{row['cider_b1']:.3f} ({row['cider_b1'] - fp32['cider_b1']:+.3f})",
            f"{row['cider_b3']:.3f} ({row['cider_b3'] - fp32['cider_b3']:+.3f})",
            f"{row.get('correct_b1', nan):.1%}",
            f"{row['encoder_ips']:.0f}",
            f"{row['greedy_cps']:.0f}",
        ]
        print("| " + " | ".join(cells) + " |")
    for variant, row in rows.items():
        if variant != "fp32":
            encoder = row["encoder_ips"] / fp32["encoder_ips"]
            greedy = row["greedy_cps"] / fp32["greedy_cps"]
            print(f"{variant}/fp32 speed: encoder {encoder:.2f}x, greedy end to end {greedy:.2f}x")


if __name__ == "__main__":
    main()
