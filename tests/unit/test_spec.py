import pytest

from training.datasets.spec import DatasetSpec, SpecError, parse_spec


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("flickr8k[train]", DatasetSpec("flickr8k", "train")),
        ("flickr8k[test]-500s42", DatasetSpec("flickr8k", "test", 500, 42)),
        ("coco[val]-1000s7", DatasetSpec("coco", "val", 1000, 7)),
        ("shapes[train]-6000s1", DatasetSpec("shapes", "train", 6000, 1)),
    ],
)
def test_parse_round_trips(text, expected):
    assert parse_spec(text) == expected
    assert str(expected) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("flickr8k", "split goes in brackets"),
        ("flickr8k[train]-500", "needs a seed"),
        ("flickr8k[train]-5x0s1", "COUNTsSEED"),
        ("flickr8k[dev]", "unknown split 'dev'"),
        ("flickr8k[train]-0s1", "at least 1"),
    ],
)
def test_malformed_specs_say_what_is_wrong(text, message):
    with pytest.raises(SpecError, match=message):
        parse_spec(text)


def test_unknown_dataset_is_named():
    with pytest.raises(SpecError, match="unknown dataset 'imagenet'"):
        parse_spec("imagenet[train]", known=("shapes", "flickr8k"))
