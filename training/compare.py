"""The offline gate: a challenger package against the champion on the same held-out images.

Both packages caption every image as they would be served (ONNX Runtime, each with the
decoding chosen on its validation split, re-ranking included), the captions are scored
per image with pycocoevalcap's CIDEr-D, and a paired bootstrap of the per-image
difference (challenger minus champion) gives its confidence interval. The gate
(:class:`GateSettings`) then says promote or keep, with the reason:

- on the curated held-out split (e.g. ``flickr8k[test]``), the interval's lower bound
  must be above ``min_gain``: a challenger must be better, not merely not worse;
- on held-out feedback (``feedback[test]``, when given), its upper bound must not be
  below ``-max_feedback_loss``: a challenger clearly worse on what users asked for is
  kept out even when the curated split likes it.

The curated split is the one that decides. Feedback references are what users wrote:
a challenger trained on poisoned feedback scores well on poisoned held-out feedback,
and only references nobody could tamper with tell that it got worse.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from captioner.decoding import DecodeOptions
from captioner.images import preprocess
from captioner.package import Package, open_package
from captioner.runtime import OnnxCaptioner
from training.bootstrap import Interval, bootstrap
from training.datasets.base import CaptionDataset
from training.datasets.registry import load_dataset
from training.datasets.spec import DatasetSpec
from training.scoring import score_captions

log = logging.getLogger(__name__)

PROMOTE = "promote"
KEEP = "keep"


class GateSettings(BaseSettings):
    """The gate's thresholds; every field is also a ``CAPTIONER_GATE_<FIELD>`` variable."""

    model_config = SettingsConfigDict(env_prefix="CAPTIONER_GATE_", extra="ignore")

    min_gain: float = Field(
        default=0.0,
        description="the paired interval of CIDEr (challenger - champion) on the held-out "
        "split must have its lower bound above this",
    )
    max_feedback_loss: float = Field(
        default=0.05,
        ge=0.0,
        description="on held-out feedback, the interval's upper bound may not be below "
        "minus this (clearly worse on what users asked for)",
    )
    min_images: int = Field(
        default=30, ge=1, description="fewer held-out images than this decide nothing: keep"
    )
    level: float = Field(
        default=0.95, gt=0.5, lt=1.0, description="confidence level of the intervals"
    )
    resamples: int = Field(default=2000, ge=100, description="bootstrap resamples")
    seed: int = Field(default=0, description="the bootstrap's seed")
    batch_size: int = Field(
        default=32, ge=1, description="images per encoder call while captioning"
    )


@dataclass
class SplitComparison:
    """Both packages on one split: corpus CIDEr each, the paired interval, per image."""

    dataset: str
    images: int
    champion: float
    challenger: float
    difference: Interval
    per_image: dict[str, dict[str, float]] = field(repr=False, default_factory=dict)
    captions: dict[str, dict[str, str]] = field(repr=False, default_factory=dict)


@dataclass
class Verdict:
    """What the gate decided and why, with every number it decided on."""

    decision: str
    reasons: list[str]
    champion: str
    challenger: str
    splits: list[SplitComparison]

    def to_dict(self) -> dict[str, object]:
        out = asdict(self)
        for split in out["splits"]:
            split.pop("per_image")
            split.pop("captions")
        return out


def caption_split(
    package: Package, dataset: CaptionDataset, batch_size: int = 32
) -> dict[str, str]:
    """Image id -> the caption PACKAGE gives it as served by default (CPU, its decoding)."""
    runtime = OnnxCaptioner(package, providers=["CPUExecutionProvider"])
    chosen = package.decoding()
    options = DecodeOptions(
        chosen.beam_size, package.manifest.vocabulary.max_length, chosen.length_penalty
    )
    spec = package.preprocessing()
    out: dict[str, str] = {}
    for start in range(0, len(dataset), batch_size):
        batch = dataset.examples[start : start + batch_size]
        images = np.stack([preprocess(dataset.image(ex), spec) for ex in batch])
        for ex, ranked in zip(batch, runtime.caption(images, options), strict=True):
            out[ex.image_id] = package.vocab.decode(ranked[0].tokens)
    return out


