"""Downloads: streamed, resumable (HTTP Range), retried with backoff, checksum-verified, cached.

A file is downloaded to ``<name>.part`` and renamed only once its size and checksum are right,
so an interrupted or corrupted download is never mistaken for a complete one. A file with no
published checksum is trusted on first use, not on first download: its hash is held beside it
(``.sha256.held``) and recorded as the one later downloads must match (``.sha256``) only once the
file has been used (``confirm``); one that cannot be used is deleted with its records (``discard``).
Where no length is known (no pinned size, no ``Content-Length``), a connection dropped mid-body
looks like the end of the file: only using it tells.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
from pathlib import Path

import requests
import urllib3
from tqdm import tqdm

from featurestore.datasets.errors import ChecksumMismatch, DownloadFailed, DownloadRefused
from featurestore.datasets.registry import Resource
from featurestore.errors import first_line
from featurestore.ingest import checksums

ENV_MIRROR = "FEATURESTORE_MIRROR"
CHUNK = 1 << 20
# Status codes worth retrying: the server or a proxy may recover; anything else 4xx will not.
_TRANSIENT = {408, 425, 429, 500, 502, 503, 504}
# The one retry policy of a download (the fetch task does not retry on top of it, so the attempts
# an error counts are the requests made): waits of 1, 2, 4, 8 and 16 s ride out a ~30 s outage.
ATTEMPTS = 6
BACKOFF_S = 1.0


def resolve_mirror(mirror: str | None = None) -> str | None:
    """The mirror base URL: ``mirror`` if given, else ``$FEATURESTORE_MIRROR``, else none."""
    chosen = mirror or os.environ.get(ENV_MIRROR) or None
    return chosen.rstrip("/") if chosen else None


def resource_url(resource: Resource, dataset: str, mirror: str | None = None) -> str:
    """Where to fetch ``resource``: the canonical URL, or ``<mirror>/<dataset>/<filename>``."""
    base = resolve_mirror(mirror) if resource.mirrored else None
    return f"{base}/{dataset}/{resource.filename}" if base else resource.url


_FIX_FILE = "delete it and download again, or check the mirror"
# A copy this machine provides is not featurestore's to delete, and no download replaces it in place.
_FIX_LOCAL = ("it is a copy this machine provides, such as a distribution package's file (`dpkg -S FILE` names "
              "the package): reinstall it, or give --mirror URL to download the files instead")
# Beside a downloaded file: the URL it came from. The cache is keyed by URL, not by file name.
_SOURCE = ".url"
# Beside a download with no published checksum: its hash, until the file has been used.
_HELD = checksums.RECORDED + ".held"
# What is kept for one download: the file, its .part, its stamp, its first-download hash (held or
# recorded), its URL (last, so that a move interrupted half-way is redone: the URL still says where
# the rest is).
_KEPT = ("", ".part", ".verified", _HELD, checksums.RECORDED, _SOURCE)
# Hex digits of the URL's SHA-256 naming a user URL's cache folder: 48 bits, no collision in practice.
_URL_KEY = 12


def cache_path(resource: Resource, directory: Path) -> Path:
    """Where ``resource`` is kept under ``directory``.

    A registered file is kept by its name: its canonical URL changes only with the registry. A
    user's URL gets a folder of its own, named by a short hash of the URL, so that URLs sharing a
    file name (``.../v1/data.zip``, ``.../v2/data.zip``) each keep their download and the hash
    recorded at their first download: going back to v1 is still checked against v1's first bytes.
    """
    if resource.mirrored:
        return directory / resource.filename
    return directory / hashlib.sha256(resource.url.encode()).hexdigest()[:_URL_KEY] / resource.filename


def _verify(path: Path, checksum: str | None, size: int | None, accepted: tuple[str, ...] = (),
            remember: bool = True, fix: str = _FIX_FILE, pinned: bool = True) -> str:
    """Check ``path`` against its pinned size and checksum; return the checksum that matched.

    With no checksum pinned, the one recorded at the first download (or held since, until the file
    is used) is enforced, and a file seen for the first time has its hash held. ``remember=False``
    (files we do not own, such as a distribution package's) writes nothing beside the file: it is
    simply hashed every time.
    ``fix`` ends a mismatch's message: what the user should do about it. ``pinned=False`` says
    that ``checksum`` is the one recorded at the first download, which the message then names.
    """
    if not checksum:
        checksum, pinned = checksums.recorded(path) or _held(path), False
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        raise ChecksumMismatch(
            f"{path}: {actual_size} bytes, expected {size}; {fix}"
        )
    expected = [c for c in (checksum,) if c] + list(accepted)
    if not expected:
        return _hold(path) if remember else f"sha256:{checksums.digest_file(path, 'sha256')}"
    for candidate in expected:
        if remember and checksums.stamped(path, candidate):
            return candidate
    found = []
    for candidate in expected:
        ok, actual = checksums.matches(path, candidate)
        if ok:
            if remember:
                checksums.stamp(path, candidate)
            return candidate
        found.append(actual)
    others = f" (nor any of {len(expected) - 1} other accepted hashes)" if len(expected) > 1 else ""
    if pinned:
        differs = f"differs from the pinned {expected[0]}{others}; the file is corrupt or not the published one"
    else:
        differs = (f"differs from {expected[0]}, recorded at its first download; the file is corrupt or has "
                   "changed since")
    raise ChecksumMismatch(f"{path}: checksum {found[0]} {differs} — {fix}")


def _local_copy(resource: Resource) -> Path | None:
    """A copy of ``resource`` already on this machine (e.g. from a distribution package)."""
    for directory in resource.local_dirs:
        candidate = Path(directory) / resource.filename
        if candidate.is_file():
            return candidate
    return None


def fetch(
    resource: Resource,
    dataset: str,
    directory: Path,
    *,
    mirror: str | None = None,
    checksum: str | None = None,
    progress: bool = True,
    attempts: int = ATTEMPTS,
    backoff: float | None = None,
    timeout: float = 30.0,
) -> Path:
    """Return a verified local path for ``resource``, downloading it into ``directory`` if needed.

    A failed request is retried ``attempts`` times in all, waiting ``backoff`` seconds (default
    ``BACKOFF_S``), then twice as long each time.

    ``checksum`` replaces the registry's pinned checksum and size for this call (for a mirror that
    serves other bytes, such as test fixtures); it never disables verification. Without a mirror,
    a copy found in ``resource.local_dirs`` is used in place, with no network traffic.
    """
    expected = checksum or resource.checksum
    # An explicit checksum pins the exact bytes, so it also replaces the registry's pinned size.
    size = None if checksum else resource.size
    local = None if (mirror or resolve_mirror()) else _local_copy(resource)
    if local is not None:
        return _verified_local(local, resource, expected, size, explicit=checksum is not None)
    target = _cache_slot(resource, directory)
    if _cached(target, expected, size):
        return target
    return _download_verified(resource, dataset, target, expected, size, mirror=mirror, progress=progress,
                              attempts=attempts, backoff=BACKOFF_S if backoff is None else backoff, timeout=timeout)


def _verified_local(local: Path, resource: Resource, expected: str | None, size: int | None, *,
                    explicit: bool) -> Path:
    """``local``, this machine's copy of ``resource``, once verified; ``explicit``: ``expected`` was
    given for this call rather than taken from the registry."""
    # A local copy may be a repackaging of the same data, hence its own accepted checksums.
    accepted = () if explicit else resource.local_checksums
    _verify(local, expected, None if accepted else size, accepted, remember=False, fix=_FIX_LOCAL)
    return local


def _cache_slot(resource: Resource, directory: Path) -> Path:
    """Where ``resource`` is kept under ``directory``, ready for it: what an earlier version kept
    under its bare name is moved there, what was kept there from another URL is deleted, and the
    URL is recorded."""
    target = cache_path(resource, directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.parent != directory:
        _adopt_earlier(directory / resource.filename, target, resource)
    if not _same_source(target, resource):
        _forget(target)
    # Recorded before the download starts, so that a .part left behind is resumed only from its own URL.
    target.with_name(target.name + _SOURCE).write_text(resource.url + "\n")
    return target


def _cached(target: Path, expected: str | None, size: int | None) -> bool:
    """Whether ``target`` holds a verified download; one that fails verification is deleted."""
    if not target.is_file():
        return False
    try:
        _verify(target, expected, size)
    except ChecksumMismatch:
        target.unlink()
        return False
    return True


def _download_verified(resource: Resource, dataset: str, target: Path, expected: str | None, size: int | None, *,
                       mirror: str | None, progress: bool, attempts: int, backoff: float, timeout: float) -> Path:
    """Download ``resource`` beside ``target``, verify it and move it there; a download that fails
    verification is deleted."""
    # Trust on first use only: with no checksum published, a new download must match the hash
    # recorded once the first one was used, which is kept; a held one was never used, so it binds nothing.
    recorded = None if expected else checksums.recorded(target)
    url = resource_url(resource, dataset, mirror)
    partial = target.with_name(target.name + ".part")
    _download(url, partial, size, check=_what_to_check(resource, mirror), progress=progress, attempts=attempts,
              backoff=backoff, timeout=timeout)
    fix = "nothing was kept; check that the server sends the right file, then run ingest again to download it again"
    if recorded:
        fix += f" (if the file changed on purpose, delete {target}.sha256 to accept the new one)"
    try:
        _verify(partial, expected or recorded, size, fix=fix, pinned=bool(expected))
    except ChecksumMismatch as error:
        partial.unlink(missing_ok=True)
        if not recorded:
            # Nothing from this URL is kept; a recorded hash keeps its URL beside it.
            target.with_name(target.name + _SOURCE).unlink()
        raise ChecksumMismatch(f"{url}: {error}") from None
    os.replace(partial, target)
    # The verification stamp and first-download hash travel with the file (rename keeps mtime).
    for suffix in (".verified", _HELD):
        side = partial.with_name(partial.name + suffix)
        if side.exists():
            os.replace(side, target.with_name(target.name + suffix))
    return target


def _held(path: Path) -> str | None:
    """The hash of ``path`` held since its download, not yet recorded: the file was never used."""
    return checksums.recorded(path, _HELD)


def _hold(path: Path) -> str:
    """Hash ``path`` and hold the result beside it until ``confirm`` records it."""
    checksum = f"sha256:{checksums.digest_file(path, 'sha256')}"
    path.with_name(path.name + _HELD).write_text(checksum + "\n")
    return checksum


def confirm(path: Path) -> None:
    """Record the hash held since ``path`` was downloaded: every later download must match it.

    Called once the file has been used (unpacked): a first download is trusted only then, so that a
    body cut short where no length showed it, or a login page served in the archive's place, is
    never the file every later download is checked against. Nothing to do for other files.
    """
    held = path.with_name(path.name + _HELD)
    if held.exists():
        os.replace(held, path.with_name(path.name + checksums.RECORDED))


def never_used(path: Path) -> bool:
    """Whether ``path`` is a download with no published checksum that was never used: its hash is
    held beside it, not yet recorded."""
    return _held(path) is not None


def discard(path: Path) -> None:
    """Delete ``path``, a download never used that could not be used, with its held hash and its
    URL, so that the next run downloads it again and trusts what then works."""
    _forget(path)


def _same_source(target: Path, resource: Resource) -> bool:
    """Whether what is kept at ``target`` (the file, its ``.part``, its recorded hash) came from
    ``resource``'s URL: the canonical one, so that a change of mirror is no change of source."""
    try:
        return target.with_name(target.name + _SOURCE).read_text().strip() == resource.url
    except FileNotFoundError:
        # Kept by a version that recorded no URL: a registered file is named by its registry entry,
        # but a user's file name says nothing about which URL it came from.
        return resource.mirrored


