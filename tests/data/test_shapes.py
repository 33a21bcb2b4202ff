"""The synthetic ``shapes`` dataset: determinism, captions, the correctness judge, pixels."""

from __future__ import annotations

import random
from collections import Counter
from itertools import combinations

import numpy as np
import pytest

from captioner.text import normalize
from training.datasets.base import DatasetError
from training.datasets.shapes import (
    BACKGROUND,
    COLOURS,
    RADII,
    SIZES,
    Scene,
    Shape,
    correct_share,
    describe,
    is_correct,
    load_shapes,
    make_scene,
    render,
)


@pytest.fixture(scope="module")
def train():
    return load_shapes("train")


@pytest.fixture(scope="module")
def scenes():
    rng = random.Random(7)
    return [make_scene(rng) for _ in range(300)]


def _pair() -> Scene:
    """A large red circle to the left of a small blue square."""
    return Scene(
        "pair",
        (Shape("circle", "red", "large", 0.25, 0.5), Shape("square", "blue", "small", 0.75, 0.52)),
        "left of",
    )


def _identity(scene: Scene) -> tuple:
    """What a caption without sizes must get right."""
    return (
        scene.kind,
        scene.relation,
        len(scene.objects),
        [(o.shape, o.colour) for o in scene.objects],
    )


def test_same_sample_gives_same_pixels_and_captions():
    one, two = load_shapes("test", 20, 3), load_shapes("test", 20, 3)
    assert [e.image_id for e in one.examples] == [e.image_id for e in two.examples]
    assert one.all_captions() == two.all_captions()
    for a, b in zip(one.examples, two.examples, strict=True):
        assert np.array_equal(one.image(a), two.image(b))


def test_different_seeds_differ():
    one, two = load_shapes("test", 20, 3), load_shapes("test", 20, 4)
    assert [e.image_id for e in one.examples] != [e.image_id for e in two.examples]
    first, second = make_scene(random.Random(1)), make_scene(random.Random(2))
    assert first != second
    assert not np.array_equal(render(first), render(second))


def test_sampling_follows_base_sample_and_count_alone_takes_the_first():
    assert len(load_shapes("val", 50, 1)) == 50
    assert [e.image_id for e in load_shapes("val", 3).examples] == [
        "shapes-val-000000",
        "shapes-val-000001",
        "shapes-val-000002",
    ]
    with pytest.raises(DatasetError):
        load_shapes("val", SIZES["val"] + 1, 1)
    with pytest.raises(DatasetError, match="no split"):
        load_shapes("dev")


def test_splits_are_disjoint_and_differ(train):
    val, test = load_shapes("val"), load_shapes("test")
    assert (len(train), len(val), len(test)) == (SIZES["train"], SIZES["val"], SIZES["test"])
    ids = [{e.image_id for e in ds.examples} for ds in (train, val, test)]
    assert not ids[0] & ids[1] and not ids[0] & ids[2] and not ids[1] & ids[2]
    assert all(i.startswith("shapes-val-") for i in ids[1])
    assert [e.scene for e in val.examples[:50]] != [e.scene for e in test.examples[:50]]


def test_five_distinct_captions_per_image(train):
    assert all(len(e.captions) == 5 and len(set(e.captions)) == 5 for e in train.examples)


def test_vocabulary_is_small_and_numbers_are_words(train):
    words = {w for c in train.all_captions() for w in normalize(c)}
    assert len(words) <= 40
    assert {"two", "three"} <= words
    assert all(c.split() == normalize(c) for c in train.all_captions()[:500])


def test_kinds_are_balanced_and_no_constant_caption_fits_many(train):
    kinds = Counter(e.scene.kind for e in train.examples)
    assert set(kinds) == {"single", "pair", "group"}
    assert all(n > 0.28 * len(train) for n in kinds.values())
    commonest, _ = Counter(e.captions[0] for e in train.examples).most_common(1)[0]
    fits = sum(is_correct(commonest, e.scene) for e in train.examples)
    assert fits < 0.03 * len(train)


def test_every_reference_is_correct_for_its_scene(scenes):
    for scene in scenes:
        captions = describe(scene, random.Random(0))
        assert all(is_correct(c, scene) for c in captions), captions


def test_references_fail_for_scenes_that_differ(scenes):
    for scene, other in zip(scenes, scenes[1:], strict=False):
        if _identity(scene) != _identity(other):
            captions = describe(scene, random.Random(0))
            assert not any(is_correct(c, other) for c in captions), (captions, other)


