"""``captioner data fetch`` against a real HTTP server on loopback, as a user runs it.

The archives are a miniature Flickr8k that the test builds: the text files, and
photos of noise (incompressible, so the image archive is a few MB and a download can
be caught halfway). Every ``captioner`` subprocess runs with its proxy variables on a
closed loopback port: it can reach the test's server and nothing beyond loopback.
"""

from __future__ import annotations

import hashlib
import io
import json
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers import REPO, ArchiveServer, offline_env, wait_until
from training.datasets.download import FetchError
from training.datasets.fetch import fetch
from training.datasets.sources import SourceError, load_sources

SPLITS = {"train": 8, "dev": 2, "test": 2}
WORDS = ["a dog runs on the grass", "a black dog plays", "the dog is running", "a dog on grass"]


def photo_names() -> dict[str, list[str]]:
    names, number = {}, 0
    for split, count in SPLITS.items():
        names[split] = [f"{1000 + i + number}_mini.jpg" for i in range(count)]
        number += count
    return names


def build_archives() -> dict[str, bytes]:
    """Flickr8k_text.zip (captions and splits) and Flickr8k_Dataset.zip (noise photos)."""
    names = photo_names()
    rng = np.random.default_rng(0)
    text, images = io.BytesIO(), io.BytesIO()
    with zipfile.ZipFile(text, "w") as zf:
        tokens = [
            f"{name}#{i}\t{WORDS[(i + j) % len(WORDS)]} ."
            for j, name in enumerate(sum(names.values(), []))
            for i in range(5)
        ]
        zf.writestr("Flickr8k.token.txt", "\n".join(tokens) + "\n")
        for split, file in (("train", "train"), ("dev", "dev"), ("test", "test")):
            zf.writestr(f"Flickr_8k.{file}Images.txt", "\n".join(names[split]) + "\n")
        zf.writestr("__MACOSX/._Flickr8k.token.txt", b"resource fork")  # junk real zips carry
    with zipfile.ZipFile(images, "w", zipfile.ZIP_STORED) as zf:
        for name in sum(names.values(), []):
            pixels = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
            buffer = io.BytesIO()
            Image.fromarray(pixels).save(buffer, "JPEG", quality=95)
            zf.writestr(f"Flicker8k_Dataset/{name}", buffer.getvalue())
        zf.writestr("../escape.txt", b"a member that would write outside the data root")
    return {"Flickr8k_text.zip": text.getvalue(), "Flickr8k_Dataset.zip": images.getvalue()}


ARCHIVES = build_archives()
FIRST = photo_names()["train"][0]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_table(path: Path, url: str, digests: dict[str, str] | None = None) -> Path:
    """A sources table for the mini Flickr8k, in the built-in table's form."""
    digests = digests or {name: sha256(data) for name, data in ARCHIVES.items()}
    path.write_text(f'''
[archives.flickr8k-text]
file = "Flickr8k_text.zip"
urls = ["{url}/Flickr8k_text.zip"]
sha256 = "{digests["Flickr8k_text.zip"]}"

[archives.flickr8k-images]
file = "Flickr8k_Dataset.zip"
urls = ["{url}/Flickr8k_Dataset.zip"]
size = {len(ARCHIVES["Flickr8k_Dataset.zip"])}
sha256 = "{digests["Flickr8k_Dataset.zip"]}"

[datasets.flickr8k]
description = "mini Flickr8k"

[[datasets.flickr8k.parts]]
archive = "flickr8k-text"
take = {{ "" = "flickr8k/Flickr8k_text" }}
expect = ["flickr8k/Flickr8k_text/Flickr8k.token.txt"]

[[datasets.flickr8k.parts]]
archive = "flickr8k-images"
take = {{ "Flicker8k_Dataset" = "flickr8k/Flickr8k_Dataset" }}
expect = ["flickr8k/Flickr8k_Dataset/{FIRST}"]
''')
    return path


def captioner(*args: str, **popen) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", "from cli.main import main; main()", *args],
        cwd=REPO,
        env=offline_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **popen,
    )


def run(*args: str, timeout: float = 120) -> tuple[int, str]:
    process = captioner(*args)
    output, _ = process.communicate(timeout=timeout)
    return process.returncode, output


@pytest.fixture
def server():
    with ArchiveServer(dict(ARCHIVES)) as running:
        yield running


def fetch_args(root: Path, table: Path, *more: str) -> list[str]:
    return ["data", "fetch", "flickr8k", "--data-root", str(root), "--sources", str(table), *more]


