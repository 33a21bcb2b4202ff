"""Caption scoring: the coco-caption procedure (BLEU, METEOR, ROUGE-L, CIDEr), run by pycocoevalcap.

``score_captions`` tokenizes with the Stanford PTB tokenizer (Java) and scores with
pycocoevalcap's BLEU, METEOR (Java), ROUGE-L and CIDEr(-D), exactly as coco-caption's
``COCOEvalCap`` does, so that the numbers can be compared with published ones.
``tokenize=False`` skips Java and uses ``captioner.text.normalize`` tokens instead:
fast enough for validation during training (e.g. CIDEr only), not for reporting.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    ids = check_inputs(references, hypotheses)
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


def check_inputs(
    references: Mapping[str, Sequence[str]], hypotheses: Mapping[str, str]
) -> list[str]:
    """The image ids, in the order of ``references``, once both inputs are well formed.

    Raises:
        ScoringError: the ids differ, or a caption is not a string (references: a
            non-empty list of strings per image).
    """
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
