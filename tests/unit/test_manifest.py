"""The typed manifest: what export writes is what the reader validates, field by field."""

import json

import pytest

from captioner.decoding import DEFAULT_LENGTH_PENALTY
from captioner.package import (
    DECODER_FILE,
    DECODER_INPUTS,
    DECODER_OUTPUTS,
    ENCODER_FILE,
    ENCODER_INPUT,
    ENCODER_OUTPUTS,
    FORMAT_VERSION,
    MANIFEST,
    VOCAB_FILE,
    Decoder,
    Encoder,
    Manifest,
    ModelId,
    Onnx,
    Package,
    PackageError,
    Tensor,
    VocabularyInfo,
    check_files,
    read_manifest,
)


def _manifest() -> Manifest:
    def tensors(names, shape):
        return [Tensor(name=n, shape=shape, dtype="float32") for n in names]

    return Manifest(
        format_version=FORMAT_VERSION,
        model=ModelId(name="m", version="1"),
        architecture="merge",
        encoder=Encoder(
            name="small_cnn",
            input_size=[64, 64],
            preprocessing={"height": 64, "width": 64, "scaling": "unit"},
            inputs=tensors([ENCODER_INPUT], [None, 64, 64, 3]),
            outputs=tensors(ENCODER_OUTPUTS, [None, 32]),
        ),
        decoder=Decoder(
            inputs=tensors(DECODER_INPUTS, [None, 32]),
            outputs=tensors(DECODER_OUTPUTS, [None, 32]),
        ),
        vocabulary=VocabularyInfo(size=10, max_length=5),
        onnx=Onnx(opset=17),
        files={},
    )


@pytest.fixture
def package_dir(tmp_path):
    for name in (ENCODER_FILE, DECODER_FILE, VOCAB_FILE):
        (tmp_path / name).write_bytes(name.encode())
    _manifest().write(tmp_path)
    return tmp_path


def _edit(root, change):
    raw = json.loads((root / MANIFEST).read_text())
    change(raw)
    (root / MANIFEST).write_text(json.dumps(raw))


def test_what_is_written_reads_back_equal_with_every_file_hashed(package_dir):
    manifest = read_manifest(package_dir)
    assert manifest.model_dump(exclude={"files"}) == _manifest().model_dump(exclude={"files"})
    assert set(manifest.files) == {ENCODER_FILE, DECODER_FILE, VOCAB_FILE}
    check_files(package_dir, manifest)
    assert manifest.encoder.shape("features") == [None, 32]


def test_a_package_without_a_decoding_choice_is_greedy(package_dir):
    _edit(package_dir, lambda raw: raw.pop("decoding"))
    decoding = Package(package_dir, read_manifest(package_dir), None).decoding()  # type: ignore[arg-type]
    assert (decoding.beam_size, decoding.length_penalty, decoding.rerank) == (
        1,
        DEFAULT_LENGTH_PENALTY,
        False,
    )


def test_a_missing_section_is_named(package_dir):
    _edit(package_dir, lambda raw: raw.pop("vocabulary"))
    with pytest.raises(PackageError, match="lacks vocabulary"):
        read_manifest(package_dir)


def test_a_field_of_the_wrong_type_is_refused_with_its_path(package_dir):
    _edit(package_dir, lambda raw: raw["vocabulary"].update(size="ten"))
    with pytest.raises(PackageError, match=r"malformed.*vocabulary\.size"):
        read_manifest(package_dir)


def test_another_format_version_is_refused(package_dir):
    _edit(package_dir, lambda raw: raw.update(format_version=FORMAT_VERSION + 1))
    with pytest.raises(PackageError, match="format version"):
        read_manifest(package_dir)


def test_fields_a_newer_writer_added_are_kept(package_dir):
    _edit(package_dir, lambda raw: raw["encoder"].update(layout="NHWC"))
    assert read_manifest(package_dir).encoder.model_dump()["layout"] == "NHWC"


def test_an_unknown_variant_names_the_ones_there(package_dir):
    package = Package(package_dir, read_manifest(package_dir), None)  # type: ignore[arg-type]
    assert package.graph_files() == (package_dir / ENCODER_FILE, package_dir / DECODER_FILE)
    with pytest.raises(PackageError, match="has no 'int8' variant.*fp32"):
        package.graph_files("int8")
