"""The model package: its typed manifest, read, checked and verified with numpy and onnxruntime
only (docs/architecture.md, the model package).

A package is a directory (or a ``.tar.gz`` of one) holding ``manifest.json``,
``encoder.onnx``, ``decoder.onnx``, ``vocab.json`` and optional precision
variants. Inference and ``captioner package verify`` both go through
:func:`open_package`, which refuses a package whose format version, file
hashes or tensor names do not match, saying which.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from captioner.consensus import ConsensusError, ConsensusReranker
from captioner.decoding import DEFAULT_LENGTH_PENALTY
from captioner.images import Preprocessing
from captioner.text import Vocabulary, VocabularyError

FORMAT_VERSION = 1
VARIANTS = ("fp32", "fp16", "int8")

# The package's files: export writes them under these names, everyone reads them so.
MANIFEST = "manifest.json"
ENCODER_FILE = "encoder.onnx"
DECODER_FILE = "decoder.onnx"
VOCAB_FILE = "vocab.json"

# The graphs' tensor names: export names them so, and the runtime feeds and fetches them.
ENCODER_INPUT = "images"
ENCODER_OUTPUTS = ("features", "init_h", "init_c")
DECODER_INPUTS = ("features", "token", "h", "c")
DECODER_OUTPUTS = ("log_probs", "h_out", "c_out")
ATTENTION_OUTPUT = "attention"
FEATURES = ENCODER_OUTPUTS[0]


class PackageError(ValueError):
    """A model package that is missing, damaged or does not match its manifest."""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class _Section(BaseModel):
    # Sections are strict about what they need and keep what a newer writer added.
    model_config = ConfigDict(extra="allow")


class Tensor(_Section):
    """A graph input or output: its name, shape (None for a dynamic axis) and dtype."""

    name: str
    shape: list[int | None]
    dtype: str


class ModelId(_Section):
    name: str
    version: str


class Graph(_Section):
    """A graph's tensor contract: what the runtime checks the ONNX session against."""

    inputs: list[Tensor]
    outputs: list[Tensor]

    def shape(self, name: str) -> list[int | None]:
        """The recorded shape of the output or input called NAME."""
        for tensor in [*self.outputs, *self.inputs]:
            if tensor.name == name:
                return tensor.shape
        raise PackageError(f"the manifest has no tensor {name!r}")


class Encoder(Graph):
    name: str
    input_size: list[int]
    preprocessing: dict[str, Any]


class Decoder(Graph):
    config: dict[str, Any] = Field(default_factory=dict)


class VocabularyInfo(_Section):
    size: int
    max_length: int
    special_tokens: dict[str, int] = Field(default_factory=dict)


class Onnx(_Section):
    opset: int
    producer: str = "tf2onnx"


class Decoding(_Section):
    """The decoding chosen on validation at training time, the service's default.

    A package made before the choice existed (or from a model without one) decodes
    greedily.
    """

    beam_size: int = Field(default=1, ge=1)
    length_penalty: float = Field(default=DEFAULT_LENGTH_PENALTY, ge=0.0)
    rerank: bool = False
    val_cider: float | None = None


class VariantFiles(_Section):
    """A precision variant's graph files (same tensor contract as fp32)."""

    encoder: str
    decoder: str
    description: str = ""


class Lineage(_Section):
    """Where the model came from: what ``train --init-from`` and the registry read.

    Attributes:
        model_dir: the trained (Keras) model it was exported from, as an absolute path on
            the machine that exported it; a package carries no Keras weights, so
            fine-tuning from a package goes back to this directory.
        parent: the version of the model it was fine-tuned from, if it was.
        extra_dataset: the dataset mixed into its training (e.g. ``feedback[train]``).
        extra_weight: that dataset's weight.
    """

    model_dir: str | None = None
    parent: str | None = None
    extra_dataset: str | None = None
    extra_weight: float | None = None


class Manifest(_Section):
    """``manifest.json``, the package's schema (docs/architecture.md, the model package).

    Export builds it; :func:`open_package` reads and validates it.
    """

    format_version: int
    model: ModelId
    architecture: str
    encoder: Encoder
    decoder: Decoder
    vocabulary: VocabularyInfo
    onnx: Onnx
    decoding: Decoding = Decoding()
    dataset: str | None = None
    lineage: Lineage = Lineage()
    scores: dict[str, Any] = Field(default_factory=dict)
    created: str | None = None
    parity: dict[str, Any] = Field(default_factory=dict)
    variants: dict[str, VariantFiles] = Field(default_factory=dict)
    files: dict[str, str]

    def to_json(self) -> str:
        return self.model_dump_json(indent=2, exclude_none=False) + "\n"

    def write(self, root: Path) -> None:
        """Record the sha256 of every other file under ROOT, then write the manifest."""
        self.files = {
            p.name: sha256(p) for p in sorted(root.iterdir()) if p.is_file() and p.name != MANIFEST
        }
        (root / MANIFEST).write_text(self.to_json())


