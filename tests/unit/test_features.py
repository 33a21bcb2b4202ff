import numpy as np
import pytest

from captioner.images import Preprocessing, preprocess
from training.datasets.base import CaptionDataset, Example
from training.encoders import build_encoder
from training.features import FeatureCache, FeatureCacheError

SPEC = Preprocessing(16, 16, "unit")


def render(example: Example) -> np.ndarray:
    seed = int(example.image_id.split("-")[1])
    return np.random.default_rng(seed).integers(0, 256, (20, 20, 3), dtype=np.uint8)


def dataset(count=20, split="train"):
    examples = [Example(f"img-{i}", (f"caption {i}",)) for i in range(count)]
    return CaptionDataset("toy", split, examples, render=render)


class Counting:
    """An encoder wrapper that counts batches and can fail on the Nth one."""

    def __init__(self, model, fail_at=None):
        self.model = model
        self.input_shape = model.input_shape
        self.calls = 0
        self.fail_at = fail_at

    def predict_on_batch(self, images):
        self.calls += 1
        if self.calls == self.fail_at:
            raise KeyboardInterrupt
        return self.model.predict_on_batch(images)


@pytest.fixture(scope="module")
def encoder():
    return build_encoder("small_cnn", "grid", input_size=16)


def cache(root, spec=SPEC):
    return FeatureCache(root, "small_cnn", "random", spec, "grid")


def test_features_equal_direct_encoder_outputs(tmp_path, encoder):
    data = dataset()
    features = cache(tmp_path).extract(data, encoder, batch_size=4, shard_size=8, progress=False)
    images = np.stack([preprocess(data.image(ex), SPEC) for ex in data.examples])
    expected = encoder.predict_on_batch(images)
    assert features.shape == (20, 1, 128)
    np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-6)
    loaded = cache(tmp_path).load(["img-7", "img-0", "img-19"])
    np.testing.assert_allclose(loaded, expected[[7, 0, 19]], rtol=1e-5, atol=1e-6)


def test_interrupted_run_resumes_with_missing_shards_only(tmp_path, encoder):
    data = dataset()  # shards of 8, 8, 4 images; batches of 4: 2 + 2 + 1 calls
    first = Counting(encoder, fail_at=3)
    with pytest.raises(KeyboardInterrupt):
        cache(tmp_path).extract(data, first, batch_size=4, shard_size=8, progress=False)
    folder = next(cache(tmp_path).directory.iterdir())
    assert sorted(p.name for p in folder.iterdir()) == ["shard-00000.json", "shard-00000.npy"]

    second = Counting(encoder)
    features = cache(tmp_path).extract(data, second, batch_size=4, shard_size=8, progress=False)
    assert second.calls == 3
    fresh = cache(tmp_path / "fresh").extract(
        data, encoder, batch_size=4, shard_size=8, progress=False
    )
    np.testing.assert_allclose(features, fresh, rtol=1e-5, atol=1e-6)
    assert sorted(p.name for p in folder.iterdir()) == ["features.npy", "ids.json"]

    third = Counting(encoder)
    cache(tmp_path).extract(data, third, batch_size=4, shard_size=8, progress=False)
    assert third.calls == 0


def test_shard_with_other_ids_is_recomputed(tmp_path, encoder):
    first = Counting(encoder, fail_at=2)  # leaves shard 0 of img-0..img-3
    with pytest.raises(KeyboardInterrupt):
        cache(tmp_path).extract(dataset(8), first, batch_size=4, shard_size=4, progress=False)
    folder = next(cache(tmp_path).directory.iterdir())
    (folder / "shard-00000.json").write_text('["img-0", "img-1", "img-2", "other"]')
    second = Counting(encoder)
    cache(tmp_path).extract(dataset(8), second, batch_size=4, shard_size=4, progress=False)
    assert second.calls == 2


def test_key_depends_on_preprocessing_weights_and_output(tmp_path):
    base = cache(tmp_path)
    assert cache(tmp_path, Preprocessing(16, 16, "tf")).directory != base.directory
    assert cache(tmp_path, Preprocessing(32, 32, "unit")).directory != base.directory
    assert FeatureCache(tmp_path, "small_cnn", "w.h5:abc", SPEC, "grid").directory != base.directory
    assert FeatureCache(tmp_path, "small_cnn", "random", SPEC, "pooled").directory != base.directory
    assert cache(tmp_path).directory == base.directory
    assert base.directory.name.startswith("small_cnn-grid-")


def test_encoder_input_must_match_preprocessing(tmp_path, encoder):
    with pytest.raises(FeatureCacheError, match="16x16"):
        cache(tmp_path, Preprocessing(32, 32, "unit")).extract(dataset(2), encoder, progress=False)


def test_load_of_unknown_ids(tmp_path, encoder):
    store = cache(tmp_path)
    store.extract(dataset(4), encoder, progress=False)
    with pytest.raises(FeatureCacheError, match="1 of 2 images"):
        store.load(["img-1", "img-99"])
