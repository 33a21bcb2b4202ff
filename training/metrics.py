"""Caption metrics: the coco-caption procedure, run by pycocoevalcap.

``score_captions`` tokenizes with the Stanford PTB tokenizer (Java) and scores with
pycocoevalcap's BLEU, METEOR (Java), ROUGE-L and CIDEr(-D), exactly as coco-caption's
``COCOEvalCap`` does, so that the numbers can be compared with published ones.
``tokenize=False`` skips Java and uses ``captioner.text.normalize`` tokens instead:
fast enough for validation during training (e.g. CIDEr only), not for reporting.
"""

from __future__ import annotations

import json
import random
import shutil
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from captioner.text import normalize

METRIC_KEYS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr")
_BLEU_KEYS = METRIC_KEYS[:4]


class ScoringError(ValueError):
    """Captions that cannot be scored: mismatched ids, bad values, no Java runtime."""


@dataclass
class Scores:
    """Corpus scores on pycocoevalcap's scale, and per-image scores where it gives them."""

    corpus: dict[str, float]
    per_image: dict[str, dict[str, float]]


def score_captions(
    references: Mapping[str, Sequence[str]],
    hypotheses: Mapping[str, str],
    metrics: Sequence[str] = METRIC_KEYS,
    tokenize: bool = True,
) -> Scores:
    """Score one hypothesis per image against that image's references.

    Args:
        references: image id -> reference captions (at least one each).
        hypotheses: image id -> the caption to score; exactly the ids of ``references``.
            Empty strings are allowed and score (near) zero.
        metrics: any of ``METRIC_KEYS``.
        tokenize: PTB-tokenize with Java as coco-caption does; ``False`` uses the
            project's ``normalize`` and starts Java only if METEOR is asked for.

    Returns:
        Corpus and per-image scores for the requested metrics, in ``METRIC_KEYS``
        order; per-image entries follow the order of ``references``.

    Raises:
        ScoringError: on mismatched ids, malformed captions, unknown metrics or no Java.
    """
    wanted = _check_metrics(metrics)
    ids = _check_inputs(references, hypotheses)
    if tokenize or "METEOR" in wanted:
        _require_java("the PTB tokenizer" if tokenize else "METEOR")
    if tokenize:
        gts = _ptb_tokenize({i: list(references[i]) for i in ids})
        res = _ptb_tokenize({i: [hypotheses[i]] for i in ids})
    else:
        gts = {i: [" ".join(normalize(c)) for c in references[i]] for i in ids}
        res = {i: [" ".join(normalize(hypotheses[i]))] for i in ids}

    corpus: dict[str, float] = {}
    per_image: dict[str, dict[str, float]] = {i: {} for i in ids}

    def keep(key: str, score: Any, scores: Sequence[Any]) -> None:
        corpus[key] = float(score)
        for image_id, value in zip(ids, scores, strict=True):
            per_image[image_id][key] = float(value)

    if any(k in wanted for k in _BLEU_KEYS):
        from pycocoevalcap.bleu.bleu import Bleu

        score, scores = Bleu(4).compute_score(gts, res, verbose=0)
        for n, key in enumerate(_BLEU_KEYS):
            if key in wanted:
                keep(key, score[n], scores[n])
    if "METEOR" in wanted:
        keep("METEOR", *_meteor(gts, res))
    if "ROUGE-L" in wanted:
        from pycocoevalcap.rouge.rouge import Rouge

        keep("ROUGE-L", *Rouge().compute_score(gts, res))
    if "CIDEr" in wanted:
        from pycocoevalcap.cider.cider import Cider

        keep("CIDEr", *Cider().compute_score(gts, res))
    return Scores(corpus=corpus, per_image=per_image)


def score_files(references_path: str | Path, hypotheses_path: str | Path) -> dict[str, float]:
    """Corpus scores (all of ``METRIC_KEYS``) for two JSON files.

    Args:
        references_path: JSON object, image id -> list of reference captions.
        hypotheses_path: JSON object, image id -> one caption.
    """
    references = _read_json(references_path, "references")
    hypotheses = _read_json(hypotheses_path, "hypotheses")
    try:
        return score_captions(references, hypotheses).corpus
    except ScoringError as exc:
        raise ScoringError(f"{references_path} vs {hypotheses_path}: {exc}") from None


