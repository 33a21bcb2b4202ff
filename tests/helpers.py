"""Factories shared by the tests."""

from __future__ import annotations

import io
import itertools
from pathlib import Path

import numpy as np
from PIL import Image

from captioner.decoding import Candidate


class MarkovStep:
    """A toy step decoder: log-probabilities depend on the previous token and the image.

    ``table[image, prev]`` is a row of log-probabilities over the vocabulary; the
    state carries the image index through the search, like a real model's state.
    """

    def __init__(self, vocab_size: int = 6, images: int = 3, seed: int = 0, end_id: int = 2):
        rng = np.random.default_rng(seed)
        logits = rng.normal(size=(images, vocab_size, vocab_size)) * 2.0
        logits[..., 0] = -1e9  # never <pad>
        logits[..., 1] = -1e9  # never <start>
        self.table = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        self.end_id = end_id
        self.calls = 0

    def initial_state(self, features: np.ndarray) -> list[np.ndarray]:
        return [features[:, 0].astype(np.int64)]

    def step(self, features, tokens, state):
        self.calls += 1
        image = state[0]
        return self.table[image, tokens].astype(np.float32), [image], None

    def brute_force(self, image: int, max_length: int, penalty: float) -> tuple[list[int], float]:
        """The best finished caption by exhaustive search (words then <end>)."""
        words = [w for w in range(self.table.shape[1]) if w not in (0, 1, self.end_id)]
        best: tuple[list[int], float] = ([], -np.inf)
        for length in range(max_length + 1):
            for seq in itertools.product(words, repeat=length):
                prev, total = 1, 0.0
                for w in (*seq, self.end_id):
                    total += float(self.table[image, prev, w].astype(np.float32))
                    prev = w
                score = total / (max(length + 1, 1) ** penalty)
                if score > best[1]:
                    best = (list(seq), score)
        return best


def top(candidates: list[list[Candidate]]) -> list[list[int]]:
    return [c[0].tokens for c in candidates]


SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FLICKR8K_TEXT = SHARED_DATA / "flickr8k_text"


def write_stand_in_images(folder: Path, names, size: int = 8, seed: int = 0) -> Path:
    """Small JPEGs standing in for real photos, one colour per name (seeded)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name in names:
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        buffer = io.BytesIO()
        Image.new("RGB", (size, size), colour).save(buffer, "JPEG")
        (folder / name).write_bytes(buffer.getvalue())
    return folder


def coco_scores(references, hypotheses, tokenize=True):
    """The numbers by calling pycocoevalcap directly, as coco-caption's COCOEvalCap does."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    from captioner.text import normalize

    ids = list(references)
    if tokenize:
        tokenizer = PTBTokenizer()
        gts = tokenizer.tokenize({i: [{"caption": c} for c in references[i]] for i in ids})
        res = tokenizer.tokenize({i: [{"caption": hypotheses[i]}] for i in ids})
    else:
        gts = {i: [" ".join(normalize(c)) for c in references[i]] for i in ids}
        res = {i: [" ".join(normalize(hypotheses[i]))] for i in ids}
    corpus, per_image = {}, {}
    bleu, bleus = Bleu(4).compute_score(gts, res, verbose=0)
    for n in range(4):
        corpus[f"BLEU-{n + 1}"], per_image[f"BLEU-{n + 1}"] = bleu[n], bleus[n]
    if tokenize:
        corpus["METEOR"], per_image["METEOR"] = Meteor().compute_score(gts, res)
    corpus["ROUGE-L"], per_image["ROUGE-L"] = Rouge().compute_score(gts, res)
    corpus["CIDEr"], per_image["CIDEr"] = Cider().compute_score(gts, res)
    return corpus, {k: dict(zip(ids, v, strict=True)) for k, v in per_image.items()}
