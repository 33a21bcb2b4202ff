"""The improvement loop on real photos, end to end, with simulated users.

1. A champion is trained on part of the Flickr8k training photos and exported.
2. Simulated users rate the champion's captions of *other* training photos through the
   page's own path (``feedback.runtime.build`` on the embedded database, images
   stored, ``make_feedback`` + ``submit``): thumbs-down with a correction taken from
   the photo's human captions, and some feedback that is deliberately useless or
   wrong (empty and near-empty corrections, double submissions, another photo's
   caption). ``--poisoned`` makes every correction another photo's caption.
3. ``captioner feedback export`` (no ``--mongodb-uri``: it finds the embedded database),
   ``captioner train --init-from`` the champion with the feedback mixed in,
   ``captioner export``, and ``captioner compare`` on the held-out ``flickr8k[test]``
   and ``feedback[test]``.

    python benchmarks/feedback_loop.py --work runs/loop            # the good feedback
    python benchmarks/feedback_loop.py --work runs/loop --poisoned # wrong captions

The champion is trained once per ``--work`` and reused by both runs. Prints every
command, its time, the export's summary and the gate's verdict; writes
``WORK/SCENARIO/loop.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from training.settings import default_data_root  # noqa: E402

WEIGHTS = Path("encoders") / "mobilenet_v2_1.0_224_imagenet_notop.weights.h5"


def model_env(data_root: Path) -> dict[str, str]:
    """The champion's settings: the demo's real-photo preset (cli/demo.py REAL_PRESET),
    smaller (2 decoders). The challenger is given none of them: it inherits the model's
    from its parent and fine-tunes with its own schedule (training/finetune.py)."""
    return {
        "CAPTIONER_ARCHITECTURE": "merge",
        "CAPTIONER_ENCODER": "mobilenet_v2",
        "CAPTIONER_ENCODER_WEIGHTS": str(data_root / WEIGHTS),
        "CAPTIONER_MIN_COUNT": "3",
        "CAPTIONER_UNITS": "128",
        "CAPTIONER_MAX_LENGTH_QUANTILE": "0.95",
        "CAPTIONER_ALL_CAPTIONS": "true",
        "CAPTIONER_SELECTION": "last",
        "CAPTIONER_EPOCHS": "10",
        "CAPTIONER_MEMBERS": "2",
        "CAPTIONER_RERANK": "true",
    }


def run(command: list[str], env: dict[str, str], timings: dict[str, float], label: str) -> str:
    """Run one ``captioner`` command, echo it, time it; its stdout."""
    print("$ " + " ".join(command), flush=True)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "cli", *command[1:]],
        env={**os.environ, **env},
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    timings[label] = round(time.monotonic() - started, 1)
    if done.returncode not in (0, 3):
        sys.stderr.write(done.stderr[-4000:])
        raise SystemExit(f"{label} failed with exit status {done.returncode}")
    print(done.stdout.strip()[-2000:], flush=True)
    return done.stdout


def simulate_users(
    champion_package: Path,
    photos: list,
    others: list[str],
    db_dir: Path,
    poisoned: bool,
    seed: int,
) -> dict[str, int]:
    """Feedback from simulated users through the page's own submission path."""
    import numpy as np

    from captioner.decoding import DecodeOptions
    from captioner.images import preprocess
    from captioner.package import open_package
    from captioner.runtime import OnnxCaptioner
    from feedback.record import make_feedback
    from feedback.runtime import build
    from feedback.settings import FeedbackSettings
    from feedback.submit import submit

    rng = random.Random(seed)
    package = open_package(champion_package)
    runtime = OnnxCaptioner(package, providers=["CPUExecutionProvider"])
    chosen = package.decoding()
    options = DecodeOptions(chosen.beam_size, package.vocab.max_length, chosen.length_penalty)
    settings = FeedbackSettings(
        local_db_dir=db_dir,
        local_db_port=free_port(),
        outbox_path=db_dir.parent / "outbox.sqlite3",
        store_images=True,
    )
    counts = {"users": 0, "empty": 0, "near_empty": 0, "repeated": 0, "wrong": 0, "human": 0}
    feedback = build(settings)
    try:
        feedback.ensure_indexes()
        for example in photos:
            data = example.path.read_bytes()
            pixels = preprocess(np.asarray(_rgb(data)), package.preprocessing())
            shown = package.vocab.decode(runtime.caption(pixels[None], options)[0][0].tokens)
            humans = rng.sample(list(example.captions), 2)
            corrections = []
            for human in humans:
                if poisoned:
                    corrections.append(rng.choice(others))
                    counts["wrong"] += 1
                    continue
                roll = rng.random()
                if roll < 0.10:
                    corrections.append("")
                    counts["empty"] += 1
                elif roll < 0.15:
                    corrections.append(rng.choice(["bad", "no", "wrong!!", "a dog"]))
                    counts["near_empty"] += 1
                elif roll < 0.20:
                    corrections.append(rng.choice(others))
                    counts["wrong"] += 1
                else:
                    corrections.append(human)
                    counts["human"] += 1
                    if rng.random() < 0.1:  # the same user sends it twice
                        corrections.append(human.upper())
                        counts["repeated"] += 1
            for correction in corrections:
                counts["users"] += 1
                record = make_feedback(
                    request_id=uuid.uuid4().hex,
                    model_name=package.name,
                    model_version=package.version,
                    caption=shown,
                    rating="down",
                    correction=correction,
                    image_sha256=hashlib.sha256(data).hexdigest(),
                    ui_version="simulated",
                    image=data,
                )
                submit(record, feedback.store, feedback.outbox, feedback.metrics)
    finally:
        feedback.close()
    return counts


