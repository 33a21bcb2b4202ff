"""The GPU check: the CUDA provider is active, and its captions are the CPU's.

On the seven real photos, with the model package served:

1. the execution provider the sessions actually run on (read back from ONNX Runtime):
   the requested one, or the check fails, naming what it fell back to;
2. greedy captions on the provider against the CPU: identical words, and each
   caption's log-probability within ``--tolerance`` (absolute, summed over the words);
   beam 3 is reported too (its ties may break differently on another provider);
3. the fp16 variant on the provider: captions identical to fp32's (a share), speed;
4. the bare encoder's best batched throughput and one image's encoder + greedy decoder
   time on the provider and on the CPU.

Writes ``gpu_check.json`` to ``--out`` and prints a table; exit 1 when a check fails.
With ``--provider CPUExecutionProvider`` it runs the same path on the CPU alone (what
``scripts/gpu-check.sh --cpu`` does on a machine without a GPU).

    python benchmarks/gpu_check.py --package runs/demo/package --out runs/gpu-check
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.timing import median_time  # noqa: E402
from captioner.decoding import DecodeOptions  # noqa: E402
from captioner.images import preprocess_bytes  # noqa: E402
from captioner.package import open_package  # noqa: E402
from captioner.runtime import OnnxCaptioner  # noqa: E402

REAL_PHOTOS = ROOT.parent / "shared" / "data" / "real_photos"
CPU = "CPUExecutionProvider"


def captions(runtime: OnnxCaptioner, images: np.ndarray, beam: int) -> list[tuple[str, float]]:
    package = runtime.package
    options = DecodeOptions(beam, package.vocab.max_length, package.decoding().length_penalty)
    ranked = runtime.caption(images, options)
    return [(package.vocab.decode(c[0].tokens), c[0].log_prob) for c in ranked]


def speed(runtime: OnnxCaptioner, images: np.ndarray) -> dict[str, float]:
    best = 0.0
    for batch in (1, 4, 16, 64):
        stacked = np.concatenate([images] * (batch // len(images) + 1))[:batch]
        best = max(best, batch / median_time(lambda s=stacked: runtime.encode(s), 5))
    one = images[:1]
    greedy = DecodeOptions(1, runtime.package.vocab.max_length)
    return {
        "encoder_best_images_per_second": best,
        "one_image_seconds": median_time(lambda: runtime.caption(one, greedy, rerank=False), 10),
    }


def compare(reference: list[tuple[str, float]], other: list[tuple[str, float]]) -> dict:
    same = [a[0] == b[0] for a, b in zip(reference, other, strict=True)]
    gaps = [abs(a[1] - b[1]) for a, b in zip(reference, other, strict=True)]
    return {"identical": sum(same) / len(same), "max_log_prob_gap": max(gaps)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--package", type=Path, default=ROOT / "runs" / "demo" / "package")
    parser.add_argument("--provider", default="CUDAExecutionProvider")
    parser.add_argument("--photos", type=Path, default=REAL_PHOTOS)
    parser.add_argument(
        "--tolerance",
        type=float,
        default=1e-3,
        help="largest allowed |log-probability difference| of a greedy caption, provider vs CPU",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "gpu-check")
    args = parser.parse_args()
    import onnxruntime as ort

    package = open_package(args.package)
    spec = package.preprocessing()
    photos = sorted(args.photos.glob("*.jpg"))
    if not photos:
        raise SystemExit(f"no photos in {args.photos}")
    images = np.stack([preprocess_bytes(p.read_bytes(), spec) for p in photos])
    report: dict = {
        "onnxruntime": ort.__version__,
        "device": ort.get_device(),
        "available_providers": ort.get_available_providers(),
        "requested": args.provider,
    }
    cpu = OnnxCaptioner(package, providers=[CPU], spinning=False)
    target = OnnxCaptioner(package, providers=[args.provider, CPU], spinning=False)
    report["active"] = target.provider
    failures = []
    if target.provider != args.provider:
        failures.append(f"{args.provider} is not active: the sessions run on {target.provider}")
    greedy_cpu, greedy = captions(cpu, images, 1), captions(target, images, 1)
    report["greedy"] = compare(greedy_cpu, greedy)
    report["beam3"] = compare(captions(cpu, images, 3), captions(target, images, 3))
    report["captions"] = {p.name: c[0] for p, c in zip(photos, greedy, strict=True)}
    if report["greedy"]["identical"] < 1:
        failures.append(f"greedy captions differ from the CPU's: {report['greedy']}")
    if report["greedy"]["max_log_prob_gap"] > args.tolerance:
        failures.append(f"log-probabilities differ by more than {args.tolerance}")
    report["speed"] = {"cpu": speed(cpu, images), args.provider: speed(target, images)}
    if "fp16" in package.variants():
        half = OnnxCaptioner(package, "fp16", providers=[args.provider, CPU], spinning=False)
        report["fp16"] = {
            **compare(greedy, captions(half, images, 1)),
            "active": half.provider,
            **speed(half, images),
        }
    report["failures"] = failures
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
