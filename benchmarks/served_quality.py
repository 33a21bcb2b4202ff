"""Caption quality through the served package: `captioner serve` over HTTP, default options.

Starts the service on a model package, posts every held-out photo with no options (so
the package's chosen beam size and re-ranking apply), scores the answers with
pycocoevalcap beside the constant and nearest-neighbour baselines that `captioner
evaluate` wrote (the same photos), with bootstrap intervals, then captions the
photos in ``../shared/data/real_photos``.

    python benchmarks/served_quality.py --package runs/demo/package --eval runs/demo/eval
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from training.bootstrap import bootstrap  # noqa: E402
from training.datasets.registry import load_dataset  # noqa: E402
from training.run_dir import RunDir  # noqa: E402
from training.scoring import METRIC_KEYS, score_captions  # noqa: E402
from training.settings import default_data_root  # noqa: E402


def serve(package: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "CAPTIONER_LOG_FORMAT": "text"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cli",
            "serve",
            "--model",
            str(package),
            "--port",
            str(port),
        ],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.terminate()
    raise SystemExit("the service did not become ready within 120 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", type=Path, default=REPO / "runs/demo/package")
    parser.add_argument("--eval", type=Path, default=REPO / "runs/demo/eval")
    parser.add_argument("--dataset", default="flickr8k[test]")
    parser.add_argument("--data-root", type=Path, default=default_data_root())
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()

    dataset = load_dataset(args.dataset, args.data_root)
    references = dataset.references()
    baselines = json.loads((args.eval / RunDir.CAPTIONS_FILE).read_text())
    process = serve(args.package, args.port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{args.port}", timeout=60) as client:
            served = {
                ex.image_id: client.post(
                    "/v1/captions", files={"image": (ex.image_id, ex.path.read_bytes())}
                ).json()["caption"]
                for ex in dataset.examples
            }
            photos = sorted((args.data_root / "real_photos").glob("*.jpg"))
            unseen = {
                p.name: client.post(
                    "/v1/captions", files={"image": (p.name, p.read_bytes())}
                ).json()["caption"]
                for p in photos
            }
    finally:
        process.terminate()
        process.wait(30)

    rows = {"served model": served}
    for label in ("nearest-neighbour", "constant"):
        if label in baselines:
            rows[label] = baselines[label]
    scores = {label: score_captions(references, hyps) for label, hyps in rows.items()}
    ids = list(references)
    print(f"{args.dataset}: {len(ids)} held-out photos, served by {args.package}")
    print(f"{'':18}" + "".join(f"{k:>9}" for k in METRIC_KEYS) + "   CIDEr 95% interval")
    for label, s in scores.items():
        ci = bootstrap([s.per_image[i]["CIDEr"] for i in ids])
        cells = "".join(f"{s.corpus[k]:>9.3f}" for k in METRIC_KEYS)
        print(f"{label:18}{cells}   [{ci.low:.3f}, {ci.high:.3f}]")
    model = [scores["served model"].per_image[i]["CIDEr"] for i in ids]
    for label in rows:
        if label != "served model":
            base = [scores[label].per_image[i]["CIDEr"] for i in ids]
            ci = bootstrap(model, base)
            verdict = "excludes zero" if ci.excludes_zero() else "includes zero"
            span = f"{ci.mean:+.3f} [{ci.low:+.3f}, {ci.high:+.3f}]"
            print(f"served model - {label}: CIDEr {span} ({verdict})")
    print("\nreal_photos (never seen):")
    for name, caption in unseen.items():
        print(f"  {name}: {caption}")


if __name__ == "__main__":
    main()