@pytest.mark.parametrize(
    "caption",
    [
        "a large red circle to the left of a small blue square",
        "A small blue square, to the right of a large red circle.",
        "there is a big red circle left of a little blue square",
        "a red circle to the left of a blue square",
        "a little blue square on the right and a big red circle on the left",
    ],
)
def test_phrasings_of_the_pair_are_correct(caption):
    assert is_correct(caption, _pair())


@pytest.mark.parametrize(
    "caption",
    [
        "a large blue circle to the left of a small red square",  # colours swapped
        "a large red circle to the right of a small blue square",  # relation swapped
        "a large red circle above a small blue square",  # wrong axis
        "a small red circle to the left of a small blue square",  # wrong size
        "a large red triangle to the left of a small blue square",  # wrong shape
        "a large red circle",  # an object left out
        "two red circles",  # wrong count
        "a large red circle to the left of a small blue square and a green triangle",  # extra
        "a large red circle on its own",
        "a single large red circle to the left of a small blue square",
        "there are a large red circle to the left of a small blue square",
        "a large red circle on the left and a small blue square on the left",
        "a large red circle to the left of",
        "red circle blue square",
        "",
    ],
)
def test_wrong_or_malformed_captions_fail(caption):
    assert not is_correct(caption, _pair())


def test_counts_and_sizes_of_a_group_are_checked():
    group = Scene(
        "group", tuple(Shape("square", "green", "small", x, 0.5) for x in (0.2, 0.5, 0.8))
    )
    assert is_correct("three green squares", group)
    assert is_correct("a group of three little green squares", group)
    assert not is_correct("two small green squares", group)
    assert not is_correct("three large green squares", group)
    assert not is_correct("a small green square", group)
    assert not is_correct("three small green square", group)


def test_correct_share(train):
    examples = train.examples[:4]
    hypotheses = {e.image_id: e.captions[2] for e in examples}
    assert correct_share(hypotheses, train) == 1.0
    hypotheses[examples[0].image_id] = "three red triangles to the left"
    assert correct_share(hypotheses, train) == 0.75
    with pytest.raises(ValueError, match="no shapes scene"):
        correct_share({"flickr-1": "a dog"}, train)


def test_objects_are_inside_apart_and_drawn_whole(scenes):
    for scene in scenes:
        image = render(scene)
        assert image.shape == (64, 64, 3) and image.dtype == np.uint8
        border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
        assert (border == BACKGROUND).all()
        for o in scene.objects:
            assert o.radius <= o.x <= 1 - o.radius and o.radius <= o.y <= 1 - o.radius
        for a, b in combinations(scene.objects, 2):
            assert max(abs(a.x - b.x), abs(a.y - b.y)) > a.radius + b.radius
        # Objects drawn one at a time cover exactly the pixels of the whole scene only
        # if none hides part of another.
        alone = [render(Scene("single", (o,))) != BACKGROUND for o in scene.objects]
        drawn = render(scene) != BACKGROUND
        assert np.array_equal(np.logical_or.reduce(alone), drawn)
        assert sum(m.all(axis=2).sum() for m in alone) == drawn.all(axis=2).sum()
        for o in scene.objects:
            centre = image[int(o.y * 64), int(o.x * 64)]
            assert tuple(centre) == COLOURS[o.colour]


def test_pair_relations_hold_on_one_axis_only(scenes):
    pairs = [s for s in scenes if s.kind == "pair"]
    assert {s.relation for s in pairs} == {"left of", "above"}
    for scene in pairs:
        a, b = scene.objects
        along, across = (
            (b.x - a.x, b.y - a.y) if scene.relation == "left of" else (b.y - a.y, b.x - a.x)
        )
        assert along > a.radius + b.radius
        assert abs(across) < along / 2
        assert (a.shape, a.colour) != (b.shape, b.colour)


def test_sizes_are_clearly_apart():
    area = {
        size: (render(Scene("single", (Shape("triangle", "blue", size, 0.5, 0.5),))) != BACKGROUND)
        .any(axis=2)
        .sum()
        for size in RADII
    }
    assert area["large"] > 2.5 * area["small"]


def test_renders_at_other_sizes():
    dataset = load_shapes("val", 10, 0, image_size=32)
    assert dataset.image(dataset.examples[0]).shape == (32, 32, 3)
