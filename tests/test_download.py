"""Downloads against a loopback server: caching, checksums, resume, retries, timeouts, mirror."""

from __future__ import annotations

import hashlib
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from featurestore.datasets.errors import ChecksumMismatch, DatasetError, DownloadFailed, DownloadRefused
from featurestore.datasets.registry import Resource
from featurestore.ingest.download import confirm, fetch, resource_url
from featurestore.ingest.pipeline import _unpack_download, ingest
from fixtures_datasets import jpeg, tar_bytes


PAYLOAD = b"".join(jpeg(i, (96, 96)) for i in range(6))
SHA = f"sha256:{hashlib.sha256(PAYLOAD).hexdigest()}"
MD5 = f"md5:{hashlib.md5(PAYLOAD).hexdigest()}"


def resource(checksum=SHA, **fields) -> Resource:
    return Resource("photos.bin", "https://example.invalid/photos.bin", checksum, **fields)


def used(path):
    """``path`` once ingest has used it (unpacked it): its first-download hash is trusted from then on."""
    confirm(path)
    return path


@pytest.fixture
def mirror(loopback):
    loopback.serve("/toy/photos.bin", PAYLOAD)
    return loopback.url


def test_downloads_once_and_then_uses_the_cache(tmp_path, loopback, mirror):
    first = fetch(resource(MD5), "toy", tmp_path, mirror=mirror, progress=False)
    assert first.read_bytes() == PAYLOAD
    second = fetch(resource(MD5), "toy", tmp_path, mirror=mirror, progress=False)
    assert second == first
    assert len(loopback.requests) == 1
    assert not list(tmp_path.glob("*.part"))


def test_checksum_mismatch_is_refused_and_nothing_kept(tmp_path, loopback, mirror):
    wrong = "sha256:" + "0" * 64
    with pytest.raises(ChecksumMismatch, match="photos.bin.*differs from the pinned sha256:000") as error:
        fetch(resource(wrong), "toy", tmp_path, mirror=mirror, progress=False)
    assert "\n" not in str(error.value)
    assert "nothing was kept" in str(error.value) and "delete it" not in str(error.value)
    assert list(tmp_path.iterdir()) == []