def nothing_partial(root: Path) -> bool:
    """No dataset folder, no staging folder and no record: nothing a loader could take."""
    return (
        not (root / "flickr8k").exists()
        and not list(root.glob(".staging-*"))
        and not list((root / ".fetched").glob("*.json"))
    )


def test_a_killed_download_resumes_with_a_range_request(tmp_path, server):
    table = write_table(tmp_path / "sources.toml", server.url)
    root = tmp_path / "data"
    images = ARCHIVES["Flickr8k_Dataset.zip"]
    part = root / ".downloads" / "Flickr8k_Dataset.zip.part"
    server.rate = 1.5e6  # bytes/s: the photo archive takes about 2.5 s
    process = captioner(*fetch_args(root, table))
    wait_until(lambda: part.exists() and part.stat().st_size >= len(images) // 2, 60,
               what="half of the photo archive")  # fmt: skip
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    stopped_at = part.stat().st_size
    assert len(images) // 2 <= stopped_at < len(images)
    assert not (root / "flickr8k" / "Flickr8k_Dataset").exists()  # text part may be in place

    server.rate = None
    wait_until(lambda: any(e["path"] == "/Flickr8k_Dataset.zip" for e in server.log), 30,
               what="the server to see the killed client go")  # fmt: skip
    before = len(server.log)
    code, output = run(*fetch_args(root, table))
    assert code == 0, output
    resumed = [e for e in server.log[before:] if e["path"] == "/Flickr8k_Dataset.zip"]
    assert [e["range"] for e in resumed] == [f"bytes={stopped_at}-"]
    assert resumed[0]["status"] == 206
    assert stopped_at + resumed[0]["sent"] == len(images)  # the file once, over both runs
    assert not part.exists() and not (root / ".downloads" / "Flickr8k_Dataset.zip").exists()
    assert (root / "flickr8k" / "Flickr8k_Dataset" / FIRST).read_bytes() == zipfile.ZipFile(
        io.BytesIO(images)
    ).read(f"Flicker8k_Dataset/{FIRST}")
    assert not (root / "flickr8k" / "Flickr8k_text" / "__MACOSX").exists()
    assert not (tmp_path / "escape.txt").exists() and not (root / "escape.txt").exists()

    code, output = run("data", "--dataset", "flickr8k[train]", "--data-root", str(root))
    assert code == 0, output
    assert "train: 8 of 8 images present, 40 captions" in output
    assert "test: 2 of 2 images present" in output


def test_a_second_run_verifies_and_downloads_nothing(tmp_path, server):
    table = write_table(tmp_path / "sources.toml", server.url)
    root = tmp_path / "data"
    code, output = run(*fetch_args(root, table))
    assert code == 0, output
    assert len(server.log) == 2
    record = json.loads((root / ".fetched" / "flickr8k--flickr8k-images.json").read_text())
    assert record["sha256"] == sha256(ARCHIVES["Flickr8k_Dataset.zip"])

    code, output = run(*fetch_args(root, table))
    assert code == 0, output
    assert len(server.log) == 2  # not one request more
    assert "flickr8k-images: present" in output and "downloaded 0 bytes" in output


def test_a_wrong_sha256_is_refused_and_nothing_is_unpacked(tmp_path, server):
    wrong = {name: sha256(b"another file") for name in ARCHIVES}
    table = write_table(tmp_path / "sources.toml", server.url, wrong)
    root = tmp_path / "data"
    code, output = run(*fetch_args(root, table))
    assert code == 1
    assert "Flickr8k_text.zip is not the file expected: sha256 is" in output
    assert f"expected {wrong['Flickr8k_text.zip']}" in output and "deleted" in output
    assert nothing_partial(root)
    downloads = root / ".downloads"
    assert not [*downloads.glob("*.zip"), *downloads.glob("*.part")]  # the bad file is gone too


@pytest.mark.parametrize("fault", ["drop", "500"])
def test_a_failing_server_gives_a_clear_error_and_no_partial_dataset(tmp_path, server, fault):
    table = write_table(tmp_path / "sources.toml", server.url)
    root = tmp_path / "data"
    if fault == "drop":
        server.drop_after = 0  # every answer closes after its headers: no progress at all
    else:
        server.status = 500
    code, output = run(*fetch_args(root, table, "--retries", "1"))
    assert code == 1
    assert "cannot download Flickr8k_text.zip" in output and "after 2 attempts" in output
    assert ("connection failed" if fault == "drop" else "answered 500") in output
    assert "Traceback" not in output
    assert nothing_partial(root)
    server.drop_after = server.status = None  # the server is well again
    code, output = run(*fetch_args(root, table))
    assert code == 0, output