def _rgb(data: bytes):
    import io

    from PIL import Image

    from captioner.images import to_rgb

    with Image.open(io.BytesIO(data)) as img:
        return to_rgb(img)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path("runs/loop"))
    parser.add_argument("--data-root", type=Path, default=default_data_root())
    parser.add_argument("--champion-photos", type=int, default=250)
    parser.add_argument("--feedback-photos", type=int, default=450)
    parser.add_argument("--poisoned", action="store_true")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    from training.datasets.registry import load_dataset

    work = args.work.resolve()
    env = {
        "CAPTIONER_DATA_ROOT": str(args.data_root.resolve()),
        "CAPTIONER_MLFLOW_TRACKING_URI": (work / "mlruns").as_uri(),
        "CAPTIONER_LOG_FORMAT": "text",
    }
    champion_env = {**env, **model_env(args.data_root.resolve())}
    timings: dict[str, float] = {}
    base = f"flickr8k[train]-{args.champion_photos}s{args.seed}"
    champion = work / "champion"
    if not (champion / "package" / "manifest.json").is_file():
        run(
            ["captioner", "train", "--dataset", base, "--run-dir", str(champion)],
            champion_env,
            timings,
            "train champion",
        )
        run(
            [
                "captioner", "export", "--checkpoint", str(champion / "model"),
                "--out", str(champion / "package"), "--version", "champion",
            ],
            env, timings, "export champion",
        )  # fmt: skip

    scenario = work / ("poisoned" if args.poisoned else "good")
    if scenario.exists():
        raise SystemExit(f"{scenario} exists: remove it to run this scenario again")
    scenario.mkdir(parents=True)
    train = load_dataset("flickr8k[train]", args.data_root)
    used = {ex.image_id for ex in load_dataset(base, args.data_root).examples}
    rest = [ex for ex in train.examples if ex.image_id not in used]
    photos = random.Random(args.seed).sample(rest, min(args.feedback_photos, len(rest)))
    others = [c for ex in train.examples for c in ex.captions]
    started = time.monotonic()
    counts = simulate_users(
        champion / "package", photos, others, scenario / "db", args.poisoned, args.seed
    )
    timings["simulated users"] = round(time.monotonic() - started, 1)
    print(f"simulated feedback on {len(photos)} photos: {counts}", flush=True)

    feedback_root = scenario / "data"
    db_env = {**env, "CAPTIONER_LOCAL_DB_DIR": str(scenario / "db")}
    db_env["CAPTIONER_LOCAL_DB_PORT"] = str(free_port())
    summary = json.loads(
        run(
            ["captioner", "feedback", "export", "--out", str(feedback_root)],
            db_env,
            timings,
            "feedback export",
        )
    )
    challenger = scenario / "challenger"
    run(
        [
            "captioner", "train", "--dataset", base, "--run-dir", str(challenger),
            "--init-from", str(champion), "--extra-dataset", "feedback[train]",
            "--extra-data-root", str(feedback_root), "--extra-weight", "1",
        ],
        env, timings, "train challenger",
    )  # fmt: skip
    run(
        [
            "captioner", "export", "--checkpoint", str(challenger / "model"),
            "--out", str(challenger / "package"), "--version", scenario.name,
        ],
        env, timings, "export challenger",
    )  # fmt: skip
    verdict = json.loads(
        run(
            [
                "captioner", "compare", "--champion", str(champion / "package"),
                "--challenger", str(challenger / "package"), "--dataset", "flickr8k[test]",
                "--feedback", "feedback[test]", "--feedback-root", str(feedback_root),
                "--out", str(scenario / "compare"), "--json",
            ],
            env, timings, "compare",
        )
    )  # fmt: skip
    result = {"counts": counts, "export": summary, "verdict": verdict, "seconds": timings}
    (scenario / "loop.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"decision": verdict["decision"], "reasons": verdict["reasons"]}, indent=2))
    print(f"seconds: {timings}")


if __name__ == "__main__":
    main()
