"""The model registry on a real MLflow file store in tmp_path: register, aliases, resolve."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from captioner.package import (
    DECODER_FILE,
    ENCODER_FILE,
    FORMAT_VERSION,
    MANIFEST,
    VOCAB_FILE,
    Decoder,
    Encoder,
    Manifest,
    ModelId,
    Onnx,
    Tensor,
    VocabularyInfo,
    open_package,
    sha256,
)
from captioner.text import SPECIALS, Vocabulary
from cli.main import main
from registry import (
    CHALLENGER,
    CHAMPION,
    RegistryError,
    RegistrySettings,
    get_alias,
    get_version,
    register_package,
    resolve,
    set_alias,
    versions,
)

ROOT = Path(__file__).resolve().parents[2]
SIZE, UNITS, WORDS = 8, 4, ("a", "red", "circle", "blue", "square")


def toy_package(out: Path, version: str, seed: int = 0, lineage: dict | None = None) -> Path:
    """A real, servable model package in a few milliseconds: 8x8 images, a five-word
    vocabulary and ONNX graphs of a handful of nodes with the tensor contract's names.

    The captions mean nothing; what the registry and the service check (hashes, tensor
    names and shapes, a decode) all holds.
    """
    from onnx import TensorProto, helper, numpy_helper, save

    rng = np.random.default_rng(seed)
    vocab = Vocabulary(tokens=(*SPECIALS, *WORDS), max_length=6)
    v, f = len(vocab), 3

    def const(name: str, shape: tuple[int, ...]):
        return numpy_helper.from_array(rng.normal(size=shape).astype(np.float32), name)

    def value(name: str, dtype: int, shape: list[int | None]):
        return helper.make_tensor_value_info(name, dtype, ["n" if d is None else d for d in shape])

    fl, shapes = TensorProto.FLOAT, {"images": [None, SIZE, SIZE, 3], "features": [None, f]}
    encoder = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["images"], ["features"], axes=[1, 2], keepdims=0),
            helper.make_node("MatMul", ["features", "wh"], ["init_h"]),
            helper.make_node("MatMul", ["features", "wc"], ["init_c"]),
        ],
        "encoder",
        [value("images", fl, shapes["images"])],
        [
            value(n, fl, s)
            for n, s in [
                ("features", [None, f]),
                ("init_h", [None, UNITS]),
                ("init_c", [None, UNITS]),
            ]
        ],
        [const("wh", (f, UNITS)), const("wc", (f, UNITS))],
    )
    decoder = helper.make_graph(
        [
            helper.make_node("Gather", ["embedding", "token"], ["embedded"]),
            helper.make_node("Add", ["h", "embedded"], ["mixed"]),
            helper.make_node("Tanh", ["mixed"], ["h_out"]),
            helper.make_node("Identity", ["c"], ["c_out"]),
            helper.make_node("MatMul", ["h_out", "wo"], ["from_state"]),
            helper.make_node("MatMul", ["features", "wf"], ["from_image"]),
            helper.make_node("Add", ["from_state", "from_image"], ["logits"]),
            helper.make_node("LogSoftmax", ["logits"], ["log_probs"], axis=-1),
        ],
        "decoder",
        [
            value("features", fl, [None, f]),
            value("token", TensorProto.INT32, [None]),
            value("h", fl, [None, UNITS]),
            value("c", fl, [None, UNITS]),
        ],
        [
            value("log_probs", fl, [None, v]),
            value("h_out", fl, [None, UNITS]),
            value("c_out", fl, [None, UNITS]),
        ],
        [const("embedding", (v, UNITS)), const("wo", (UNITS, v)), const("wf", (f, v))],
    )
    out.mkdir(parents=True)
    for graph, name in ((encoder, ENCODER_FILE), (decoder, DECODER_FILE)):
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        save(model, str(out / name))
    vocab.save(out / VOCAB_FILE)

    def tensors(graph) -> list[Tensor]:
        return [
            Tensor(
                name=t.name,
                shape=[d.dim_value or None for d in t.type.tensor_type.shape.dim],
                dtype="int32" if t.type.tensor_type.elem_type == TensorProto.INT32 else "float32",
            )
            for t in graph
        ]

    Manifest(
        format_version=FORMAT_VERSION,
        model=ModelId(name="toy-merge", version=version),
        architecture="merge",
        encoder=Encoder(
            name="toy",
            input_size=[SIZE, SIZE],
            preprocessing={"height": SIZE, "width": SIZE, "scaling": "unit", "layout": "NHWC"},
            inputs=tensors(encoder.input),
            outputs=tensors(encoder.output),
        ),
        decoder=Decoder(inputs=tensors(decoder.input), outputs=tensors(decoder.output)),
        vocabulary=VocabularyInfo(
            size=v, max_length=6, special_tokens={t: i for i, t in enumerate(SPECIALS)}
        ),
        onnx=Onnx(opset=17),
        dataset="shapes[train]-100s1",
        scores={"dataset": "shapes[val]", "CIDEr": 0.5},
        files={},
        **({"lineage": lineage} if lineage else {}),
    ).write(out)
    return open_package(out).root


@pytest.fixture
def settings(tmp_path) -> RegistrySettings:
    """A registry of its own: a file store and a cache under tmp_path."""
    return RegistrySettings(
        registry_uri=str(tmp_path / "mlruns"), registry_cache_dir=tmp_path / "cache"
    )


@pytest.fixture
def packages(tmp_path) -> tuple[Path, Path]:
    return toy_package(tmp_path / "p1", "1.0.0"), toy_package(tmp_path / "p2", "1.1.0", seed=1)


def test_register_records_the_package_and_its_lineage(settings, packages):
    first = register_package(packages[0], settings=settings)
    scores = {"CIDEr": {"value": 0.61, "low": 0.58, "high": 0.64}}
    datasets = {"train": "shapes[train]", "extra": "feedback[train]", "val": "shapes[val]"}
    second = register_package(
        packages[1], settings=settings, scores=scores, datasets=datasets, parent=1, alias=CHALLENGER
    )
    assert (first.version, second.version) == (1, 2)
    assert first.package_version == "1.0.0" and second.package_version == "1.1.0"
    assert second.package_sha256 == sha256(packages[1] / MANIFEST)
    # The manifest's own scores and dataset when none are given.
    assert first.scores == {"dataset": "shapes[val]", "CIDEr": 0.5}
    assert first.datasets == {"train": "shapes[train]-100s1"} and first.parent is None
    assert (second.scores, second.datasets, second.parent) == (scores, datasets, 1)
    assert second.aliases == (CHALLENGER,) and first.aliases == ()
    assert [v.version for v in versions(settings=settings)] == [1, 2]
    # What was read back is what the store holds, not the arguments echoed.
    assert get_version(2, settings=settings) == second
    from mlflow import MlflowClient

    uri = settings.store_uri()
    run = MlflowClient(tracking_uri=uri, registry_uri=uri).get_run(second.run_id)
    assert run.data.metrics["CIDEr.low"] == pytest.approx(0.58)
    assert run.info.status == "FINISHED"


def test_a_fine_tuned_package_names_its_registered_parent_by_itself(settings, packages, tmp_path):
    """The manifest's lineage (what `train --init-from` recorded) gives the defaults."""
    register_package(packages[0], settings=settings)
    lineage = {"parent": "1.0.0", "extra_dataset": "feedback[train]", "extra_weight": 2.0}
    child = register_package(
        toy_package(tmp_path / "child", "1.2.0", seed=2, lineage=lineage), settings=settings
    )
    assert child.parent == 1
    assert child.datasets == {"train": "shapes[train]-100s1", "extra": "feedback[train]"}
    orphan = {"parent": "0.9.0"}  # fine-tuned from a package that was never registered
    unknown = register_package(
        toy_package(tmp_path / "orphan", "1.3.0", seed=3, lineage=orphan), settings=settings
    )
    assert unknown.parent is None


