"""The run directory: its file names in one place, the model saved with its vocabulary."""

import pytest

from captioner.text import Vocabulary, VocabularyError
from training.models.captioner import CaptionModel, ModelConfig, ModelFileError
from training.run_dir import RunDir, TrainedModel


@pytest.fixture(scope="module")
def trained() -> TrainedModel:
    vocab = Vocabulary.build(["a red circle", "a blue square above a circle"])
    config = ModelConfig(
        "merge", vocab_size=len(vocab), input_size=32, decoder={"embed_dim": 8, "units": 8}
    )
    model = CaptionModel(config)
    model.build_all()
    return TrainedModel(model, vocab)


def test_the_layout_is_named_once(tmp_path):
    run = RunDir(tmp_path / "run")
    assert run.model_dir == tmp_path / "run" / RunDir.MODEL_DIR
    assert run.state_path.parent == run.path and run.scores_path.parent == run.eval_dir
    assert run.features_root == tmp_path / RunDir.FEATURES_DIR  # shared by runs side by side
    assert run.member(1).path == run.members_dir / "m1"
    assert RunDir.of_model(run.model_dir).path == run.path


def test_model_and_vocabulary_save_and_load_together(tmp_path, trained):
    directory = trained.save(RunDir(tmp_path).model_dir)
    names = {RunDir.MODEL_CONFIG_FILE, RunDir.WEIGHTS_FILE, RunDir.VOCAB_FILE}
    assert names <= {p.name for p in directory.iterdir()}
    loaded = TrainedModel.load(directory)
    assert loaded.vocab == trained.vocab and loaded.model.config == trained.model.config


def test_load_refuses_a_vocabulary_of_another_model(tmp_path, trained):
    directory = trained.save(RunDir(tmp_path).model_dir)
    Vocabulary.build(["one two three four"]).save(directory / RunDir.VOCAB_FILE)
    with pytest.raises(ModelFileError, match="tokens"):
        TrainedModel.load(directory)
    (directory / RunDir.VOCAB_FILE).unlink()
    with pytest.raises(VocabularyError):
        TrainedModel.load(directory)


def test_settings_changes_are_named(tmp_path):
    run = RunDir(tmp_path / "run")
    assert run.saved_settings() is None and run.changed_settings({"units": 16}) == []
    run.write_settings({"units": 16, "seed": 0})
    assert run.changed_settings({"units": 16, "seed": 0}) == []
    assert run.changed_settings({"units": 24, "seed": 0}) == ["units"]


def test_the_run_vocabulary_and_model(tmp_path, trained):
    run = RunDir(tmp_path / "run")
    assert run.load_vocabulary() is None and not run.has_model()
    run.path.mkdir()
    run.save_vocabulary(trained.vocab)
    assert run.load_vocabulary() == trained.vocab
    run.save_model(trained.model, trained.vocab)
    assert run.has_model() and run.load_model().vocab == trained.vocab
