import numpy as np
import pytest

from captioner.decoding import (
    BatchStepper,
    DecodeOptions,
    beam_search,
    decode,
    greedy_search,
    new_search,
)
from tests.helpers import MarkovStep, top

END = 2


def features(n):
    return np.arange(n, dtype=np.float32)[:, None]


def test_greedy_follows_argmax():
    model = MarkovStep(images=2, seed=3)
    result = greedy_search(
        model, features(2), model.initial_state(features(2)), 1, END, DecodeOptions(max_length=6)
    )
    for image, candidates in enumerate(result):
        prev, expected = 1, []
        for _ in range(7):
            word = int(np.argmax(model.table[image, prev]))
            if word == END:
                break
            expected.append(word)
            prev = word
        assert candidates[0].tokens == expected[:6]


@pytest.mark.parametrize("seed", range(5))
def test_wide_beam_finds_the_exhaustive_best(seed):
    model = MarkovStep(vocab_size=6, images=3, seed=seed)
    options = DecodeOptions(beam_size=12, max_length=4, length_penalty=0.0)
    result = beam_search(model, features(3), model.initial_state(features(3)), 1, END, options)
    for image in range(3):
        tokens, score = model.brute_force(image, 4, 0.0)
        assert result[image][0].tokens == tokens
        assert result[image][0].score == pytest.approx(score, abs=1e-4)


def test_beam_does_not_stop_at_an_early_short_caption():
    model = MarkovStep(vocab_size=5, images=1, seed=0)
    table = np.full((5, 5), -30.0)
    table[1, END] = np.log(0.4)  # <start> -> <end>: the most likely first step
    table[1, 3] = np.log(0.35)
    table[1, 4] = np.log(0.25)
    table[3, END] = np.log(0.99)  # but "3 <end>" (p=0.3465) ...
    table[4, END] = np.log(0.5)
    table[4, 3] = np.log(0.5)
    table[3, 3] = np.log(0.01)
    model.table = table[None]
    result = beam_search(
        model,
        features(1),
        model.initial_state(features(1)),
        1,
        END,
        DecodeOptions(beam_size=1, max_length=4, length_penalty=1.0),
    )
    # ... ranks above the empty caption once scores are normalised by length.
    assert result[0][0].tokens == [3]


def test_batched_equals_one_by_one():
    model = MarkovStep(vocab_size=7, images=5, seed=11)
    options = DecodeOptions(beam_size=3, max_length=6)
    together = top(decode(model, features(5), model.initial_state(features(5)), 1, END, options))
    alone = [
        top(
            decode(
                model,
                features(5)[i : i + 1] * 0 + i,
                model.initial_state(features(5)[i : i + 1] * 0 + i),
                1,
                END,
                options,
            )
        )[0]
        for i in range(5)
    ]
    assert together == alone


def test_candidates_ranked_and_bounded():
    model = MarkovStep(vocab_size=7, images=2, seed=5)
    result = beam_search(
        model,
        features(2),
        model.initial_state(features(2)),
        1,
        END,
        DecodeOptions(beam_size=3, max_length=5),
    )
    for candidates in result:
        assert 1 <= len(candidates) <= 3
        scores = [c.score for c in candidates]
        assert scores == sorted(scores, reverse=True)
        assert all(len(c.tokens) <= 5 for c in candidates)


def test_max_length_is_respected():
    model = MarkovStep(vocab_size=6, images=2, seed=1)
    model.table[:, :, END] = -50.0  # <end> almost never wins
    for size in (1, 3):
        result = decode(
            model,
            features(2),
            model.initial_state(features(2)),
            1,
            END,
            DecodeOptions(beam_size=size, max_length=3),
        )
        assert all(len(c[0].tokens) == 3 for c in result)


def test_invalid_options():
    with pytest.raises(ValueError, match="beam_size"):
        DecodeOptions(beam_size=0)
    with pytest.raises(ValueError, match="max_length"):
        DecodeOptions(max_length=0)


def test_searches_joining_mid_flight_decode_as_if_alone():
    """Continuous batching: searches added and finished between steps change nothing."""
    model = MarkovStep(images=4, vocab_size=7, seed=11)
    plans = [DecodeOptions(beam_size=b, max_length=m) for b, m in ((1, 6), (3, 5), (2, 4), (4, 6))]

    def search(image):
        f = features(4)[image : image + 1]
        return new_search(f, model.initial_state(f), 1, END, plans[image])

    alone = [
        decode(model, features(4)[i : i + 1], [np.array([i])], 1, END, plans[i])[0]
        for i in range(4)
    ]
    stepper = BatchStepper(model)
    searches = [search(0)]
    rows_seen = []
    while not all(s.done for s in searches):
        rows_seen.append(stepper.step(searches))
        if len(searches) < 4:  # one more search joins after every step
            searches.append(search(len(searches)))
    together = [[(c.tokens, round(c.score, 6)) for c in s.result()] for s in searches]
    assert together == [[(c.tokens, round(c.score, 6)) for c in a] for a in alone]
    assert max(rows_seen) > 4  # beams of several searches really shared a step


def test_the_top_candidates_are_a_stable_sort_s_first_ones_ties_included():
    """BeamSearch picks its candidates by partition, not a full sort: the same indices,
    in the same order, as a stable sort, whatever the ties."""
    from captioner.decoding import _top

    rng = np.random.default_rng(0)
    for trial in range(2000):
        size, n = int(rng.integers(1, 60)), int(rng.integers(1, 10))
        if trial % 2:  # few distinct values: many ties, also at the n-th place
            values = rng.integers(-3, 3, size).astype(np.float64)
        else:
            values = rng.normal(size=size)
        assert list(_top(values, n)) == list(np.argsort(-values, kind="stable")[:n])
