"""Choose a trained model's decoding on validation: beam size, length penalty, re-ranking.

The choice is made once, on the validation split (never the test split), and saved
beside the model (``decoding.json`` and the consensus files of
:mod:`captioner.consensus`), so that export puts it in the package and the service
answers with it by default. Scores here are the fast CIDEr (``tokenize=False``)
that validation uses during training.
"""

from __future__ import annotations

import itertools
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from captioner.consensus import CONFIG_FILE, FEATURES_FILE, ConsensusReranker
from captioner.decoding import Candidate, DecodeOptions, decode
from captioner.text import Vocabulary
from training.datasets.base import CaptionDataset
from training.decode import step_decoder
from training.metrics import score_captions
from training.models.captioner import CaptionModel

log = logging.getLogger(__name__)

DECODING_FILE = "decoding.json"
BEAM_SIZES = (3, 5)
LENGTH_PENALTIES = (0.7, 1.0)
NEIGHBOURS = (10, 20, 40)
WEIGHTS = (0.0, 0.3)


@dataclass(frozen=True)
class Decoding:
    """The decoding a model is served with by default.

    Attributes:
        beam_size: 1 is greedy.
        length_penalty: see :class:`captioner.decoding.DecodeOptions`.
        rerank: re-rank the beam by consensus with the nearest training photos.
        val_cider: the validation CIDEr (fast tokenisation) this choice reached.
    """

    beam_size: int = 3
    length_penalty: float = 0.7
    rerank: bool = False
    val_cider: float | None = None

    def save(self, model_dir: Path) -> Path:
        path = Path(model_dir) / DECODING_FILE
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, model_dir: Path) -> Decoding | None:
        """The saved choice, or None for a model that never had one made."""
        path = Path(model_dir) / DECODING_FILE
        if not path.is_file():
            return None
        try:
            return cls(**json.loads(path.read_text()))
        except (json.JSONDecodeError, TypeError) as exc:
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
    model = CaptionModel.load_dir(model_dir)
    vocab = Vocabulary.load(model_dir / "vocab.json")
    decoder = step_decoder(model)
    val_features = features_of(model, val_set)
    references = val_set.references()
    ids = [ex.image_id for ex in val_set.examples]
    reranker = None if train_set is None else build_reranker(model, train_set, train_features)

    def cider(ranked: list[list[Candidate]]) -> float:
        hypotheses = {i: vocab.decode(c[0].tokens) for i, c in zip(ids, ranked, strict=True)}
        scores = score_captions(references, hypotheses, metrics=("CIDEr",), tokenize=False)
        return scores.corpus["CIDEr"]

    best: tuple[float, Decoding, ConsensusReranker | None] = (-1.0, Decoding(), None)
    for beam, penalty in itertools.product(BEAM_SIZES, LENGTH_PENALTIES):
        options = DecodeOptions(beam, vocab.max_length, penalty)
        state = decoder.initial_state(val_features)
        ranked = decode(decoder, val_features, state, vocab.start_id, vocab.end_id, options)
        plain = cider(ranked)
        log.info("val: beam %d, length penalty %.1f: CIDEr %.3f", beam, penalty, plain)
        if plain > best[0]:
            best = (plain, Decoding(beam, penalty, False, plain), None)
        if reranker is None:
            continue
        for k, weight in itertools.product(NEIGHBOURS, WEIGHTS):
            trial = reranker.with_settings(k=min(k, len(reranker.captions)), weight=weight)
            reranked = [trial.rerank(val_features[n], c, vocab) for n, c in enumerate(ranked)]
            score = cider(reranked)
            log.info("val:   re-ranked with k %d, weight %.1f: CIDEr %.3f", k, weight, score)
            if score > best[0]:
                best = (score, Decoding(beam, penalty, True, score), trial)
    _, decoding, chosen = best
    decoding.save(model_dir)
    if chosen is not None:
        chosen.save(model_dir)
    else:
        for name in (FEATURES_FILE, CONFIG_FILE):  # a stale choice must not be exported
            (model_dir / name).unlink(missing_ok=True)
    log.info("decoding chosen on %d val photos: %s", len(val_set), decoding)
    return decoding
