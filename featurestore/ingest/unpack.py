"""Safe, idempotent unpacking of tar and zip archives.

Every member is checked before anything is written: absolute paths, ``..`` components, links
that resolve outside the target and device or FIFO entries are refused, naming the member; the
total declared size is bounded (decompression bombs). Extraction goes to a staging directory
and is moved into place only when complete, then a marker makes reruns free.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
import tarfile
import zipfile
from pathlib import Path

from featurestore.datasets.errors import DatasetError, UnsafeArchive

MAX_BYTES = 64 << 30
MAX_RATIO = 100
# Smaller zip members are not held to MAX_RATIO: drawings, masks and scans saved uncompressed
# (BMP, TIFF, PPM) deflate far more than 100x, and the bound on the total still holds them.
RATIO_FLOOR = 64 << 20
_MARKERS = ".unpacked"
REDOWNLOAD = "delete it and download again"


def _member_path(archive: Path, name: str) -> str:
    """Normalised relative path of a member, or ``UnsafeArchive`` if it could escape the target."""
    cleaned = name.replace("\\", "/")
    if cleaned.startswith("/") or (len(cleaned) > 1 and cleaned[1] == ":"):
        raise UnsafeArchive(f"{archive}: member {name!r} has an absolute path; refusing to unpack this archive")
    parts = [p for p in cleaned.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchive(f"{archive}: member {name!r} climbs out with '..'; refusing to unpack this archive")
    return "/".join(parts)


def _check_link(archive: Path, name: str, link: str, *, hard: bool) -> None:
    """Refuse a link whose target would resolve outside the extraction directory."""
    base = "" if hard else posixpath.dirname(name)
    resolved = posixpath.normpath(posixpath.join(base, link.replace("\\", "/")))
    if link.startswith("/") or resolved == ".." or resolved.startswith("../"):
        raise UnsafeArchive(
            f"{archive}: member {name!r} links to {link!r}, outside the target; refusing to unpack this archive"
        )


def _check_tar(archive: Path, members: list[tarfile.TarInfo]) -> int:
    total = 0
    for member in members:
        name = _member_path(archive, member.name)
        if member.issym() or member.islnk():
            _check_link(archive, name, member.linkname, hard=member.islnk())
        elif not (member.isfile() or member.isdir()):
            raise UnsafeArchive(
                f"{archive}: member {member.name!r} is a device, FIFO or special file; refusing to unpack this archive"
            )
        total += member.size
    return total


def _check_tar_end(bundle: tarfile.TarFile, members: list[tarfile.TarInfo]) -> None:
    """Refuse a tar that stops before its end-of-archive marker (a zero block after the last member).

    ``tarfile`` lists members only up to a missing or cut header and says nothing, so an archive
    cut there would lose every later member silently. Checked after extraction: the stream then
    only moves forward, where seeking back in a compressed tar would decompress it all again.
    """
    bundle.fileobj.seek(bundle.offset)
    if bundle.fileobj.read(tarfile.BLOCKSIZE) != tarfile.NUL * tarfile.BLOCKSIZE:
        last = f"after member {members[-1].name!r}" if members else "at its start"
        raise tarfile.ReadError(f"cut short {last}: its end-of-archive marker is missing")


def _check_zip(archive: Path, members: list[zipfile.ZipInfo], max_ratio: int) -> int:
    total = 0
    for member in members:
        name = _member_path(archive, member.filename)
        # Unix type bits sit in the top half of external_attr; archivers often leave them zero.
        kind = stat.S_IFMT(member.external_attr >> 16)
        if kind == stat.S_IFLNK:
            raise UnsafeArchive(f"{archive}: member {member.filename!r} is a symbolic link; refusing to unpack this archive")
        if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
            raise UnsafeArchive(
                f"{archive}: member {name!r} is a device, FIFO or special file; refusing to unpack this archive"
            )
        large = member.file_size > RATIO_FLOOR
        if large and member.compress_size and member.file_size / member.compress_size > max_ratio:
            raise UnsafeArchive(
                f"{archive}: member {name!r} expands {member.file_size // member.compress_size}x, a likely "
                "decompression bomb; refusing to unpack this archive"
            )
        total += member.file_size
    return total


def _check_total(archive: Path, total: int, max_bytes: int, max_ratio: int) -> None:
    limit = min(max_bytes, max(archive.stat().st_size, 1 << 20) * max_ratio)
    if total > limit:
        raise UnsafeArchive(
            f"{archive}: unpacks to {total} bytes, over the limit of {limit}; a likely decompression bomb — "
            "refusing to unpack (raise max_bytes if the archive is trusted)"
        )


def _marker(target: Path, archive: Path) -> Path:
    return target / _MARKERS / archive.name


def _fingerprint(archive: Path) -> str:
    # ctime and inode too: an archive replaced by one of the same size with its mtime kept (cp -p,
    # rsync -a) would otherwise pass for the one unpacked, as in the verification cache.
    info = archive.stat()
    return f"{info.st_size} {info.st_mtime_ns} {info.st_ctime_ns} {info.st_ino}\n"


def is_unpacked(archive: Path, target: Path) -> bool:
    """Whether ``archive`` (in its current state) was already unpacked into ``target``.

    A link at ``target`` points at a folder of the user's, never at an unpacked archive.
    """
    marker = _marker(target, archive)
    return not target.is_symlink() and marker.is_file() and marker.read_text() == _fingerprint(archive)


def unpacked_here(target: Path) -> bool:
    """Whether ``target`` is a folder an archive was unpacked into by ``unpack`` (it holds the markers),
    as opposed to one a user made: only the former may be replaced."""
    return not target.is_symlink() and (target / _MARKERS).is_dir()


def _extract(archive: Path, staging: Path, max_bytes: int, max_ratio: int) -> None:
    """Check every member of ``archive``, then extract it into ``staging``."""
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive) as bundle:
            members = bundle.getmembers()
            _check_total(archive, _check_tar(archive, members), max_bytes, max_ratio)
            # The "data" filter repeats the checks above inside tarfile itself: belt and braces.
            bundle.extractall(staging, members=members, filter="data")
            _check_tar_end(bundle, members)
    elif zipfile.is_zipfile(archive):
        with _open_zip(archive) as bundle:
            members = bundle.infolist()
            _check_total(archive, _check_zip(archive, members, max_ratio), max_bytes, max_ratio)
            bundle.extractall(staging)
    else:
        # Damage rather than danger (a login page saved in the archive's place, say): the caller's
        # fix applies, as for any archive that cannot be unpacked.
        raise tarfile.ReadError("not a tar or zip archive")


def _open_zip(archive: Path) -> zipfile.ZipFile:
    """Open ``archive``; ``zipfile`` cannot list one whose member name is marked UTF-8 and is not,
    which is damage: said naming that member."""
    try:
        return zipfile.ZipFile(archive)
    except UnicodeDecodeError as error:
        raise zipfile.BadZipFile(f"member name {error.object!r} is marked UTF-8 but is not") from None


def unpack(archive: Path, target: Path, *, replace: bool = False, max_bytes: int = MAX_BYTES,
           max_ratio: int = MAX_RATIO, fix: str = REDOWNLOAD) -> Path:
    """Unpack the tar or zip ``archive`` into ``target`` safely; do nothing if already done.

    By default the archive's top-level entries replace same-named ones in ``target`` and the rest
    is kept (a dataset of several archives). With ``replace``, ``target`` ends up holding exactly
    the archive: it is swapped in whole once extracted, so a failure leaves the old contents, and a
    link at ``target`` is replaced, never written through. ``fix`` ends the message for a damaged
    archive: what to do about it (a download is fetched again; a user's own file is not).
    """
    if is_unpacked(archive, target):
        return target
    if replace:
        staging = target.with_name(f".staging-{target.name}")
    else:
        target.mkdir(parents=True, exist_ok=True)
        staging = target / f".staging-{archive.name}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        _extract(archive, staging, max_bytes, max_ratio)
    except tarfile.FilterError as error:
        # The data filter caught what the member checks did not (a chain of links that escapes only
        # as a whole): the archive is unsafe, not damaged, so downloading it again will not help.
        shutil.rmtree(staging, ignore_errors=True)
        raise UnsafeArchive(f"{archive}: {error}; refusing to unpack this archive") from None
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise DatasetError(f"{archive}: cannot be unpacked ({error}); {fix}") from None
    except UnsafeArchive:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if replace:
        _write_marker(staging, archive)
        swap_in(staging, target)
    else:
        _merge(staging, target)
        _write_marker(target, archive)
    return target


def _write_marker(target: Path, archive: Path) -> None:
    marker = _marker(target, archive)
    marker.parent.mkdir(exist_ok=True)
    marker.write_text(_fingerprint(archive))


def _merge(staging: Path, target: Path) -> None:
    """Move each top-level entry of ``staging`` into ``target``, replacing a same-named one."""
    for entry in staging.iterdir():
        destination = target / entry.name
        if destination.is_dir() and not destination.is_symlink():
            shutil.rmtree(destination)
        elif destination.exists() or destination.is_symlink():
            destination.unlink()
        os.replace(entry, destination)
    staging.rmdir()


def swap_in(staging: Path, target: Path) -> None:
    """Put ``staging`` (a folder or a link) in ``target``'s place; a link there is removed, not followed."""
    old = target.with_name(f".old-{target.name}")
    if target.is_symlink() or target.is_file():
        target.unlink()
    elif target.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
    os.replace(staging, target)
    shutil.rmtree(old, ignore_errors=True)
