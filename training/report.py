"""The evaluation report: a score table with intervals, and each example photo as one image
with the model's, the baselines' and a human's caption drawn under it."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from training.datasets.base import CaptionDataset
from training.datasets.spec import DatasetSpec
from training.run_dir import RunDir

KEYS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr", "correct")
CARD_WIDTH = 420
LINE_HEIGHT = 18


def write_report(
    out_dir: Path,
    spec: DatasetSpec,
    dataset: CaptionDataset,
    corpus: dict[str, dict[str, float]],
    intervals: dict[str, dict[str, float]],
    captions: dict[str, dict[str, str]],
    served: str,
    examples: int,
) -> Path:
    """``report.md`` in OUT_DIR, with one PNG per example photo under ``examples/``."""
    keys = [k for k in KEYS if any(k in row for row in corpus.values())]
    lines = [
        f"# Evaluation on `{spec}` ({len(dataset)} images)",
        "",
        f"The model as served by default is the row **{served}**; 95% bootstrap intervals "
        "of CIDEr over images in brackets.",
        "",
        "| captions | " + " | ".join(keys) + " | CIDEr 95% interval |",
        "|---" * (len(keys) + 2) + "|",
    ]
    for label, row in corpus.items():
        cells = " | ".join(f"{row[k]:.3f}" if k in row else "" for k in keys)
        ci = intervals.get(label)
        span = f"[{ci['low']:.3f}, {ci['high']:.3f}]" if ci else ""
        lines.append(f"| {label} | {cells} | {span} |")
    paired = {k: v for k, v in intervals.items() if " - " in k}
    if paired:
        lines += ["", "Paired bootstrap of the CIDEr difference on the same images:", ""]
        for label, ci in paired.items():
            verdict = "excludes zero" if ci["low"] > 0 or ci["high"] < 0 else "includes zero"
            lines.append(
                f"- {label}: {ci['mean']:+.3f} [{ci['low']:+.3f}, {ci['high']:+.3f}] ({verdict})"
            )
    if "constant" in captions:
        constant = next(iter(captions["constant"].values()))
        lines += ["", f"Best constant caption (chosen on val): *{constant}*"]
    lines += ["", "## Examples", ""]
    folder = out_dir / "examples"
    folder.mkdir(exist_ok=True)
    for example in dataset.examples[:examples]:
        rows = [(label, captions[label][example.image_id]) for label in _shown(captions, served)]
        rows.append(("human", example.captions[0]))
        name = f"{Path(example.image_id).stem}.png"
        card(np.asarray(dataset.image(example)), rows).save(folder / name)
        lines += [
            f"![{example.image_id}: "
            + "; ".join(f"{k}: {v}" for k, v in rows)
            + f"](examples/{name})",
            "",
        ]
    path = out_dir / RunDir.REPORT_FILE
    path.write_text("\n".join(lines) + "\n")
    return path


def _shown(captions: dict[str, dict[str, str]], served: str) -> list[str]:
    return [label for label in (served, "nearest-neighbour", "constant") if label in captions]


def card(pixels: np.ndarray, rows: list[tuple[str, str]]) -> Image.Image:
    """The photo, scaled to the card's width, with one labelled caption per row below it."""
    photo = Image.fromarray(pixels)
    scale = CARD_WIDTH / photo.width
    resample = Image.Resampling.NEAREST if photo.width < 128 else Image.Resampling.BICUBIC
    photo = photo.resize((CARD_WIDTH, max(1, round(photo.height * scale))), resample)
    font = ImageFont.load_default(size=14)
    wrapped = [(label, textwrap.wrap(text or "(empty)", 52) or [""]) for label, text in rows]
    height = photo.height + 8 + sum(len(w) for _, w in wrapped) * LINE_HEIGHT + 8
    out = Image.new("RGB", (CARD_WIDTH, height), "white")
    out.paste(photo, (0, 0))
    draw = ImageDraw.Draw(out)
    y = photo.height + 8
    for label, parts in wrapped:
        for n, part in enumerate(parts):
            prefix = f"{label}: " if n == 0 else "    "
            draw.text(
                (6, y), prefix + part, fill="black" if label != "human" else "#1a5", font=font
            )
            y += LINE_HEIGHT
    return out