def test_the_same_package_is_not_registered_twice(settings, packages):
    register_package(packages[0], settings=settings)
    again = register_package(packages[0], settings=settings, alias=CHAMPION)
    assert again.version == 1 and again.aliases == (CHAMPION,)
    assert len(versions(settings=settings)) == 1


def test_aliases_move(settings, packages):
    register_package(packages[0], settings=settings, alias=CHAMPION)
    register_package(packages[1], settings=settings, alias=CHALLENGER)
    assert get_alias(CHAMPION, settings=settings).version == 1
    promoted = set_alias(CHAMPION, CHALLENGER, settings=settings)  # champion <- challenger
    assert promoted.version == 2 and set(promoted.aliases) == {CHAMPION, CHALLENGER}
    assert get_alias(CHAMPION, settings=settings).version == 2
    assert get_version(1, settings=settings).aliases == ()
    set_alias(CHAMPION, 1, settings=settings)  # and back: a rollback
    assert get_alias(CHAMPION, settings=settings).package_version == "1.0.0"


def test_resolve_gives_an_open_package_and_reuses_the_cache(settings, packages, monkeypatch):
    import registry.cache

    register_package(packages[0], settings=settings)
    register_package(packages[1], settings=settings, alias=CHAMPION)
    downloads = []
    real = registry.cache.download
    monkeypatch.setattr(
        registry.cache, "download", lambda *a, **k: downloads.append(a[0].version) or real(*a, **k)
    )
    path = resolve("models:/captioner@champion", settings=settings)
    assert path.is_dir() and path.is_relative_to(settings.registry_cache_dir)
    assert open_package(path).version == "1.1.0"
    again = resolve("models:/captioner/2", settings=settings)
    assert again == path and downloads == [2]  # the cached copy, not a second download
    assert open_package(resolve("models:/captioner/1", settings=settings)).version == "1.0.0"
    assert downloads == [2, 1]
    # The alias moves: the same URI now gives the other version.
    set_alias(CHAMPION, 1, settings=settings)
    assert open_package(resolve("models:/captioner@champion", settings=settings)).version == (
        "1.0.0"
    )
    assert downloads == [2, 1]
    # A damaged cached copy is not served: it is downloaded again.
    (path / DECODER_FILE).write_bytes(b"damaged")
    assert open_package(resolve("models:/captioner/2", settings=settings)).version == "1.1.0"
    assert downloads == [2, 1, 2]
    assert not [p for p in path.parent.iterdir() if ".partial" in p.name]


