"""Downloader against a local HTTP server on 127.0.0.1: resume, checksum, safe extraction."""

from __future__ import annotations

import hashlib
import http.server
import io
import tarfile
import threading

import pytest

from speechlstm.data.download import Archive, DownloadError, download, fetch_dataset, safe_extract


def _tar(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class Server:
    """Serves `files` with Range support; `mode` 'truncate' drops the connection half-way."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.mode = "ok"
        self.requests: list[str | None] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                data = outer.files.get(self.path)
                outer.requests.append(self.headers.get("Range"))
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                if self.headers.get("Range"):
                    start = int(self.headers["Range"].split("=")[1].split("-")[0])
                    self.send_response(206)
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if outer.mode == "truncate":
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


def test_truncated_download_resumes_and_verifies(server, tmp_path):
    payload = _tar(
        {"yes/a_nohash_0.wav": b"x" * 50_000, "testing_list.txt": b"yes/a_nohash_0.wav\n"}
    )
    digest = hashlib.sha256(payload).hexdigest()
    server.files["/sc.tar.gz"] = payload
    server.mode = "truncate"
    with pytest.raises(DownloadError, match="run again to resume"):
        download(server.url + "/sc.tar.gz", tmp_path / "sc.tar.gz", digest, timeout_s=5)
    part = tmp_path / "sc.tar.gz.part"
    assert 0 < part.stat().st_size < len(payload)
    server.mode = "ok"
    path = download(server.url + "/sc.tar.gz", tmp_path / "sc.tar.gz", digest, timeout_s=5)
    assert path.read_bytes() == payload and not part.exists()
    assert server.requests[-1] == f"bytes={len(payload) // 2}-"  # resumed, not restarted


def test_corrupt_download_is_rejected_and_removed(server, tmp_path):
    server.files["/sc.tar.gz"] = b"not the archive you wanted"
    with pytest.raises(DownloadError, match="checksum mismatch"):
        download(server.url + "/sc.tar.gz", tmp_path / "sc.tar.gz", "0" * 64, timeout_s=5)
    assert not (tmp_path / "sc.tar.gz").exists() and not (tmp_path / "sc.tar.gz.part").exists()
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(server.url + "/missing", tmp_path / "m", "0" * 64, timeout_s=5)


def test_archive_escaping_the_target_is_refused(tmp_path):
    evil = tmp_path / "evil.tar.gz"
    evil.write_bytes(_tar({"ok.txt": b"fine", "../escaped.txt": b"gotcha"}))
    with pytest.raises(DownloadError, match="escapes"):
        safe_extract(evil, tmp_path / "out")
    assert not (tmp_path / "escaped.txt").exists()
    assert not (tmp_path / "out" / "ok.txt").exists()  # nothing extracted at all
    absolute = tmp_path / "abs.tar.gz"
    absolute.write_bytes(_tar({"/tmp/speechlstm-abs.txt": b"x"}))
    with pytest.raises(DownloadError, match="escapes"):
        safe_extract(absolute, tmp_path / "out2")


def test_fetch_dataset_end_to_end(server, tmp_path):
    payload = _tar({"yes/a_nohash_0.wav": b"RIFF", "no/b_nohash_0.wav": b"RIFF"})
    server.files["/d.tar.gz"] = payload
    archive = Archive(
        "d.tar.gz", server.url + "/d.tar.gz", hashlib.sha256(payload).hexdigest(), len(payload), "d"
    )
    folder = fetch_dataset(archive, tmp_path)
    assert (folder / "yes" / "a_nohash_0.wav").read_bytes() == b"RIFF"
    n = len(server.requests)
    assert fetch_dataset(archive, tmp_path) == folder and len(server.requests) == n  # cached


def test_upper_case_hash_is_accepted_and_a_malformed_one_refused_before_transfer(server, tmp_path):
    payload = b"the real archive"
    server.files["/a.bin"] = payload
    digest = hashlib.sha256(payload).hexdigest().upper()
    assert download(server.url + "/a.bin", tmp_path / "a.bin", f" {digest} ").read_bytes() == (
        payload
    )
    with pytest.raises(DownloadError, match="64 hexadecimal"):
        download(server.url + "/a.bin", tmp_path / "b.bin", "abc123")
    assert not (tmp_path / "b.bin.part").exists()  # nothing was fetched


def _tar_links(members: list[tuple[str, str | None, bytes]]) -> bytes:
    """(name, symlink target or None, data) members."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, link, data in members:
            info = tarfile.TarInfo(name)
            if link is not None:
                info.type, info.linkname = tarfile.SYMTYPE, link
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.parametrize(
    "members",
    [
        # A chain: each link looks harmless alone, together they step outside.
        [("a", ".", b""), ("a/b", "..", b""), ("a/b/escaped.txt", None, b"x")],
        [("d", "sub/../..", b""), ("d/x.txt", None, b"x")],
        [("up", "../outside", b"")],
        [("abs", "/etc", b"")],
    ],
)
def test_link_chains_cannot_step_outside(tmp_path, members, monkeypatch):
    import speechlstm.data.download as dl

    # As on a Python without the standard library's extraction filter.
    monkeypatch.delattr(dl.tarfile, "data_filter", raising=False)
    archive = tmp_path / "links.tar"
    archive.write_bytes(_tar_links(members))
    with pytest.raises(DownloadError, match="unsafe"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "x.txt").exists()


def test_extraction_size_cap(tmp_path):
    import speechlstm.data.download as dl

    archive = tmp_path / "big.tar.gz"
    archive.write_bytes(_tar({"a.bin": b"\0" * 5000, "b.bin": b"\0" * 5000}))
    with tarfile.open(archive) as tar, pytest.raises(DownloadError, match="more than"):
        dl.check_members(tar, tmp_path / "out", max_bytes=8000)
    with tarfile.open(archive) as tar:
        dl.check_members(tar, tmp_path / "out", max_bytes=10000)  # at the cap: fine