def test_one_archive_failing_puts_no_part_of_the_dataset_in_place(tmp_path, server):
    table = write_table(tmp_path / "sources.toml", server.url)
    root = tmp_path / "data"
    server.files["Flickr8k_Dataset.zip"] = b"not a zip at all"
    with pytest.raises(FetchError, match="Flickr8k_Dataset.zip is not the file expected"):
        fetch("flickr8k", root, load_sources(table), progress=False)
    assert nothing_partial(root)  # the text archive came whole, but not alone into place


def test_the_images_archive_dropping_midway_is_resumed_by_the_retry(tmp_path, server):
    table = write_table(tmp_path / "sources.toml", server.url)
    root = tmp_path / "data"
    server.drop_after = 1_000_000  # every answer stops after 1 MB; retries resume

    result = fetch("flickr8k", root, load_sources(table), retries=1, progress=False)
    images = [e for e in server.log if e["path"] == "/Flickr8k_Dataset.zip"]
    assert len(images) > 1 and images[1]["range"] == "bytes=1000000-"
    assert sum(e["sent"] for e in images) == len(ARCHIVES["Flickr8k_Dataset.zip"])
    assert [p.status for p in result.parts] == ["fetched", "fetched"]


def test_a_server_that_ignores_range_is_read_again_from_the_start(tmp_path, server):
    table = write_table(tmp_path / "sources.toml", server.url)
    root = tmp_path / "data"
    images = ARCHIVES["Flickr8k_Dataset.zip"]
    part = root / ".downloads" / "Flickr8k_Dataset.zip.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"\0" * 1000)  # a stale start that must not be kept
    server.ranges = False
    fetch("flickr8k", root, load_sources(table), progress=False)
    assert (root / "flickr8k" / "Flickr8k_Dataset" / FIRST).is_file()
    answer = next(e for e in server.log if e["path"] == "/Flickr8k_Dataset.zip")
    assert answer["status"] == 200 and answer["sent"] == len(images)


def test_a_local_mirror_folder_is_used_in_place(tmp_path):
    mirror = tmp_path / "copies"
    mirror.mkdir()
    for name, data in ARCHIVES.items():
        (mirror / name).write_bytes(data)
    table = write_table(tmp_path / "sources.toml", "http://127.0.0.1:9")  # never contacted
    root = tmp_path / "data"
    result = fetch("flickr8k", root, load_sources(table), mirror=str(mirror), progress=False)
    assert [p.downloaded for p in result.parts] == [0, 0]
    assert (root / "flickr8k" / "Flickr8k_text" / "Flickr8k.token.txt").is_file()
    assert all((mirror / name).is_file() for name in ARCHIVES)  # a mirror is not consumed


def test_a_mirror_url_replaces_the_tables_urls(tmp_path, server):
    table = write_table(tmp_path / "sources.toml", "http://127.0.0.1:9")
    fetch("flickr8k", tmp_path / "data", load_sources(table), mirror=server.url + "/",
          progress=False)  # fmt: skip
    assert {e["path"] for e in server.log} == {"/Flickr8k_text.zip", "/Flickr8k_Dataset.zip"}


def test_an_archive_of_another_layout_is_not_put_in_place(tmp_path, server):
    table = write_table(tmp_path / "sources.toml", server.url)
    text = table.read_text().replace(f"flickr8k/Flickr8k_Dataset/{FIRST}", "flickr8k/x/y.jpg")
    table.write_text(text.replace('"Flicker8k_Dataset" = "flickr8k/Flickr8k_Dataset"',
                                  '"Flicker8k_Dataset" = "flickr8k/x"'))  # fmt: skip
    root = tmp_path / "data"
    with pytest.raises(FetchError, match="y.jpg is not in it where the table expects"):
        fetch("flickr8k", root, load_sources(table), progress=False)
    assert not (root / "flickr8k" / "x").exists() and not list(root.glob(".staging-*"))