def _forget(target: Path) -> None:
    """Delete the file kept at ``target`` from another URL, with its ``.part`` and the records beside it."""
    for suffix in _KEPT:
        target.with_name(target.name + suffix).unlink(missing_ok=True)


def _adopt_earlier(flat: Path, target: Path, resource: Resource) -> None:
    """Move what an earlier version kept for ``resource``'s URL under its bare file name (``flat``)
    into the URL's own folder (``target``): its first-download hash must stay enforced, not be
    recorded afresh from whatever the server sends now."""
    if target.with_name(target.name + _SOURCE).exists() or not _same_source(flat, resource):
        return
    for suffix in _KEPT:
        kept = flat.with_name(flat.name + suffix)
        if kept.exists():
            os.replace(kept, target.with_name(target.name + suffix))


def _what_to_check(resource: Resource, mirror: str | None) -> str:
    """What a user whose download failed should check: the mirror in use, the user's own URL, or the network."""
    if not resource.mirrored:
        return "check the network and the URL"
    if resolve_mirror(mirror):
        return "check that the mirror is up and serves this file"
    return "check the network or pass --mirror BASE_URL"


def _download(url: str, partial: Path, size: int | None, *, check: str, progress: bool, attempts: int,
              backoff: float, timeout: float) -> None:
    """Stream ``url`` into ``partial``, resuming from its current length after each failure.

    ``check`` is the advice that ends the error when every attempt fails.
    """
    reason, unreachable = "no attempt made", False
    for attempt in range(attempts):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        try:
            if _stream(url, partial, size, progress=progress, timeout=timeout):
                return
            reason, unreachable = "the server sent fewer bytes than announced", False
        except _Permanent as error:
            raise DownloadRefused(f"{url}: {error}; check the URL or the mirror") from None
        except (requests.RequestException, urllib3.exceptions.HTTPError, _Transient) as error:
            if _hopeless(_innermost(error)):
                # Nothing listens there, or no such host: retrying only delays the answer.
                resumes = " (the download resumes where it stopped)" if partial.exists() else ""
                raise DownloadRefused(f"could not reach {url} ({_reason(error)}); {check}{resumes}") from None
            reason, unreachable = _reason(error), isinstance(error, requests.ConnectionError)
    if unreachable:
        raise DownloadFailed(f"could not reach {url} ({reason}, {attempts} attempts); {check}")
    resumes = " — the download resumes where it stopped" if partial.exists() else ""
    raise DownloadFailed(f"{url}: failed after {attempts} attempts ({reason}); {check}, then rerun{resumes}")


