"""Unpacking refuses malicious archives (naming the member) and is idempotent."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import zipfile

import pytest
from PIL import Image, ImageDraw

from featurestore.datasets.errors import DatasetError, UnsafeArchive
from featurestore.ingest.unpack import unpack
from fixtures_datasets import jpeg, tar_bytes, zip_bytes


def _tar(path, *members: tarfile.TarInfo, data: bytes = b"") -> None:
    with tarfile.open(path, "w:gz") as bundle:
        good = tarfile.TarInfo("photos/cat.jpg")
        photo = jpeg(1)
        good.size = len(photo)
        bundle.addfile(good, io.BytesIO(photo))
        for member in members:
            bundle.addfile(member, io.BytesIO(data) if member.isfile() else None)


def _member(name: str, kind=tarfile.REGTYPE, link: str = "", size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, size
    return info


@pytest.fixture
def target(tmp_path):
    path = tmp_path / "sandbox" / "target"
    path.parent.mkdir()
    return path


def _nothing_outside(target) -> None:
    outside = {p.relative_to(target.parent) for p in target.parent.rglob("*")}
    assert all(p.parts[0] == "target" for p in outside), outside


@pytest.mark.parametrize("member, problem", [
    (_member("../escape.txt", size=5), "climbs out with '..'"),
    (_member("photos/../../escape.txt", size=5), "climbs out with '..'"),
    (_member("/tmp/absolute.txt", size=5), "absolute path"),
    (_member("photos/link", tarfile.SYMTYPE, link="../../outside"), "links to '../../outside', outside the target"),
    (_member("photos/abs", tarfile.SYMTYPE, link="/etc/passwd"), "links to '/etc/passwd'"),
    (_member("photos/hard", tarfile.LNKTYPE, link="../secret"), "links to '../secret'"),
    (_member("photos/null", tarfile.CHRTYPE), "device, FIFO or special file"),
    (_member("photos/fifo", tarfile.FIFOTYPE), "device, FIFO or special file"),
])
def test_malicious_tar_is_refused_naming_the_member(tmp_path, target, member, problem):
    archive = tmp_path / "evil.tgz"
    _tar(archive, member, data=b"owned")
    with pytest.raises(UnsafeArchive, match=problem) as error:
        unpack(archive, target)
    assert repr(member.name) in str(error.value) and "\n" not in str(error.value)
    _nothing_outside(target)
    assert not (target / "photos").exists(), "nothing of a refused archive is extracted"


def test_chain_of_links_escaping_only_as_a_whole_is_unsafe_not_damaged(tmp_path, target):
    archive = tmp_path / "chain.tgz"
    _tar(archive, _member("photos/l1", tarfile.SYMTYPE, link="."), _member("photos/l1/l2", tarfile.SYMTYPE, link=".."),
         _member("photos/l1/l2/l3", tarfile.SYMTYPE, link=".."))
    with pytest.raises(UnsafeArchive, match="chain.tgz: .*outside the destination.*; refusing to unpack") as error:
        unpack(archive, target)
    assert "download again" not in str(error.value) and "\n" not in str(error.value)
    _nothing_outside(target)
    assert not (target / "photos").exists()


def test_symlink_inside_the_target_is_allowed(tmp_path, target):
    archive = tmp_path / "ok.tgz"
    _tar(archive, _member("photos/same.jpg", tarfile.SYMTYPE, link="cat.jpg"))
    unpack(archive, target)
    assert (target / "photos" / "same.jpg").read_bytes() == jpeg(1)


def test_malicious_zip_is_refused(tmp_path, target):
    archive = tmp_path / "evil.zip"
    archive.write_bytes(zip_bytes({"ok/cat.jpg": jpeg(1), "../../evil.txt": b"owned"}))
    with pytest.raises(UnsafeArchive, match="'../../evil.txt' climbs out"):
        unpack(archive, target)
    _nothing_outside(target)


def test_zip_symlink_is_refused(tmp_path, target):
    archive = tmp_path / "link.zip"
    info = zipfile.ZipInfo("ok/link")
    info.external_attr = (0o120777 << 16)
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr(info, "/etc/passwd")
    with pytest.raises(UnsafeArchive, match="'ok/link' is a symbolic link"):
        unpack(archive, target)


def test_zip_member_name_marked_utf8_that_is_not_is_refused_naming_it(tmp_path, target):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        bundle.writestr("photos/café.jpg", jpeg(1))  # a name that is not ASCII: zipfile marks it UTF-8
    archive = tmp_path / "latin.zip"
    archive.write_bytes(buffer.getvalue().replace("café".encode(), b"caf\xe9\xe9"))
    with pytest.raises(DatasetError, match=r"latin.zip: cannot be unpacked \(member name "
                       r"b'photos/caf\\xe9\\xe9.jpg' is marked UTF-8 but is not\); delete it and download again$"):
        unpack(archive, target)
    assert not list(target.glob(".staging-*"))


def test_zip_bomb_is_refused(tmp_path, target):
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("zeros.bin", b"\0" * (80 << 20))
    with pytest.raises(UnsafeArchive, match="'zeros.bin' expands .*x, a likely decompression bomb"):
        unpack(archive, target)
    assert not any(target.rglob("zeros.bin"))


def test_zip_bomb_of_many_small_members_is_refused_by_its_total(tmp_path, target):
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        for k in range(120):
            bundle.writestr(f"zeros/{k}.bin", b"\0" * (1 << 20))
    with pytest.raises(UnsafeArchive, match=r"bomb.zip: unpacks to 125829120 bytes, over the limit of \d+; a likely "
                       "decompression bomb"):
        unpack(archive, target)
    assert not any(target.rglob("*.bin"))


def _drawing(k: int) -> bytes:
    """A white 256x256 BMP with a black outline: uncompressed, it deflates some 250x."""
    image = Image.new("RGB", (256, 256), "white")
    ImageDraw.Draw(image).ellipse((20 + k, 30, 200, 220 - k), outline="black", width=2)
    buffer = io.BytesIO()
    image.save(buffer, "BMP")
    return buffer.getvalue()


def test_zip_of_small_drawings_that_deflate_far_is_not_taken_for_a_bomb(tmp_path, target):
    members = {f"{shape}/{k}.bmp": _drawing(10 * j + k) for j, shape in enumerate(["circle", "oval"]) for k in range(6)}
    archive = tmp_path / "drawings.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        for name, data in members.items():
            bundle.writestr(name, data)
    assert max(info.file_size / info.compress_size for info in zipfile.ZipFile(archive).infolist()) > 100
    unpack(archive, target)
    assert {p.relative_to(target).as_posix(): p.read_bytes() for p in target.rglob("*.bmp")} == members


def test_total_size_is_bounded(tmp_path, target):
    archive = tmp_path / "big.tgz"
    archive.write_bytes(tar_bytes({f"d/{i}.bin": b"\0" * 4096 for i in range(8)}))
    with pytest.raises(UnsafeArchive, match="unpacks to 32768 bytes, over the limit of 10000"):
        unpack(archive, target, max_bytes=10_000)


def test_unpacking_is_idempotent(tmp_path, target):
    archive = tmp_path / "photos.tgz"
    archive.write_bytes(tar_bytes({"photos/a.jpg": jpeg(1), "photos/b.jpg": jpeg(2)}))
    unpack(archive, target)
    stamp = (target / "photos" / "a.jpg").stat().st_mtime_ns
    unpack(archive, target)
    assert (target / "photos" / "a.jpg").stat().st_mtime_ns == stamp
    assert sorted(p.name for p in (target / "photos").iterdir()) == ["a.jpg", "b.jpg"]
    assert not list(target.glob(".staging-*"))


def test_an_archive_replaced_with_the_same_size_and_mtime_is_unpacked_again(tmp_path, target):
    archive = tmp_path / "photos.tar"
    archive.write_bytes(tar_bytes({"photos/a.jpg": b"first version"}, compression=""))
    unpack(archive, target, replace=True)
    kept = archive.stat()
    replacement = tmp_path / "new.tar"
    replacement.write_bytes(tar_bytes({"photos/a.jpg": b"second versio"}, compression=""))  # same length
    os.utime(replacement, ns=(kept.st_atime_ns, kept.st_mtime_ns))  # as cp -p or rsync -a leave it
    replacement.replace(archive)
    assert archive.stat().st_size == kept.st_size and archive.stat().st_mtime_ns == kept.st_mtime_ns
    unpack(archive, target, replace=True)
    assert (target / "photos" / "a.jpg").read_bytes() == b"second versio"  # not the first version's unpack


def test_truncated_archive_is_a_clear_error(tmp_path, target):
    archive = tmp_path / "cut.tgz"
    archive.write_bytes(tar_bytes({"photos/a.jpg": jpeg(1) * 20})[:900])
    with pytest.raises((DatasetError, UnsafeArchive), match="cut.tgz"):
        unpack(archive, target)
    assert not list(target.glob(".staging-*"))


def _photos(count: int = 3) -> dict[str, bytes]:
    """Members under photos/, one with a name too long for a plain tar header (a GNU or pax extra header)."""
    members = {f"photos/{k}.jpg": jpeg(k) for k in range(count)}
    members[f"photos/{'long' * 30}.jpg"] = jpeg(count)
    return members


def _unpacked(target) -> dict[str, bytes]:
    return {p.relative_to(target).as_posix(): p.read_bytes() for p in target.rglob("*.jpg")}


@pytest.mark.parametrize("mode", ["w", "w:gz", "w:bz2", "w:xz"])
def test_tars_written_by_python_unpack_whole(tmp_path, target, mode):
    archive = tmp_path / "photos.tar"
    with tarfile.open(archive, mode) as bundle:
        for name, data in _photos().items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            bundle.addfile(info, io.BytesIO(data))
    unpack(archive, target)
    assert _unpacked(target) == _photos()


@pytest.mark.skipif(shutil.which("tar") is None, reason="needs GNU tar")
@pytest.mark.parametrize("options", [["-cf"], ["-czf"], ["-cjf"], ["-cJf"], ["--format=posix", "-cf"]])
def test_tars_written_by_gnu_tar_unpack_whole(tmp_path, target, options):
    source = tmp_path / "source"
    for name, data in _photos().items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes(data)
    archive = tmp_path / "photos.tar"
    subprocess.run(["tar", *options, str(archive), "-C", str(source), "photos"], check=True)
    unpack(archive, target)
    assert _unpacked(target) == _photos()


@pytest.mark.parametrize("where", ["at the last member's header", "inside the last member's header",
                                   "before the end-of-archive marker"])
def test_a_plain_tar_cut_between_members_is_refused_not_unpacked_in_part(tmp_path, target, where):
    data = tar_bytes({f"{c}/{k}.jpg": jpeg(10 * j + k) for j, c in enumerate(["cat", "dog", "fox"]) for k in range(2)},
                     compression="")
    with tarfile.open(fileobj=io.BytesIO(data)) as bundle:
        last = bundle.getmembers()[-1]
    end = last.offset_data + -(-last.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
    cut = {"at the last member's header": last.offset, "inside the last member's header": last.offset + 100,
           "before the end-of-archive marker": end}[where]
    archive = tmp_path / "cut.tar"
    archive.write_bytes(data[:cut])
    with pytest.raises(DatasetError, match=r"cut.tar: cannot be unpacked \(cut short after member '.*': its "
                       r"end-of-archive marker is missing\); delete it and download again$") as error:
        unpack(archive, target)
    assert "\n" not in str(error.value)
    assert not _unpacked(target) and not list(target.glob(".staging-*"))


def test_replace_leaves_exactly_the_new_archive(tmp_path, target):
    first, second = tmp_path / "first.tgz", tmp_path / "second.tgz"
    first.write_bytes(tar_bytes({"cat/a.jpg": jpeg(1), "dog/b.jpg": jpeg(2)}))
    second.write_bytes(tar_bytes({"bird/c.jpg": jpeg(3), "cat/d.jpg": jpeg(4)}))
    unpack(first, target, replace=True)
    unpack(second, target, replace=True)
    assert sorted(str(p.relative_to(target)) for p in target.rglob("*.jpg")) == ["bird/c.jpg", "cat/d.jpg"]
    assert sorted(p.name for p in target.parent.iterdir()) == ["target"], "no staging or old copy left"


def test_replace_that_fails_keeps_the_old_contents(tmp_path, target):
    good, cut = tmp_path / "good.tgz", tmp_path / "cut.tgz"
    good.write_bytes(tar_bytes({"cat/a.jpg": jpeg(1)}))
    cut.write_bytes(tar_bytes({"dog/b.jpg": jpeg(2) * 20})[:900])
    unpack(good, target, replace=True)
    with pytest.raises(DatasetError, match="cut.tgz: cannot be unpacked"):
        unpack(cut, target, replace=True)
    assert [str(p.relative_to(target)) for p in target.rglob("*.jpg")] == ["cat/a.jpg"]
    assert sorted(p.name for p in target.parent.iterdir()) == ["target"]


def test_replace_removes_a_link_and_never_writes_through_it(tmp_path, target):
    mine = tmp_path / "mine"
    (mine / "cat").mkdir(parents=True)
    (mine / "cat" / "keep.jpg").write_bytes(jpeg(5))
    before = sorted(mine.rglob("*"))
    target.symlink_to(mine, target_is_directory=True)
    archive = tmp_path / "photos.tgz"
    archive.write_bytes(tar_bytes({"cat/a.jpg": jpeg(1)}))
    unpack(archive, target, replace=True)
    assert not target.is_symlink()
    assert [str(p.relative_to(target)) for p in target.rglob("*.jpg")] == ["cat/a.jpg"]
    assert sorted(mine.rglob("*")) == before and (mine / "cat" / "keep.jpg").read_bytes() == jpeg(5)