def test_a_download_that_is_not_the_registered_package_is_refused(settings, packages):
    version = register_package(packages[0], settings=settings)
    stored = Path(version.source.removeprefix("file://"))
    (stored / VOCAB_FILE).write_text("{}")  # the store's copy damaged after registration
    with pytest.raises(RegistryError, match="vocab.json: sha256 mismatch"):
        resolve("models:/captioner/1", settings=settings)
    assert not (settings.registry_cache_dir / "captioner" / "1").exists()


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("models:/captioner@nosuch", "no version with the alias 'nosuch'"),
        ("models:/captioner/7", "has no version 7"),
        ("models:/other@champion", "no registered model 'other'"),
        ("runs/demo/package", "not a registry URI"),
        ("s3://bucket/package", "not a registry URI"),
        ("models:/captioner/Production", "names no version"),
        ("models:/captioner", "names no version"),
    ],
)
def test_unknown_or_malformed_uris_are_clear_errors(settings, packages, uri, message):
    register_package(packages[0], settings=settings, alias=CHAMPION)
    with pytest.raises(RegistryError, match=message):
        resolve(uri, settings=settings)


def test_registering_a_damaged_package_or_an_unknown_parent_fails(settings, packages, tmp_path):
    damaged = Path(shutil.copytree(packages[0], tmp_path / "damaged"))
    (damaged / ENCODER_FILE).write_bytes(b"x")
    with pytest.raises(RegistryError, match="encoder.onnx: sha256 mismatch"):
        register_package(damaged, settings=settings)
    with pytest.raises(RegistryError, match="no registered model 'captioner'"):
        register_package(packages[0], settings=settings, parent=4)
    assert versions(settings=settings) == []