def compare_split(
    champion: Package,
    challenger: Package,
    spec: DatasetSpec,
    data_root: Path,
    settings: GateSettings,
) -> SplitComparison:
    """Caption SPEC's images with both packages and compare per-image CIDEr, paired."""
    dataset = load_dataset(spec, data_root)
    references = dataset.references()
    captions = {
        "champion": caption_split(champion, dataset, settings.batch_size),
        "challenger": caption_split(challenger, dataset, settings.batch_size),
    }
    scores = {label: score_captions(references, caps) for label, caps in captions.items()}
    ids = [ex.image_id for ex in dataset.examples]

    def cider(label: str) -> list[float]:
        return [scores[label].per_image[i]["CIDEr"] for i in ids]

    difference = bootstrap(
        cider("challenger"), cider("champion"), settings.resamples, settings.level, settings.seed
    )
    return SplitComparison(
        str(spec),
        len(ids),
        scores["champion"].corpus["CIDEr"],
        scores["challenger"].corpus["CIDEr"],
        difference,
        {label: {i: s.per_image[i]["CIDEr"] for i in ids} for label, s in scores.items()},
        captions,
    )


def decide(
    held_out: SplitComparison, feedback: SplitComparison | None, settings: GateSettings
) -> tuple[str, list[str]]:
    """Promote or keep, and the reasons (see the module docstring for the rules)."""
    d = held_out.difference
    interval = f"{d.mean:+.3f} [{d.low:+.3f}, {d.high:+.3f}]"
    reasons: list[str] = []
    passed = True
    if held_out.images < settings.min_images:
        passed = False
        reasons.append(
            f"{held_out.dataset}: {held_out.images} images, fewer than the "
            f"{settings.min_images} a decision needs"
        )
    elif d.low > settings.min_gain:
        reasons.append(
            f"{held_out.dataset}: CIDEr {held_out.challenger:.3f} vs {held_out.champion:.3f}, "
            f"difference {interval} lies above {settings.min_gain:+.3f}"
        )
    else:
        passed = False
        reasons.append(
            f"{held_out.dataset}: CIDEr {held_out.challenger:.3f} vs {held_out.champion:.3f}, "
            f"difference {interval} does not lie above {settings.min_gain:+.3f}"
        )
    if feedback is not None:
        f = feedback.difference
        interval = f"{f.mean:+.3f} [{f.low:+.3f}, {f.high:+.3f}]"
        if f.high < -settings.max_feedback_loss:
            passed = False
            reasons.append(
                f"{feedback.dataset}: clearly worse on held-out feedback, difference {interval} "
                f"lies below -{settings.max_feedback_loss:.3f}"
            )
        else:
            reasons.append(f"{feedback.dataset}: difference {interval}, not clearly worse")
    return (PROMOTE if passed else KEEP), reasons


def compare(
    champion_dir: Path,
    challenger_dir: Path,
    spec: DatasetSpec,
    data_root: Path,
    feedback_spec: DatasetSpec | None = None,
    feedback_root: Path | None = None,
    settings: GateSettings | None = None,
    out_dir: Path | None = None,
) -> Verdict:
    """Score both packages on the held-out split (and held-out feedback) and decide.

    Writes ``comparison.json`` (the verdict and its numbers) and ``captions.json`` into
    OUT_DIR when given.

    Raises:
        PackageError: a package cannot be opened.
        DatasetError: a split cannot be loaded.
    """
    settings = settings or GateSettings()
    champion, challenger = open_package(champion_dir), open_package(challenger_dir)
    splits = [compare_split(champion, challenger, spec, data_root, settings)]
    if feedback_spec is not None:
        splits.append(
            compare_split(champion, challenger, feedback_spec, feedback_root or data_root, settings)
        )
    decision, reasons = decide(splits[0], splits[1] if len(splits) > 1 else None, settings)
    verdict = Verdict(decision, reasons, champion.version, challenger.version, splits)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "comparison.json").write_text(json.dumps(verdict.to_dict(), indent=2) + "\n")
        (out_dir / "captions.json").write_text(
            json.dumps({s.dataset: s.captions for s in splits}, indent=1) + "\n"
        )
    log.info("gate: %s (%s)", decision, "; ".join(reasons))
    return verdict