def test_a_copy_laid_out_by_hand_is_used_and_a_broken_one_refused(tmp_path, server):
    table = write_table(tmp_path / "sources.toml", server.url)
    root = tmp_path / "data"
    zipfile.ZipFile(io.BytesIO(ARCHIVES["Flickr8k_text.zip"])).extractall(
        root / "flickr8k" / "Flickr8k_text"
    )
    (root / "flickr8k" / "Flickr8k_Dataset").mkdir()  # started by hand, left empty
    with pytest.raises(FetchError, match="exists but lacks"):
        fetch("flickr8k", root, load_sources(table), progress=False)
    assert server.log == []  # refused before downloading anything
    (root / "flickr8k" / "Flickr8k_Dataset").rmdir()
    result = fetch("flickr8k", root, load_sources(table), progress=False)
    assert [p.status for p in result.parts] == ["in place", "fetched"]


def test_an_archive_without_a_published_digest_is_pinned(tmp_path, server):
    table = write_table(tmp_path / "sources.toml", server.url)
    unpinned = "\n".join(
        line for line in table.read_text().splitlines() if not line.startswith("sha256")
    )
    table.write_text(unpinned)
    result = fetch("flickr8k", tmp_path / "data", load_sources(table), progress=False)
    assert all(p.pinned for p in result.parts)
    assert result.parts[1].sha256 == sha256(ARCHIVES["Flickr8k_Dataset.zip"])


def test_the_built_in_table_names_every_dataset_with_a_checked_layout():
    table = load_sources()
    assert set(table.datasets) == {"flickr8k", "flickr8k-karpathy", "coco", "flickr30k"}
    assert table.datasets["flickr30k"].manual  # the photos need a licence form
    assert all(a.urls[0].startswith(("https://", "http://")) for a in table.archives.values())
    with pytest.raises(SourceError, match="no source for 'imagenet'"):
        table.dataset("imagenet")


def test_a_table_that_escapes_the_data_root_is_refused(tmp_path):
    table = write_table(tmp_path / "sources.toml", "http://127.0.0.1:9")
    table.write_text(table.read_text().replace('"" = "flickr8k/Flickr8k_text"', '"" = "../up"'))
    with pytest.raises(SourceError, match="relative path inside the data root"):
        load_sources(table)


def test_flickr30k_fetches_the_split_file_and_prints_what_to_do_by_hand(tmp_path):
    mirror, root = tmp_path / "copies", tmp_path / "data"
    mirror.mkdir()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("dataset_flickr30k.json", json.dumps({"images": []}))
    (mirror / "caption_datasets.zip").write_bytes(buffer.getvalue())
    built_in = load_sources().datasets["flickr30k"].manual[0]
    table = tmp_path / "sources.toml"
    table.write_text(f'''
[archives.karpathy-splits]
file = "caption_datasets.zip"
urls = ["http://127.0.0.1:9/caption_datasets.zip"]
sha256 = "{sha256(buffer.getvalue())}"

[[datasets.flickr30k.parts]]
archive = "karpathy-splits"
take = {{ "dataset_flickr30k.json" = "flickr30k/dataset_flickr30k.json" }}
expect = ["flickr30k/dataset_flickr30k.json"]

[[datasets.flickr30k.manual]]
what = "{built_in.what}"
expect = {json.dumps(list(built_in.expect))}
instructions = """{built_in.instructions}"""
''')
    args = ["data", "fetch", "flickr30k", "--data-root", str(root), "--sources", str(table)]
    code, output = run(*args, "--mirror", str(mirror))
    assert code == 1 and "flickr30k is not complete: 1 step(s) by hand" in output
    assert (root / "flickr30k" / "dataset_flickr30k.json").is_file()
    assert f"tar -xzf flickr30k-images.tar.gz -C {root}/flickr30k/" in output
    assert "DenotationGraph" in output

    (root / "flickr30k" / "flickr30k-images").mkdir()
    (root / "flickr30k" / "flickr30k-images" / "1000092795.jpg").write_bytes(b"done by hand")
    code, output = run(*args, "--mirror", str(mirror))
    assert code == 0, output
    assert "karpathy-splits: present" in output


def test_too_little_disk_space_is_refused_before_downloading(tmp_path, server, monkeypatch):
    import shutil
    from collections import namedtuple

    table = write_table(tmp_path / "sources.toml", server.url)
    usage = namedtuple("usage", "total used free")
    # A full disk cannot be made here safely: the free-space figure is all that is replaced.
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(FetchError, match=r"need about 3\.3 MiB free .* and 1000 bytes are free"):
        fetch("flickr8k", tmp_path / "data", load_sources(table), progress=False)
    assert server.log == []