def test_without_mlflow_the_error_names_the_extra(settings, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow now raises ImportError
    with pytest.raises(RegistryError, match=r"pip install 'captioner\[registry\]'"):
        versions(settings=settings)


def test_a_plain_folder_becomes_an_absolute_file_uri_and_passwords_stay_out():
    local = RegistrySettings(registry_uri="runs/mlruns")
    assert local.store_uri() == (Path.cwd() / "runs" / "mlruns").as_uri()
    remote = RegistrySettings(registry_uri="https://ci:s3cret@mlflow.example:5000")
    assert remote.store_uri() == "https://ci:s3cret@mlflow.example:5000"
    assert "s3cret" not in remote.display_uri() + repr(remote)
    assert remote.display_uri() == "https://mlflow.example:5000"


def test_the_cli_registers_moves_shows_lists_and_resolves(settings, packages, tmp_path):
    runner = CliRunner()
    env = {
        "CAPTIONER_REGISTRY_URI": settings.registry_uri.get_secret_value(),
        "CAPTIONER_REGISTRY_CACHE_DIR": str(settings.registry_cache_dir),
    }

    def captioner(*args: str) -> str:
        result = runner.invoke(main, ["registry", *args], env=env)
        assert result.exit_code == 0, result.output
        return result.stdout  # MLflow's download progress goes to stderr

    scores = tmp_path / "scores.json"
    scores.write_text(json.dumps({"CIDEr": 0.7}))
    first = json.loads(captioner("register", str(packages[0]), "--alias", "champion"))
    second = json.loads(
        captioner(
            "register",
            str(packages[1]),
            "--alias",
            "challenger",
            "--scores",
            str(scores),
            "--dataset",
            "train=shapes[train]",
            "--dataset",
            "val=shapes[val]",
            "--parent",
            "1",
        )
    )
    assert (first["version"], second["version"]) == (1, 2)
    assert second["scores"] == {"CIDEr": 0.7} and second["parent"] == 1
    assert second["datasets"] == {"train": "shapes[train]", "val": "shapes[val]"}
    assert json.loads(captioner("alias", "champion", "2"))["aliases"] == ["challenger", "champion"]
    assert json.loads(captioner("show", "champion"))["package_version"] == "1.1.0"
    assert json.loads(captioner("show"))["aliases"] == {"challenger": 2, "champion": 2}
    listed = captioner("list").splitlines()
    assert len(listed) == 2 and "1.1.0" in listed[1] and "CIDEr 0.700" in listed[1]
    path = Path(captioner("resolve", "models:/captioner@champion").strip())
    assert open_package(path).version == "1.1.0"

    refused = runner.invoke(main, ["registry", "show", "nosuch"], env=env)
    assert refused.exit_code == 1 and "no version with the alias 'nosuch'" in refused.output
    assert refused.exception is None or isinstance(refused.exception, SystemExit)
    bad = runner.invoke(main, ["registry", "register", str(packages[0]), "--dataset", "x"], env=env)
    assert bad.exit_code == 2 and "ROLE=SPEC" in bad.output


def test_cli_resolve_model_arg_passes_paths_through_and_resolves_uris(settings, packages):
    from cli.registry import SCHEME, resolve_model_arg
    from registry.uri import SCHEME as REGISTRY_SCHEME

    assert SCHEME == REGISTRY_SCHEME
    assert resolve_model_arg("runs/demo/package") == Path("runs/demo/package")
    register_package(packages[0], settings=settings, alias=CHAMPION)
    path = resolve_model_arg("models:/captioner@champion", settings)
    assert open_package(path).version == "1.0.0"


def test_every_registry_setting_is_documented():
    doc = (ROOT / "docs" / "export.md").read_text()
    missing = [n for n in RegistrySettings.model_fields if f"`CAPTIONER_{n.upper()}`" not in doc]
    assert not missing