def best_constant_caption(
    train_captions: Sequence[str],
    references: Mapping[str, Sequence[str]],
    candidates: int = 300,
    seed: int | None = 0,
) -> tuple[str, float]:
    """The constant baseline: one caption, given for every image, that maximises CIDEr.

    Candidates are the normalised training captions: the most frequent half of
    ``candidates``, then a reproducible random sample of the others. The search uses
    a cached form of pycocoevalcap's CIDEr-D (the hypothesis is the same for every
    image, so its vector is computed once); the returned score is pycocoevalcap's own
    (``score_captions(..., tokenize=False)``).

    Returns:
        The normalised caption and its corpus CIDEr.
    """
    if candidates < 1:
        raise ScoringError(f"candidates must be at least 1, got {candidates}")
    counts = Counter(" ".join(normalize(c)) for c in train_captions)
    counts.pop("", None)
    if not counts:
        raise ScoringError("no non-empty training captions to choose a constant caption from")
    ranked = sorted(counts, key=lambda c: (-counts[c], c))
    pool = ranked[: max(1, candidates // 2)]
    rest = ranked[len(pool) :]
    pool += random.Random(seed).sample(rest, min(len(rest), candidates - len(pool)))

    _check_inputs(references, dict.fromkeys(references, ""))
    cider = _ConstantCider([[" ".join(normalize(c)) for c in refs] for refs in references.values()])
    best = max(pool, key=lambda c: (cider(c), c))
    constant = dict.fromkeys(references, best)
    return best, score_captions(references, constant, ("CIDEr",), tokenize=False).corpus["CIDEr"]


class _ConstantCider:
    """pycocoevalcap's CIDEr-D (n=4, sigma=6) for one hypothesis shared by all images.

    The reference side (document frequencies, tf-idf vectors, norms, lengths) is
    computed once and kept as an inverted index, so each candidate costs only the
    postings of its own n-grams.
    """

    def __init__(self, refs_per_image: list[list[str]], n: int = 4, sigma: float = 6.0) -> None:
        from pycocoevalcap.cider.cider_scorer import cook_refs

        self.n, self.sigma = n, sigma
        cooked = [cook_refs(refs, n) for refs in refs_per_image]
        self.doc_freq: Counter[tuple[str, ...]] = Counter()
        for refs in cooked:
            self.doc_freq.update({g for ref in refs for g in ref})
        self.log_images = np.log(float(len(cooked)))
        postings: dict[tuple[str, ...], tuple[list[int], list[float]]] = {}
        norms: list[list[float]] = []
        lengths: list[int] = []
        images: list[int] = []
        for image, refs in enumerate(cooked):
            for ref in refs:
                weights, norm, length = self._vector(ref)
                for gram, weight in weights.items():
                    rows, values = postings.setdefault(gram, ([], []))
                    rows.append(len(norms))
                    values.append(weight)
                norms.append(norm)
                lengths.append(length)
                images.append(image)
        self.postings = {g: (np.array(r), np.array(v)) for g, (r, v) in postings.items()}
        self.ref_norm = np.array(norms).T  # n x refs
        self.ref_len = np.array(lengths, dtype=float)
        self.image_of_ref = np.array(images)
        self.refs_per_image = np.array([len(refs) for refs in cooked], dtype=float)

    def _vector(self, counts: Mapping[tuple[str, ...], int]) -> tuple[dict, list[float], int]:
        weights: dict[tuple[str, ...], float] = {}
        norm = [0.0] * self.n
        length = 0
        for gram, tf in counts.items():
            k = len(gram) - 1
            weights[gram] = float(tf) * (self.log_images - np.log(max(1.0, self.doc_freq[gram])))
            norm[k] += weights[gram] ** 2
            if k == 1:  # pycocoevalcap counts "length" in bigrams; kept for equality
                length += tf
        return weights, [float(np.sqrt(x)) for x in norm], length

    def __call__(self, caption: str) -> float:
        from pycocoevalcap.cider.cider_scorer import cook_test

        weights, hyp_norm, hyp_len = self._vector(cook_test(caption, self.n))
        overlap = np.zeros_like(self.ref_norm)
        for gram, weight in weights.items():
            if gram in self.postings:
                rows, values = self.postings[gram]
                overlap[len(gram) - 1, rows] += np.minimum(weight, values) * values
        denominator = np.array(hyp_norm)[:, None] * self.ref_norm
        cosine = np.divide(overlap, denominator, out=overlap, where=denominator != 0)
        penalty = np.exp(-((hyp_len - self.ref_len) ** 2) / (2 * self.sigma**2))
        per_ref = cosine.sum(axis=0) * penalty
        per_image = np.bincount(self.image_of_ref, per_ref, len(self.refs_per_image))
        return float(np.mean(per_image / self.n / self.refs_per_image * 10.0))


def _check_metrics(metrics: Sequence[str]) -> set[str]:
    if isinstance(metrics, str):
        metrics = (metrics,)
    unknown = [m for m in metrics if m not in METRIC_KEYS]
    if unknown:
        raise ScoringError(
            f"unknown metric(s) {', '.join(map(repr, unknown))}; known: {', '.join(METRIC_KEYS)}"
        )
    if not metrics:
        raise ScoringError("no metrics requested")
    return set(metrics)


def _check_inputs(
    references: Mapping[str, Sequence[str]], hypotheses: Mapping[str, str]
) -> list[str]:
    """The image ids, in the order of ``references``, once both inputs are well formed."""
    if not isinstance(references, Mapping) or not isinstance(hypotheses, Mapping):
        raise ScoringError("references and hypotheses must be mappings from image id")
    if not references:
        raise ScoringError("nothing to score: no references")
    missing = [i for i in references if i not in hypotheses]
    extra = [i for i in hypotheses if i not in references]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} image(s) without a hypothesis (first: {_first(missing)})")
        if extra:
            parts.append(
                f"{len(extra)} hypothesis id(s) not in the references (first: {_first(extra)})"
            )
        raise ScoringError(
            f"hypotheses and references must cover the same {len(references)} images: "
            + "; ".join(parts)
        )
    for image_id, refs in references.items():
        if isinstance(refs, str) or not isinstance(refs, Sequence):
            raise ScoringError(
                f"references of {image_id!r} must be a list of strings, got {type(refs).__name__}"
            )
        if not refs:
            raise ScoringError(
                f"references of {image_id!r} are empty; each image needs at least one"
            )
        bad = [type(r).__name__ for r in refs if not isinstance(r, str)]
        if bad:
            raise ScoringError(f"references of {image_id!r} must be strings, got {bad[0]}")
        hypothesis = hypotheses[image_id]
        if not isinstance(hypothesis, str):
            kind = type(hypothesis).__name__
            raise ScoringError(f"hypothesis of {image_id!r} must be a string, got {kind}")
    return list(references)


def _first(ids: list[Any], count: int = 5) -> str:
    return ", ".join(map(str, ids[:count])) + (", ..." if len(ids) > count else "")


def _require_java(what: str) -> None:
    if shutil.which("java") is None:
        raise ScoringError(
            f"{what} needs a Java runtime and 'java' is not on PATH: install Java (8 or newer), "
            "or score with tokenize=False and without METEOR"
        )


def _ptb_tokenize(captions: dict[str, list[str]]) -> dict[str, list[str]]:
    """pycocoevalcap's PTBTokenizer, guarded against silent misalignment.

    The tokenizer writes one caption per line and Java also breaks lines at ``\\r``,
    ``\\u2028``, vertical tab and form feed, which would shift every later caption onto
    the wrong image; those characters become spaces first (no-op on ordinary captions).
    """
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    flat = {
        i: [{"caption": " ".join(c.splitlines())} for c in caps] for i, caps in captions.items()
    }
    try:
        tokenized = PTBTokenizer().tokenize(flat)
    except OSError as exc:
        raise ScoringError(
            f"the PTB tokenizer could not run ({exc}); pycocoevalcap writes a temporary file "
            "beside its jar, so its tokenizer directory must be writable"
        ) from exc
    wrong = [i for i, caps in captions.items() if len(tokenized.get(i, ())) != len(caps)]
    if wrong:
        raise ScoringError(
            f"the PTB tokenizer lost captions of {len(wrong)} image(s) (first: {_first(wrong)})"
        )
    return tokenized


def _meteor(gts: dict[str, list[str]], res: dict[str, list[str]]) -> tuple[float, list[float]]:
    """METEOR 1.5 through pycocoevalcap, with its Java process always shut down."""
    from pycocoevalcap.meteor.meteor import Meteor

    meteor = Meteor()
    try:
        return meteor.compute_score(gts, res)
    except (OSError, ValueError) as exc:
        # A dead or failing JVM shows up as a broken pipe or an unparsable score line.
        meteor.meteor_p.kill()
        detail = meteor.meteor_p.stderr.read().decode(errors="replace").strip()[-500:]
        raise ScoringError(f"METEOR failed ({exc}): {detail or 'no output from java'}") from exc
    finally:
        if meteor.lock.locked():
            meteor.lock.release()
        del meteor


def _read_json(path: str | Path, what: str) -> dict[str, Any]:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ScoringError(f"no {what} file at {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScoringError(f"cannot read {what} file {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ScoringError(f"{what} file {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        shape = "image id -> list of captions" if what == "references" else "image id -> caption"
        raise ScoringError(
            f"{what} file {path} must hold a JSON object ({shape}), got {type(data).__name__}"
        )
    return data


@dataclass(frozen=True)
class Interval:
    """A mean and its percentile bootstrap confidence interval."""

    mean: float
    low: float
    high: float

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


def bootstrap(
    values: Sequence[float],
    baseline: Sequence[float] | None = None,
    resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Percentile bootstrap of a mean per-image score, or of a paired difference.

    With ``baseline``, the same resampled images score both systems and the interval
    is of ``mean(values) - mean(baseline)``: the paired test that says whether one
    caption source beats another on these images. (A few lines of numpy rather than
    scipy.stats.bootstrap: scipy is not otherwise needed by the project.)
    """
    a = np.asarray(values, dtype=np.float64)
    if baseline is not None:
        b = np.asarray(baseline, dtype=np.float64)
        if b.shape != a.shape:
            raise ScoringError(f"paired scores differ in length: {a.shape[0]} vs {b.shape[0]}")
        a = a - b
    if a.size == 0:
        raise ScoringError("no scores to bootstrap")
    rng = np.random.default_rng(seed)
    means = a[rng.integers(0, a.size, size=(resamples, a.size))].mean(axis=1)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return Interval(float(a.mean()), float(low), float(high))