def _hopeless(cause: BaseException) -> bool:
    """Whether a failed attempt's innermost ``cause`` will fail again at once: a refused connection,
    or a host name the resolver says does not exist (a resolver that cannot answer now, EAI_AGAIN,
    is worth retrying)."""
    return isinstance(cause, ConnectionRefusedError) or (
        isinstance(cause, socket.gaierror) and cause.errno == socket.EAI_NONAME)


def _innermost(error: BaseException) -> BaseException:
    """The innermost cause of a failed attempt (e.g. ``ConnectionRefusedError``) under the
    exceptions requests and urllib3 wrap it in."""
    seen = set()
    while id(error) not in seen:
        seen.add(id(error))
        inner = getattr(error, "reason", None)
        if not isinstance(inner, BaseException):
            inner = error.__cause__ or next((a for a in error.args if isinstance(a, BaseException)), None)
        if inner is None:
            break
        error = inner
    return error


def _reason(error: BaseException) -> str:
    """Why an attempt failed, in a few words: the innermost cause (``connection refused``,
    ``timed out``), not requests' and urllib3's nested messages, which quote the URL in pieces."""
    error = _innermost(error)
    strerror = getattr(error, "strerror", None)
    if strerror:
        return strerror[:1].lower() + strerror[1:]  # "Connection refused" reads mid-sentence
    return first_line(error, named=False)


