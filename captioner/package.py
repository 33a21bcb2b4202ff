"""The model package (contract 2): read, check and verify, with numpy and onnxruntime only.

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

from captioner.consensus import ConsensusError, ConsensusReranker
from captioner.images import Preprocessing
from captioner.text import Vocabulary, VocabularyError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
VARIANTS = ("fp32", "fp16", "int8")
REQUIRED = (
    "format_version",
    "model",
    "architecture",
    "encoder",
    "decoder",
    "vocabulary",
    "onnx",
    "files",
)


class PackageError(ValueError):
    """A model package that is missing, damaged or does not match its manifest."""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class Package:
    """A checked package on disk: its directory, manifest and vocabulary."""

    root: Path
    manifest: dict[str, Any]
    vocab: Vocabulary

    @property
    def name(self) -> str:
        return str(self.manifest["model"]["name"])

    @property
    def version(self) -> str:
        return str(self.manifest["model"]["version"])

    @property
    def architecture(self) -> str:
        return str(self.manifest["architecture"])

    def preprocessing(self) -> Preprocessing:
        p = self.manifest["encoder"]["preprocessing"]
        return Preprocessing(int(p["height"]), int(p["width"]), p["scaling"])

    def decoding(self) -> dict[str, Any]:
        """The decoding chosen on validation at training time: beam size, length penalty,
        re-ranking. Packages made before the choice existed decode greedily."""
        chosen = self.manifest.get("decoding") or {}
        return {
            "beam_size": int(chosen.get("beam_size", 1)),
            "length_penalty": float(chosen.get("length_penalty", 0.7)),
            "rerank": bool(chosen.get("rerank", False)),
        }

    def reranker(self) -> ConsensusReranker | None:
        """The consensus reranker the package carries, or None.

        Raises:
            PackageError: the manifest asks for re-ranking and the files are unusable.
        """
        if not self.decoding()["rerank"]:
            return None
        try:
            return ConsensusReranker.load(self.root)
        except ConsensusError as exc:
            raise PackageError(str(exc)) from exc

    def variants(self) -> list[str]:
        return ["fp32", *self.manifest.get("variants", {})]

    def graph_files(self, variant: str = "fp32") -> tuple[Path, Path]:
        """The encoder and decoder files of a precision variant."""
        if variant == "fp32":
            return self.root / "encoder.onnx", self.root / "decoder.onnx"
        found = self.manifest.get("variants", {}).get(variant)
        if found is None:
            raise PackageError(
                f"package has no {variant!r} variant (it has {', '.join(self.variants())})"
            )
        return self.root / found["encoder"], self.root / found["decoder"]


def _unpack(archive: Path) -> Path:
    target = Path(tempfile.mkdtemp(prefix="captioner-package-"))
    try:
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(target, filter="data")  # refuses absolute paths, links out, devices
    except (tarfile.TarError, OSError) as exc:
        raise PackageError(f"{archive} is not a readable .tar.gz package: {exc}") from exc
    entries = list(target.iterdir())
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else target


def read_manifest(root: Path) -> dict[str, Any]:
    path = root / MANIFEST
    if not path.is_file():
        raise PackageError(f"{root} is not a model package: {MANIFEST} is missing")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PackageError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict):
        raise PackageError(f"{path} must hold a JSON object")
    missing = [k for k in REQUIRED if k not in manifest]
    if missing:
        raise PackageError(f"{path} lacks {', '.join(missing)}")
    if manifest["format_version"] != FORMAT_VERSION:
        raise PackageError(
            f"package format version {manifest['format_version']!r} is not supported "
            f"(this build reads {FORMAT_VERSION})"
        )
    return manifest


def check_files(root: Path, manifest: dict[str, Any]) -> None:
    """Every file the manifest lists exists and has its recorded sha256."""
    problems = []
    for name, expected in sorted(manifest["files"].items()):
        path = root / name
        if Path(name).is_absolute() or ".." in Path(name).parts:
            problems.append(f"{name}: not a plain file name")
        elif not path.is_file():
            problems.append(f"{name}: missing")
        elif sha256(path) != expected:
            problems.append(f"{name}: sha256 mismatch (damaged or changed)")
    for required in ("encoder.onnx", "decoder.onnx", "vocab.json"):
        if required not in manifest["files"]:
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
        vocab = Vocabulary.load(root / "vocab.json")
    except VocabularyError as exc:
        raise PackageError(str(exc)) from exc
    if len(vocab) != manifest["vocabulary"]["size"]:
        raise PackageError(
            f"vocab.json has {len(vocab)} tokens, "
            f"the manifest says {manifest['vocabulary']['size']}"
        )
    return Package(root, manifest, vocab)