def test_download_cut_half_way_resumes_with_range(tmp_path, loopback, mirror):
    loopback.cut("/toy/photos.bin", after=len(PAYLOAD) // 2)
    path = fetch(resource(), "toy", tmp_path, mirror=mirror, progress=False, backoff=0)
    assert path.read_bytes() == PAYLOAD
    assert [r[1] for r in loopback.requests] == [None, f"bytes={len(PAYLOAD) // 2}-"]


def test_interrupted_run_leaves_a_part_file_the_next_run_resumes(tmp_path, loopback, mirror):
    loopback.cut("/toy/photos.bin", after=1000)
    with pytest.raises(DownloadFailed, match="failed after 1 attempts"):
        fetch(resource(), "toy", tmp_path, mirror=mirror, progress=False, attempts=1)
    assert (tmp_path / "photos.bin.part").stat().st_size == 1000
    assert not (tmp_path / "photos.bin").exists()
    path = fetch(resource(), "toy", tmp_path, mirror=mirror, progress=False)
    assert path.read_bytes() == PAYLOAD
    assert loopback.requests[-1][1] == "bytes=1000-"


def test_server_errors_are_retried_with_backoff(tmp_path, loopback, mirror):
    loopback.fail("/toy/photos.bin", 500, 503)
    path = fetch(resource(), "toy", tmp_path, mirror=mirror, progress=False, backoff=0.01)
    assert path.read_bytes() == PAYLOAD
    assert len(loopback.requests) == 3


def test_persistent_server_errors_end_in_a_clear_error(tmp_path, loopback, mirror):
    loopback.fail("/toy/photos.bin", 500, 500, 500)
    with pytest.raises(DownloadFailed, match=r"photos.bin: failed after 3 attempts \(HTTP 500\); check"):
        fetch(resource(), "toy", tmp_path, mirror=mirror, progress=False, attempts=3, backoff=0.01)
    assert not (tmp_path / "photos.bin").exists()


def test_a_refused_connection_fails_at_once_naming_the_whole_url(tmp_path):
    # A loopback port nobody listens on: bound once to learn a free number, then closed.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/toy/photos.bin"
    with pytest.raises(DownloadRefused) as error:
        fetch(resource(), "toy", tmp_path, mirror=f"http://127.0.0.1:{port}", progress=False, attempts=4, backoff=0)
    # One attempt, not 4: nothing listens, so waiting would not help.
    assert str(error.value) == (f"could not reach {url} (connection refused); check that the mirror is up and serves "
                                "this file")


def test_a_host_name_that_does_not_exist_fails_at_once(tmp_path):
    # It was retried 6 times over ~31 s before saying "name or service not known". A name under
    # .invalid never resolves (RFC 6761), so the resolver answers at once, here and offline.
    url = "http://no-such-mirror.invalid/toy/photos.bin"
    with pytest.raises(DownloadRefused) as error:
        fetch(resource(), "toy", tmp_path, mirror="http://no-such-mirror.invalid", progress=False, attempts=4,
              backoff=30)
    assert str(error.value) == (f"could not reach {url} (name or service not known); check that the mirror is up "
                                "and serves this file")


def test_a_connection_cut_before_the_body_is_retried(tmp_path, loopback, mirror):
    loopback.cut("/toy/photos.bin", after=0)
    path = fetch(resource(), "toy", tmp_path, mirror=mirror, progress=False, backoff=0)
    assert path.read_bytes() == PAYLOAD
    assert len(loopback.requests) == 2


def test_too_long_content_length_ends_in_the_whole_file_not_an_endless_restart(tmp_path, loopback, mirror):
    loopback.overstated["/toy/photos.bin"] = 100
    path = fetch(resource(), "toy", tmp_path, mirror=mirror, progress=False, backoff=0)
    assert path.read_bytes() == PAYLOAD
    assert [r[1] for r in loopback.requests] == [None, f"bytes={len(PAYLOAD)}-"]


def test_missing_file_is_not_retried(tmp_path, loopback):
    with pytest.raises(DownloadRefused, match="HTTP 404"):
        fetch(resource(), "toy", tmp_path, mirror=loopback.url, progress=False, backoff=0.01)
    assert len(loopback.requests) == 1


def test_timeouts_are_retried_then_reported(tmp_path, loopback, mirror):
    loopback.stalls["/toy/photos.bin"] = 1.5
    with pytest.raises(DownloadFailed, match="failed after 2 attempts.*(Timeout|timed out)"):
        fetch(resource(), "toy", tmp_path, mirror=mirror, progress=False, attempts=2, backoff=0, timeout=0.3)
    assert len(loopback.requests) == 2


def test_mirror_comes_from_the_environment(tmp_path, loopback, mirror, monkeypatch):
    monkeypatch.setenv("FEATURESTORE_MIRROR", mirror + "/")
    assert resource_url(resource(), "toy") == f"{mirror}/toy/photos.bin"
    fetch(resource(), "toy", tmp_path, progress=False)
    assert loopback.requests == [("/toy/photos.bin", None)]


def test_unpublished_checksum_is_recorded_then_enforced(tmp_path, loopback, mirror):
    path = fetch(resource(None, size=len(PAYLOAD)), "toy", tmp_path, mirror=mirror, progress=False)
    assert not (tmp_path / "photos.bin.sha256").exists(), "held, not trusted, until the file is used"
    used(path)
    assert (tmp_path / "photos.bin.sha256").read_text().strip() == SHA
    path.write_bytes(PAYLOAD[:-1] + b"\x00")
    # The damaged copy fails the recorded hash, is deleted, and is downloaded again.
    again = fetch(resource(None, size=len(PAYLOAD)), "toy", tmp_path, mirror=mirror, progress=False)
    assert again.read_bytes() == PAYLOAD
    assert len(loopback.requests) == 2


def test_a_new_download_must_match_the_hash_recorded_at_the_first(tmp_path, loopback, mirror):
    used(fetch(resource(None), "toy", tmp_path, mirror=mirror, progress=False))
    loopback.serve("/toy/photos.bin", PAYLOAD[::-1])  # the server's copy changes
    (tmp_path / "photos.bin").write_bytes(b"damaged")
    with pytest.raises(ChecksumMismatch, match=rf"differs from {SHA}, recorded at its first download; the file is "
                       r"corrupt or has changed since — .*delete .*photos.bin.sha256 to accept"):
        fetch(resource(None), "toy", tmp_path, mirror=mirror, progress=False)
    assert (tmp_path / "photos.bin.sha256").read_text().strip() == SHA, "the first download's hash is kept"
    assert not (tmp_path / "photos.bin").exists() and not (tmp_path / "photos.bin.part").exists()


def test_pinned_size_is_enforced(tmp_path, loopback, mirror):
    with pytest.raises(ChecksumMismatch, match=f"{len(PAYLOAD)} bytes, expected 10; nothing was kept; check that "
                       "the server sends the right file, then run ingest again"):
        fetch(resource(None, size=10), "toy", tmp_path, mirror=mirror, progress=False)


def test_local_copy_is_used_in_place_without_network(tmp_path, loopback):
    shelf = tmp_path / "shelf"
    shelf.mkdir()
    (shelf / "photos.bin").write_bytes(PAYLOAD)
    other = "sha256:" + "1" * 64
    found = fetch(resource(other, local_dirs=(str(shelf),), local_checksums=(SHA,)), "toy", tmp_path / "dl",
                  progress=False)
    assert found == shelf / "photos.bin"
    assert loopback.requests == []
    assert [p.name for p in shelf.iterdir()] == ["photos.bin"], "nothing written beside a file we do not own"


def _user(url: str) -> Resource:
    """A user's own URL (``--source``): no checksum published, no mirror."""
    return Resource("photos.bin", url, None, mirrored=False)


def test_a_different_url_with_the_same_file_name_is_downloaded_anew(tmp_path, loopback):
    first, second = loopback.serve("/v1/photos.bin", PAYLOAD), loopback.serve("/v2/photos.bin", PAYLOAD[::-1])
    assert used(fetch(_user(first), "mine", tmp_path, progress=False)).read_bytes() == PAYLOAD
    assert used(fetch(_user(second), "mine", tmp_path, progress=False)).read_bytes() == PAYLOAD[::-1]
    assert used(fetch(_user(second), "mine", tmp_path, progress=False)).read_bytes() == PAYLOAD[::-1]
    assert loopback.requests == [("/v1/photos.bin", None), ("/v2/photos.bin", None)]
    recorded = sorted(p.read_text().strip() for p in tmp_path.glob("*/photos.bin.sha256"))
    assert recorded == sorted([SHA, f"sha256:{hashlib.sha256(PAYLOAD[::-1]).hexdigest()}"]), "one record per URL"


def test_going_back_to_a_url_checks_it_against_its_own_first_download(tmp_path, loopback):
    first, second = loopback.serve("/v1/photos.bin", PAYLOAD), loopback.serve("/v2/photos.bin", PAYLOAD[::-1])
    kept = used(fetch(_user(first), "mine", tmp_path, progress=False))
    used(fetch(_user(second), "mine", tmp_path, progress=False))
    loopback.serve("/v1/photos.bin", PAYLOAD[:-1] + b"\x00")  # v1 changes on the server
    assert fetch(_user(first), "mine", tmp_path, progress=False).read_bytes() == PAYLOAD, "v2 did not replace v1"
    kept.unlink()  # v1's download is lost: the new one must match v1's first download, not v2's
    with pytest.raises(ChecksumMismatch, match=rf"/v1/photos.bin: .*differs from {SHA}, recorded at its first "
                       rf"download; .*delete {kept}.sha256 to accept"):
        fetch(_user(first), "mine", tmp_path, progress=False)
    assert [path for path, _ in loopback.requests] == ["/v1/photos.bin", "/v2/photos.bin", "/v1/photos.bin"]


def test_a_hash_recorded_beside_the_bare_file_name_by_an_earlier_version_stays_enforced(tmp_path, loopback):
    url = loopback.serve("/v1/photos.bin", PAYLOAD[::-1])  # changed since the first download
    (tmp_path / "photos.bin.url").write_text(url + "\n")
    (tmp_path / "photos.bin.sha256").write_text(SHA + "\n")
    with pytest.raises(ChecksumMismatch, match=f"differs from {SHA}, recorded at its first download"):
        fetch(_user(url), "mine", tmp_path, progress=False)
    assert not list(tmp_path.glob("photos.bin*")), "the records moved into the URL's own folder"
    assert [p.read_text().strip() for p in tmp_path.glob("*/photos.bin.sha256")] == [SHA]


def test_a_part_file_from_another_url_is_not_resumed(tmp_path, loopback):
    first, second = loopback.serve("/v1/photos.bin", PAYLOAD), loopback.serve("/v2/photos.bin", PAYLOAD[::-1])
    loopback.cut("/v1/photos.bin", after=1000)
    with pytest.raises(DownloadFailed, match="failed after 1 attempts"):
        fetch(_user(first), "mine", tmp_path, progress=False, attempts=1)
    assert fetch(_user(second), "mine", tmp_path, progress=False).read_bytes() == PAYLOAD[::-1]
    assert loopback.requests[-1] == ("/v2/photos.bin", None)


def test_another_mirror_is_no_reason_to_download_a_registered_file_again(tmp_path, loopback, mirror):
    fetch(resource(None), "toy", tmp_path, mirror=mirror, progress=False)
    fetch(resource(None), "toy", tmp_path, mirror=f"{mirror}/elsewhere", progress=False)
    assert loopback.requests == [("/toy/photos.bin", None)]


def test_a_hash_held_since_a_download_never_used_binds_no_later_download(tmp_path, loopback, mirror):
    path = fetch(resource(None), "toy", tmp_path, mirror=mirror, progress=False)
    path.unlink()  # never used (an ingest stopped before unpacking it), then lost
    loopback.serve("/toy/photos.bin", PAYLOAD[::-1])
    assert used(fetch(resource(None), "toy", tmp_path, mirror=mirror, progress=False)).read_bytes() == PAYLOAD[::-1]
    assert (tmp_path / "photos.bin.sha256").read_text().strip() == f"sha256:{hashlib.sha256(PAYLOAD[::-1]).hexdigest()}"


PHOTOS = tar_bytes({f"photos/{name}/{k}.jpg": jpeg(10 * c + k)
                    for c, name in enumerate(("cat", "dog")) for k in range(6)})


@pytest.fixture
def unsized():
    """A loopback server (127.0.0.1, a port the OS picks) answering over HTTP/1.0 with no
    Content-Length: a body ends where the connection closes, so a dropped connection looks like the
    end of the file. Serves the ``bodies`` list in turn, its last one from then on."""
    bodies: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(bodies.pop(0) if len(bodies) > 1 else bodies[0])

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", bodies
    server.shutdown()
    server.server_close()


def _kept(root, name):
    return sorted(p.name for p in (root / "downloads").rglob(f"{name}*"))


def test_a_first_download_cut_short_with_no_length_is_deleted_not_trusted(tmp_path, unsized):
    # No Content-Length and no pinned size: the half body was taken as the whole file and its hash
    # recorded, so every later download of the good file was refused against it.
    url, bodies = unsized
    bodies += [PHOTOS[: len(PHOTOS) // 2], PHOTOS]  # the connection drops half-way, then the server recovers
    root = tmp_path / "fs"
    with pytest.raises(DatasetError, match=r"photos.tgz: cannot be unpacked \(.*\); this download was deleted with "
                       "its hash; check that the server sends the archive, then run ingest again") as error:
        ingest("imagefolder", root, source=f"{url}/photos.tgz", name="web", progress=False)
    assert "\n" not in str(error.value)
    assert _kept(root, "photos.tgz") == []
    assert ingest("imagefolder", root, source=f"{url}/photos.tgz", name="web", progress=False).images == 12
    assert _kept(root, "photos.tgz") == ["photos.tgz", "photos.tgz.sha256", "photos.tgz.url"]
    recorded = next((root / "downloads").rglob("photos.tgz.sha256")).read_text().strip()
    assert recorded == f"sha256:{hashlib.sha256(PHOTOS).hexdigest()}"


def test_a_login_page_served_in_place_of_the_archive_is_deleted_not_trusted(tmp_path, loopback):
    # A captive portal or an expired link answers 200 with a page: it was kept with its hash, so the
    # rerun failed the same way and the real archive, once served, failed the recorded hash.
    url = loopback.serve("/photos.tgz", b"<html><body>Please log in to the guest Wi-Fi</body></html>")
    root = tmp_path / "fs"
    with pytest.raises(DatasetError, match=r"photos.tgz: cannot be unpacked \(not a tar or zip archive\); this "
                       "download was deleted with its hash; check that the server sends the archive") as error:
        ingest("imagefolder", root, source=url, name="web", progress=False)
    assert "\n" not in str(error.value)
    assert _kept(root, "photos.tgz") == []
    loopback.serve("/photos.tgz", PHOTOS)
    assert ingest("imagefolder", root, source=url, name="web", progress=False).images == 12


def test_a_used_download_keeps_its_hash_when_unpacking_it_again_fails(tmp_path, loopback):
    # Unpacking fails here for a reason of this machine's, not of the file (its folder's place is a
    # file; a full disk is the same OSError): the bytes are those that unpacked before, so their
    # recorded hash must stay, or the next download of a changed file would be trusted afresh.
    url = loopback.serve("/photos.tgz", PHOTOS)
    root = tmp_path / "fs"
    ingest("imagefolder", root, source=url, name="web", progress=False)
    archive = next((root / "downloads").rglob("photos.tgz"))
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    with pytest.raises(DatasetError, match="photos.tgz: cannot be unpacked"):
        _unpack_download(archive, blocked / "images", replace=True)
    assert _kept(root, "photos.tgz") == ["photos.tgz", "photos.tgz.sha256", "photos.tgz.url"]


def test_a_url_naming_dot_dot_is_refused_before_any_download(tmp_path, loopback):
    # %2e%2e decodes to "..": the download's path was its folder's parent, an IsADirectoryError after downloading.
    loopback.serve("/get/..", PHOTOS)
    for tail in ("%2e%2e", "%2E%2e", ".%2e"):
        source = f"{loopback.url}/get/{tail}"
        with pytest.raises(DatasetError, match=f"source URL '{source}' names no file; give the URL of a .zip"):
            ingest("imagefolder", tmp_path / "fs", source=source, name="web", progress=False)
    assert loopback.requests == []
    assert not (tmp_path / "fs").exists()
