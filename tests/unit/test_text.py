import json

import pytest

from captioner.text import SPECIALS, Vocabulary, VocabularyError, normalize


def test_normalize_lowercases_strips_punctuation_and_digit_tokens():
    assert normalize("A dog's T-shirt, 2 dogs and 3rd ball!") == [
        "a",
        "dogs",
        "tshirt",
        "dogs",
        "and",
        "ball",
    ]


def test_normalize_makes_no_substitutions():
    assert normalize("Two girls play") == ["two", "girls", "play"]


def test_build_counts_training_words_and_orders_by_frequency():
    vocab = Vocabulary.build(["a dog runs", "a dog sits", "a cat"], min_count=2)
    assert vocab.tokens == (*SPECIALS, "a", "dog")
    assert vocab.encode("a cat runs") == [4, vocab.unk_id, vocab.unk_id]
    assert vocab.max_length == 3


def test_max_length_from_quantile():
    captions = ["w " * n for n in range(1, 101)]
    assert Vocabulary.build(captions).max_length == 100
    assert Vocabulary.build(captions, max_length_quantile=0.9).max_length == 90


def test_sequences_are_shifted_and_padded():
    vocab = Vocabulary.build(["a dog runs fast"])
    x, y = vocab.sequences("a dog")
    assert len(x) == len(y) == vocab.max_length + 1
    assert x[:3] == [vocab.start_id, vocab.id_of("a"), vocab.id_of("dog")]
    assert y[:3] == [vocab.id_of("a"), vocab.id_of("dog"), vocab.end_id]
    assert x[3:] == y[3:] == [0, 0]


def test_decode_stops_at_end_and_skips_specials():
    vocab = Vocabulary.build(["a dog runs"])
    ids = [vocab.start_id, vocab.id_of("a"), vocab.id_of("dog"), vocab.end_id, vocab.id_of("runs")]
    assert vocab.decode(ids) == "a dog"
    with pytest.raises(VocabularyError, match="outside"):
        vocab.decode([999])


def test_save_load_round_trip_and_validation(tmp_path):
    vocab = Vocabulary.build(["a dog runs", "a cat"], min_count=1)
    loaded = Vocabulary.load(vocab.save(tmp_path / "vocab.json"))
    assert loaded == vocab and loaded.encode("a cat") == vocab.encode("a cat")
    (tmp_path / "bad.json").write_text(json.dumps({"format": 1, "tokens": ["x"], "max_length": 3}))
    with pytest.raises(VocabularyError, match="must start with"):
        Vocabulary.load(tmp_path / "bad.json")
    with pytest.raises(VocabularyError, match="no vocabulary"):
        Vocabulary.load(tmp_path / "missing.json")
    (tmp_path / "junk.json").write_text("{")
    with pytest.raises(VocabularyError, match="not valid JSON"):
        Vocabulary.load(tmp_path / "junk.json")


def test_coverage():
    vocab = Vocabulary.build(["a dog"])
    assert vocab.coverage(["a dog", "a cat"]) == pytest.approx(0.75)
