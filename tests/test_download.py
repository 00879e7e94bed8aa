"""`--download` against a local HTTP server on 127.0.0.1 that the test starts (no internet)."""

import hashlib
import io
import json
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import soundfile as sf

from eastmir import fetch
from eastmir.cli import main
from eastmir.data.download import Archive, DownloadError, extract
from eastmir.registry import DATASETS


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, files):
        super().__init__(("127.0.0.1", 0), Handler)
        self.files, self.ranges, self.cut_next = files, [], 0

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    """Serves bytes with HTTP Range; ``server.cut_next`` responses stop half-way (the connection drops)."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        blob = self.server.files.get(self.path.lstrip("/"))
        if blob is None:
            self.send_error(404)
            return
        start = 0
        if "Range" in self.headers:
            self.server.ranges.append(self.headers["Range"])
            start = int(self.headers["Range"].removeprefix("bytes=").split("-")[0])
            if start >= len(blob):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(blob) - 1}/{len(blob)}")
        else:
            self.send_response(200)
        body = blob[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.server.cut_next:
            self.server.cut_next -= 1
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(2)  # the transfer is cut half-way
            return
        self.wfile.write(body)


def esc50_archive() -> bytes:
    """A small ESC-50 release in the official layout, zipped under ESC-50-master/ as GitHub does."""
    buffer = io.BytesIO()
    rng = np.random.default_rng(0)
    lines = ["filename,fold,target,category,esc10,src_file,take"]
    with zipfile.ZipFile(buffer, "w") as zf:
        for i in range(10):
            name = f"{i % 5 + 1}-{100 + i}-A-0.wav"
            wav = io.BytesIO()
            sf.write(wav, (rng.standard_normal(8000) * 0.1).astype(np.float32), 16000, format="WAV")
            zf.writestr(f"ESC-50-master/audio/{name}", wav.getvalue())
            lines.append(f"{name},{i % 5 + 1},{i % 2},{['dog', 'rain'][i % 2]},False,{100 + i},A")
        zf.writestr("ESC-50-master/meta/esc50.csv", "\n".join(lines) + "\n")
        zf.writestr("ESC-50-master/README.md", "fixture\n")
    return buffer.getvalue()


@pytest.fixture
def server(monkeypatch):
    blob = esc50_archive()
    srv = Server({"esc50.zip": blob})
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    archive = Archive(
        f"{srv.url}/esc50.zip",
        "ESC-50-master.zip",
        f"sha256:{hashlib.sha256(blob).hexdigest()}",
        "test",
        "zip",
        strip=1,
    )
    monkeypatch.setattr(DATASETS.get("esc50"), "archives", (archive,))
    yield srv
    srv.shutdown()


def prepare(root, *extra):
    return main(["data", "prepare", "esc50", "--root", str(root), "--download", "--no-progress", *extra])


def test_a_complete_download_is_verified_extracted_and_prepared(server, tmp_path, capsys):
    assert prepare(tmp_path) == 0
    assert "10 clips" in capsys.readouterr().out
    assert (tmp_path / "meta" / "esc50.csv").is_file() and len(list((tmp_path / "audio").glob("*.wav"))) == 10
    record = json.loads((tmp_path / "downloads.json").read_text())["ESC-50-master.zip"]
    assert record["sha256"] == hashlib.sha256(server.files["esc50.zip"]).hexdigest() and record["extracted"]
    served = len(server.ranges)
    assert prepare(tmp_path) == 0  # a second run fetches nothing
    assert len(server.ranges) == served


def test_a_transfer_cut_half_way_resumes_where_it_stopped(server, tmp_path, monkeypatch):
    size = len(server.files["esc50.zip"])
    server.cut_next = 1  # the first response drops half-way; the automatic retry continues with Range
    assert prepare(tmp_path) == 0
    assert server.ranges == [f"bytes={size // 2}-"]

    other = tmp_path / "again"
    server.ranges.clear()
    server.cut_next = 10  # every try is cut: the command stops, keeping what it has
    monkeypatch.setattr(fetch, "transfer", _one_try(fetch.transfer))
    assert prepare(other) == 2
    part = other / "ESC-50-master.zip.part"
    assert part.stat().st_size == size // 2
    server.cut_next = 0
    assert prepare(other) == 0  # the rerun resumes from the kept half
    assert server.ranges[-1] == f"bytes={size // 2}-" and (other / "meta" / "esc50.csv").is_file()


def _one_try(transfer):
    def once(url, part, progress=True, attempts=4, timeout=60.0):
        return transfer(url, part, progress, attempts=1, timeout=timeout)

    return once


def test_a_corrupted_archive_is_named_with_both_sums_and_never_extracted(server, tmp_path, capsys):
    blob = bytearray(server.files["esc50.zip"])
    blob[len(blob) // 3] ^= 0xFF
    server.files["esc50.zip"] = bytes(blob)
    assert prepare(tmp_path) == 2
    err = capsys.readouterr().err
    actual = hashlib.sha256(bytes(blob)).hexdigest()
    expected = DATASETS.get("esc50").archives[0].checksum.split(":")[1]
    assert err.startswith(f"eastmir: error: ESC-50-master.zip: sha256 {actual} does not match the published {expected}")
    assert not (tmp_path / "ESC-50-master.zip").exists() and not (tmp_path / "meta").exists()


def test_an_archive_member_leaving_the_root_is_refused(tmp_path):
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("top/../../escaped.txt", "x")
    with pytest.raises(DownloadError, match="would land outside"):
        extract(evil, "zip", tmp_path / "dest", strip=1)
    assert not (tmp_path / "escaped.txt").exists()


def test_every_official_archive_has_a_url_and_a_licence():
    offered = {name: DATASETS.get(name).archives for name in DATASETS.names() if DATASETS.get(name).archives}
    for archives in offered.values():
        for a in archives:
            assert a.url.startswith("https://") and a.licence and a.filename
            assert a.checksum is None or a.checksum.split(":")[0] in ("md5", "sha1", "sha256")
    assert set(offered) == {"openmic", "magnatagatune", "esc50", "fma_small"}