class _Transient(Exception):
    """A server answer worth retrying."""


class _Permanent(Exception):
    """A server answer that retrying will not change."""


def _stream(url: str, partial: Path, size: int | None, *, progress: bool, timeout: float) -> bool:
    """One attempt: append the rest of ``url`` to ``partial``; True when the body is complete."""
    offset = partial.stat().st_size if partial.exists() else 0
    if size is not None and offset == size:
        return True
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    with requests.get(url, headers=headers, stream=True, timeout=timeout) as response:
        if response.status_code == 416:
            # "bytes */<offset>": the partial file already holds the whole resource (a server that
            # announced too long a Content-Length made it look short); the checksum has the last word.
            if response.headers.get("Content-Range") == f"bytes */{offset}":
                return True
            # Otherwise our partial file does not fit the resource: it cannot be resumed, start over.
            partial.unlink(missing_ok=True)
            raise _Transient("HTTP 416: partial file does not match the server's copy")
        if response.status_code in _TRANSIENT:
            raise _Transient(f"HTTP {response.status_code}")
        if response.status_code >= 400:
            raise _Permanent(f"HTTP {response.status_code} {response.reason}")
        if response.status_code != 206:
            offset = 0  # the server ignored Range: it is sending the whole file again
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else size
        mode = "ab" if offset else "wb"
        with open(partial, mode) as handle, tqdm(
            total=total, initial=offset, unit="B", unit_scale=True, desc=partial.name[: -len(".part")],
            disable=not progress, leave=False,
        ) as bar:
            # read1 hands over whatever has arrived, so a dropped connection loses nothing already
            # received; the bytes are kept as sent (no Content-Encoding decoding) so offsets match Range.
            while chunk := response.raw.read1(CHUNK, decode_content=False):
                handle.write(chunk)
                bar.update(len(chunk))
    return total is None or partial.stat().st_size == total