@dataclass
class Package:
    """A checked package on disk: its directory, manifest and vocabulary."""

    root: Path
    manifest: Manifest
    vocab: Vocabulary

    @property
    def name(self) -> str:
        return self.manifest.model.name

    @property
    def version(self) -> str:
        return self.manifest.model.version

    @property
    def architecture(self) -> str:
        return self.manifest.architecture

    def preprocessing(self) -> Preprocessing:
        p = self.manifest.encoder.preprocessing
        return Preprocessing(int(p["height"]), int(p["width"]), p["scaling"])

    def decoding(self) -> Decoding:
        """The decoding chosen on validation: beam size, length penalty, re-ranking."""
        return self.manifest.decoding

    def reranker(self) -> ConsensusReranker | None:
        """The consensus reranker the package carries, or None.

        Raises:
            PackageError: the manifest asks for re-ranking and the files are unusable.
        """
        if not self.decoding().rerank:
            return None
        try:
            return ConsensusReranker.load(self.root)
        except ConsensusError as exc:
            raise PackageError(str(exc)) from exc

    def variants(self) -> list[str]:
        return ["fp32", *self.manifest.variants]

    def graph_files(self, variant: str = "fp32") -> tuple[Path, Path]:
        """The encoder and decoder files of a precision variant."""
        if variant == "fp32":
            return self.root / ENCODER_FILE, self.root / DECODER_FILE
        found = self.manifest.variants.get(variant)
        if found is None:
            raise PackageError(
                f"package has no {variant!r} variant (it has {', '.join(self.variants())})"
            )
        return self.root / found.encoder, self.root / found.decoder


def _unpack(archive: Path) -> Path:
    target = Path(tempfile.mkdtemp(prefix="captioner-package-"))
    try:
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(target, filter="data")  # refuses absolute paths, links out, devices
    except (tarfile.TarError, OSError) as exc:
        raise PackageError(f"{archive} is not a readable .tar.gz package: {exc}") from exc
    entries = list(target.iterdir())
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else target


def read_manifest(root: Path) -> Manifest:
    """The manifest under ROOT, validated.

    Raises:
        PackageError: missing, not JSON, of another format version, or lacking a field.
    """
    path = root / MANIFEST
    if not path.is_file():
        raise PackageError(f"{root} is not a model package: {MANIFEST} is missing")
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PackageError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise PackageError(f"{path} must hold a JSON object")
    missing = [k for k, f in Manifest.model_fields.items() if f.is_required() and k not in raw]
    if missing:
        raise PackageError(f"{path} lacks {', '.join(missing)}")
    if raw["format_version"] != FORMAT_VERSION:
        raise PackageError(
            f"package format version {raw['format_version']!r} is not supported "
            f"(this build reads {FORMAT_VERSION})"
        )
    try:
        return Manifest.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False)
        )
        raise PackageError(f"{path} is malformed: {problems}") from exc


def check_files(root: Path, manifest: Manifest) -> None:
    """Every file the manifest lists exists and has its recorded sha256."""
    problems = []
    for name, expected in sorted(manifest.files.items()):
        path = root / name
        if Path(name).is_absolute() or ".." in Path(name).parts:
            problems.append(f"{name}: not a plain file name")
        elif not path.is_file():
            problems.append(f"{name}: missing")
        elif sha256(path) != expected:
            problems.append(f"{name}: sha256 mismatch (damaged or changed)")
    for required in (ENCODER_FILE, DECODER_FILE, VOCAB_FILE):
        if required not in manifest.files:
            problems.append(f"{required}: not listed in the manifest")
    if problems:
        raise PackageError(f"package {root} refused: " + "; ".join(problems))


def open_package(path: str | Path) -> Package:
    """Open a package directory or ``.tar.gz`` and check its manifest and hashes."""
    path = Path(path)
    if not path.exists():
        raise PackageError(f"no model package at {path}")
    root = _unpack(path) if path.is_file() else path
    manifest = read_manifest(root)
    check_files(root, manifest)
    try:
        vocab = Vocabulary.load(root / VOCAB_FILE)
    except VocabularyError as exc:
        raise PackageError(str(exc)) from exc
    if len(vocab) != manifest.vocabulary.size:
        raise PackageError(
            f"{VOCAB_FILE} has {len(vocab)} tokens, the manifest says {manifest.vocabulary.size}"
        )
    return Package(root, manifest, vocab)
