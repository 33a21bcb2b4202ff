"""Choose a trained model's decoding on validation: beam size, length penalty, re-ranking.

The choice is made once, on the validation split (never the test split), and saved
beside the model (``decoding.json`` and the consensus files of
:mod:`captioner.consensus`), so that export puts it in the package and the service
answers with it by default. Scores here are the fast CIDEr (``tokenize=False``)
that validation uses during training.
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from captioner.consensus import ConsensusReranker
from captioner.decoding import (
    DEFAULT_LENGTH_PENALTY,
    UNTUNED_BEAM_SIZE,
    Candidate,
    DecodeOptions,
    decode,
)
from captioner.package import Decoding
from training.atomic import write_json
from training.datasets.base import CaptionDataset
from training.models.captioner import CaptionModel
from training.reference_decoder import step_decoder
from training.run_dir import RunDir, TrainedModel
from training.scoring import score_captions

log = logging.getLogger(__name__)

BEAM_SIZES = (3, 5)
LENGTH_PENALTIES = (DEFAULT_LENGTH_PENALTY, 1.0)
NEIGHBOURS = (10, 20, 40)
WEIGHTS = (0.0, 0.3)


def save_decoding(model_dir: Path, decoding: Decoding) -> Path:
    """Write the choice beside the model, where export reads it into the manifest."""
    path = Path(model_dir) / RunDir.DECODING_FILE
    write_json(path, decoding.model_dump())
    return path


def load_decoding(model_dir: Path) -> Decoding | None:
    """The saved choice, or None for a model that never had one made.

    Raises:
        ValueError: the file is there but is not a valid choice.
    """
    path = Path(model_dir) / RunDir.DECODING_FILE
    if not path.is_file():
        return None
    try:
        return Decoding.model_validate_json(path.read_text())
    except ValidationError as exc:
        raise ValueError(f"{path} is malformed: {exc}") from exc


def features_of(model: CaptionModel, dataset: CaptionDataset, batch_size: int = 64) -> np.ndarray:
    """The model's encoder features for every image of DATASET."""
    from captioner.images import preprocess

    decoder = step_decoder(model)
    spec = model.config.preprocessing()
    rows = []
    for start in range(0, len(dataset), batch_size):
        chunk = dataset.examples[start : start + batch_size]
        rows.append(decoder.encode(np.stack([preprocess(dataset.image(e), spec) for e in chunk])))
    return np.concatenate(rows)


def build_reranker(
    model: CaptionModel, train_set: CaptionDataset, features: np.ndarray | None = None
) -> ConsensusReranker:
    """The consensus reranker over the training photos, with their features from MODEL."""
    if features is None:
        features = features_of(model, train_set)
    return ConsensusReranker.build(features, [ex.captions for ex in train_set.examples])


def choose_decoding(
    model_dir: Path,
    train_set: CaptionDataset | None,
    val_set: CaptionDataset,
    train_features: np.ndarray | None = None,
) -> Decoding:
    """Try every beam size, length penalty and re-ranking setting on VAL_SET; keep the best.

    Without ``train_set``, re-ranking is not tried.

    Writes ``decoding.json`` and, when re-ranking wins, the consensus files into
    ``model_dir``. Ties keep the simpler choice (earlier in the grid).
    """
    trained = TrainedModel.load(model_dir)
    model, vocab = trained.model, trained.vocab
    decoder = step_decoder(model)
    val_features = features_of(model, val_set)
    references = val_set.references()
    ids = [ex.image_id for ex in val_set.examples]
    reranker = None if train_set is None else build_reranker(model, train_set, train_features)

    def cider(ranked: list[list[Candidate]]) -> float:
        hypotheses = {i: vocab.decode(c[0].tokens) for i, c in zip(ids, ranked, strict=True)}
        scores = score_captions(references, hypotheses, metrics=("CIDEr",), tokenize=False)
        return scores.corpus["CIDEr"]

    untuned = Decoding(beam_size=UNTUNED_BEAM_SIZE)
    best: tuple[float, Decoding, ConsensusReranker | None] = (-1.0, untuned, None)
    for beam, penalty in itertools.product(BEAM_SIZES, LENGTH_PENALTIES):
        options = DecodeOptions(beam, vocab.max_length, penalty)
        state = decoder.initial_state(val_features)
        ranked = decode(decoder, val_features, state, vocab.start_id, vocab.end_id, options)
        plain = cider(ranked)
        log.info("val: beam %d, length penalty %.1f: CIDEr %.3f", beam, penalty, plain)
        if plain > best[0]:
            best = (plain, Decoding(beam_size=beam, length_penalty=penalty, val_cider=plain), None)
        if reranker is None:
            continue
        for k, weight in itertools.product(NEIGHBOURS, WEIGHTS):
            trial = reranker.with_settings(k=min(k, len(reranker.captions)), weight=weight)
            reranked = [trial.rerank(val_features[n], c, vocab) for n, c in enumerate(ranked)]
            score = cider(reranked)
            log.info("val:   re-ranked with k %d, weight %.1f: CIDEr %.3f", k, weight, score)
            if score > best[0]:
                reranked_choice = Decoding(
                    beam_size=beam, length_penalty=penalty, rerank=True, val_cider=score
                )
                best = (score, reranked_choice, trial)
    _, decoding, chosen = best
    save_decoding(model_dir, decoding)
    if chosen is not None:
        chosen.save(model_dir)
    else:
        for name in RunDir.CONSENSUS_FILES:  # a stale choice must not be exported
            (model_dir / name).unlink(missing_ok=True)
    log.info("decoding chosen on %d val photos: %s", len(val_set), decoding)
    return decoding
