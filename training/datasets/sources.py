"""The table of where each dataset comes from: ``sources.toml``, read and validated.

The table is data, not code, so that adding a mirror or a dataset is a line of TOML
(its header comment is the reference). ``--sources FILE`` (``CAPTIONER_DATA_SOURCES``)
replaces the built-in table with another one of the same form, e.g. a company's own
copies of the archives.
"""

from __future__ import annotations

import tomllib
from pathlib import Path, PurePosixPath

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

BUILT_IN = Path(__file__).with_name("sources.toml")


class SourceError(ValueError):
    """A sources table that cannot be read, or a dataset it does not name."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Archive(_Strict):
    """One downloadable file."""

    file: str = Field(description="the name it is saved under, and looked up under in a mirror")
    urls: tuple[str, ...] = Field(min_length=1)
    size: int | None = Field(None, gt=0)
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    md5: str | None = Field(None, pattern=r"^[0-9a-f]{32}$")

    @field_validator("file")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if not value or "/" in value or "\\" in value or value.startswith("."):
            raise ValueError(f"file must be a plain file name, got {value!r}")
        return value

    @property
    def digests(self) -> dict[str, str]:
        """Algorithm name to the expected hex digest, for those the table gives."""
        return {k: v for k, v in (("sha256", self.sha256), ("md5", self.md5)) if v}


def _relative(path: str, what: str) -> str:
    """PATH as a clean relative POSIX path (no ``..``, not absolute)."""
    pure = PurePosixPath(path)
    if pure.is_absolute() or ".." in pure.parts or "\\" in path:
        raise ValueError(f"{what} must be a relative path inside the data root, got {path!r}")
    return str(pure) if path else ""


class Part(_Strict):
    """What one archive gives a dataset: members to destinations, and the layout check."""

    archive: str
    take: dict[str, str] = Field(min_length=1)
    expect: tuple[str, ...] = Field(min_length=1)

    @field_validator("take")
    @classmethod
    def _paths(cls, value: dict[str, str]) -> dict[str, str]:
        cleaned = {}
        for member, destination in value.items():
            if not destination:
                raise ValueError("a destination cannot be the data root itself")
            cleaned[_relative(member, "an archive member")] = _relative(destination, "take")
        return cleaned

    @field_validator("expect")
    @classmethod
    def _expected(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_relative(p, "expect") for p in value)

    @model_validator(mode="after")
    def _expect_inside_take(self) -> Part:
        roots = [PurePosixPath(d) for d in self.take.values()]
        for path in self.expect:
            pure = PurePosixPath(path)
            if not any(pure == r or r in pure.parents for r in roots):
                raise ValueError(f"expect {path!r} is not under any destination of take")
        return self


class Manual(_Strict):
    """A part no program may download; its instructions name what to do, by hand."""

    what: str
    expect: tuple[str, ...] = Field(min_length=1)
    instructions: str

    def text(self, data_root: Path) -> str:
        return self.instructions.strip().format(data_root=data_root)


class Dataset(_Strict):
    description: str = ""
    parts: tuple[Part, ...] = ()
    manual: tuple[Manual, ...] = ()


class Sources(_Strict):
    """The whole table: archives by ID, datasets by name."""

    archives: dict[str, Archive] = Field(default_factory=dict)
    datasets: dict[str, Dataset] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _archives_exist(self) -> Sources:
        for name, dataset in self.datasets.items():
            named = [part.archive for part in dataset.parts]
            for archive in named:
                if archive not in self.archives:
                    raise ValueError(f"dataset {name!r} names unknown archive {archive!r}")
                if named.count(archive) > 1:  # one part takes all it needs of an archive
                    raise ValueError(f"dataset {name!r} names archive {archive!r} twice")
        return self

    def dataset(self, name: str) -> Dataset:
        try:
            return self.datasets[name]
        except KeyError:
            raise SourceError(
                f"no source for {name!r}; known: {', '.join(sorted(self.datasets))}"
            ) from None


def load_sources(path: str | Path | None = None) -> Sources:
    """The table at PATH, or the built-in one.

    Raises:
        SourceError: the file is missing, not TOML, or not of the table's form.
    """
    path = Path(path) if path else BUILT_IN
    try:
        with path.open("rb") as file:
            raw = tomllib.load(file)
    except FileNotFoundError:
        raise SourceError(f"sources table {path} does not exist") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SourceError(f"cannot read sources table {path}: {exc}") from None
    try:
        return Sources.model_validate(raw)
    except ValidationError as exc:
        raise SourceError(f"sources table {path} is malformed: {exc}") from None
