"""`cs336 download` against a local HTTP server on 127.0.0.1 that can misbehave on purpose.

The server serves files from a temp folder under the published names, supports
``Range``/``If-Range``, advertises size and SHA-256 the way the Hugging Face Hub
does (``X-Linked-Size``/``X-Linked-Etag`` on HEAD), and can be told to drop the
connection mid-transfer, corrupt bytes, answer 404/500, or send a fixed page
(``pages``: name -> (Content-Type, body)) such as an HTML error page with HTTP 200.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import json
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cs336_basics.datasets import DATASETS, copy_prefix, cut_after_last_delimiter, download_dataset
from cs336_basics.errors import UserError
from tests.conftest import run_cli

TS_TRAIN = DATASETS["tinystories"]["train"].filename
TS_VALID = DATASETS["tinystories"]["valid"].filename
OWT_TRAIN = DATASETS["owt"]["train"].filename


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass

    def _file(self) -> Path | None:
        name = self.path.lstrip("/").split("?")[0]
        path = self.server.root / name
        return path if path.is_file() else None

    def _begin(self, method: str) -> bytes | None:
        """Record the request; answer forced statuses and 404s; else return the file's bytes."""
        self.server.requests.append((method, self.path, self.headers.get("Range") if method == "GET" else None))
        code = self.server.status.get(self.path.lstrip("/"))
        if code is not None:
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        page = self.server.pages.get(self.path.lstrip("/"))
        if page is not None:  # a fixed answer (e.g. an error page sent with HTTP 200)
            content_type, body = page
            self.send_response(200)
            if content_type:
                self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if method == "GET":
                self.wfile.write(body)
            return None
        path = self._file()
        if path is None:
            self.send_error(404)
            return None
        return path.read_bytes()

    def do_HEAD(self):
        data = self._begin("HEAD")
        if data is None:
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Linked-Size", str(len(data)))
        if self.server.advertise_sha:
            self.send_header("X-Linked-Etag", '"' + hashlib.sha256(data).hexdigest() + '"')
        self.send_header("ETag", '"' + self.server.etag + '"')
        self.end_headers()

    def do_GET(self):
        rng = self.headers.get("Range")
        raw = self._begin("GET")
        if raw is None:
            return
        data = bytearray(raw)
        if self.server.corrupt_at is not None:
            data[self.server.corrupt_at] ^= 0xFF
        start, end = 0, len(data) - 1
        if_range = self.headers.get("If-Range")
        partial = rng is not None and not self.server.ignore_range and (
            if_range is None or if_range.strip('"') == self.server.etag)
        if partial:
            first, _, last = rng.removeprefix("bytes=").partition("-")
            start = int(first)
            end = min(int(last), len(data) - 1) if last else len(data) - 1
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        else:
            self.send_response(200)
        body = bytes(data[start:end + 1])
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", '"' + self.server.etag + '"')
        self.end_headers()
        if self.server.drops > 0 and len(body) > self.server.drop_after:
            self.server.drops -= 1
            self.wfile.write(body[: self.server.drop_after])
            self.wfile.flush()
            self.connection.shutdown(2)  # the client sees a short read: an interrupted transfer
            return
        self.wfile.write(body)


class LocalServer:
    def __init__(self, root: Path):
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.root = root
        self.httpd.requests = []
        self.httpd.status = {}
        self.httpd.pages = {}
        self.httpd.corrupt_at = None
        self.httpd.drops = 0
        self.httpd.drop_after = 0
        self.httpd.ignore_range = False
        self.httpd.advertise_sha = True
        self.httpd.etag = "v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __getattr__(self, name):
        return getattr(self.httpd, name)

    def set(self, **kwargs) -> None:
        for key, value in kwargs.items():
            setattr(self.httpd, key, value)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _corpus(n_docs: int = 300, seed: int = 0) -> bytes:
    import random

    rng = random.Random(seed)
    words = ["Once", "upon", "a", "time", "Lily", "saw", "a", "big", "dog", "café", "naïve", "happy", "ran", "home"]
    docs = [" ".join(rng.choice(words) for _ in range(rng.randint(20, 80))) + "." for _ in range(n_docs)]
    return "\n<|endoftext|>\n".join(docs).encode("utf-8")


@pytest.fixture
def served(tmp_path):
    root = tmp_path / "remote"
    root.mkdir()
    train, valid = _corpus(400, 1), _corpus(60, 2)
    (root / TS_TRAIN).write_bytes(train)
    (root / TS_VALID).write_bytes(valid)
    (root / OWT_TRAIN).write_bytes(gzip.compress(train))
    server = LocalServer(root)
    yield server, {"train": train, "valid": valid}
    server.close()


def test_full_download_verified_and_recorded(served, tmp_path):
    server, data = served
    out = download_dataset("tinystories", tmp_path / "data", base_url=server.url, retries=0)
    assert out["train"].read_bytes() == data["train"]
    assert out["valid"].read_bytes() == data["valid"]
    manifest = json.loads((tmp_path / "data" / "tinystories" / "downloads.json").read_text())
    assert manifest[TS_TRAIN]["sha256"] == hashlib.sha256(data["train"]).hexdigest()
    assert manifest[TS_TRAIN]["source_sha256"] == manifest[TS_TRAIN]["sha256"]
    # no temporary or partial files left behind
    assert sorted(p.name for p in (tmp_path / "data" / "tinystories").iterdir()) == sorted(
        [TS_TRAIN, TS_VALID, "downloads.json"])


def test_rerun_skips_finished_files(served, tmp_path):
    server, _ = served
    download_dataset("tinystories", tmp_path, base_url=server.url, splits=["valid"], retries=0)
    before = len(server.requests)
    download_dataset("tinystories", tmp_path, base_url=server.url, splits=["valid"], retries=0)
    assert len(server.requests) == before


def test_dropped_connection_is_resumed_with_range(served, tmp_path):
    server, data = served
    server.set(drops=2, drop_after=5000)
    out = download_dataset("tinystories", tmp_path, base_url=server.url, splits=["train"], retries=3)
    assert out["train"].read_bytes() == data["train"]
    ranges = [r for method, _, r in server.requests if method == "GET"]
    assert ranges == [None, "bytes=5000-", "bytes=10000-"]


def test_interrupted_run_resumes_on_the_next_invocation(served, tmp_path):
    server, data = served
    server.set(drops=1, drop_after=7000)
    with pytest.raises(UserError, match="rerun the same command to resume"):
        download_dataset("tinystories", tmp_path, base_url=server.url, splits=["train"], retries=0)
    part = tmp_path / "tinystories" / f".{TS_TRAIN}.part"
    assert part.stat().st_size == 7000
    assert not (tmp_path / "tinystories" / TS_TRAIN).exists()  # nothing placed from a partial transfer
    out = download_dataset("tinystories", tmp_path, base_url=server.url, splits=["train"], retries=0)
    assert out["train"].read_bytes() == data["train"]
    assert server.requests[-1] == ("GET", f"/{TS_TRAIN}", "bytes=7000-")
    assert not part.exists()


def test_changed_remote_file_restarts_instead_of_splicing(served, tmp_path):
    server, data = served
    server.set(drops=1, drop_after=7000)
    with pytest.raises(UserError):
        download_dataset("tinystories", tmp_path, base_url=server.url, splits=["train"], retries=0)
    new = data["train"].replace(b"Lily", b"Lucy")
    (server.root / TS_TRAIN).write_bytes(new)
    server.set(etag="v2")
    out = download_dataset("tinystories", tmp_path, base_url=server.url, splits=["train"], retries=0)
    assert out["train"].read_bytes() == new


def test_corrupted_transfer_is_detected_and_not_placed(served, tmp_path):
    server, _ = served
    server.set(corrupt_at=1234)
    with pytest.raises(UserError, match="checksum mismatch"):
        download_dataset("tinystories", tmp_path, base_url=server.url, splits=["train"], retries=0)
    folder = tmp_path / "tinystories"
    assert not (folder / TS_TRAIN).exists()
    assert not (folder / f".{TS_TRAIN}.part").exists()


def test_server_ignoring_range_restarts_from_zero(served, tmp_path):
    server, data = served
    server.set(drops=1, drop_after=3000)
    with pytest.raises(UserError):
        download_dataset("tinystories", tmp_path, base_url=server.url, splits=["train"], retries=0)
    server.set(ignore_range=True)
    out = download_dataset("tinystories", tmp_path, base_url=server.url, splits=["train"], retries=0)
    assert out["train"].read_bytes() == data["train"]


@pytest.mark.parametrize("code,message", [(404, "HTTP 404 Not Found"), (500, "server error HTTP 500")])
def test_server_errors_are_one_line_user_errors(served, tmp_path, code, message):
    server, _ = served
    server.status[TS_VALID] = code
    with pytest.raises(UserError, match=message) as exc:
        download_dataset("tinystories", tmp_path, base_url=server.url, splits=["valid"], retries=1)
    assert "\n" not in str(exc.value)


def test_prefix_is_cut_after_last_delimiter(served, tmp_path):
    server, data = served
    out = download_dataset("tinystories", tmp_path, base_url=server.url, splits=["train"], max_bytes=10_000)
    text = out["train"].read_bytes()
    assert len(text) <= 10_000
    assert text.endswith(b"<|endoftext|>")
    assert data["train"].startswith(text)
    text.decode("utf-8")
    gets = [r for m, _, r in server.requests if m == "GET"]
    assert gets == ["bytes=0-9999"]  # only the prefix crossed the wire
    # a different prefix size is not "up to date"; the full file replaces the prefix
    out = download_dataset("tinystories", tmp_path, base_url=server.url, splits=["train"])
    assert out["train"].read_bytes() == data["train"]
    # a limit beyond the file's size keeps it whole (its last story included) and verifies it
    out = download_dataset("tinystories", tmp_path / "big", base_url=server.url, splits=["train"], max_bytes=10**9)
    assert out["train"].read_bytes() == data["train"]


def test_gz_is_decompressed_and_prefix_streams(served, tmp_path):
    server, data = served
    out = download_dataset("owt", tmp_path / "a", base_url=server.url, splits=["train"])
    assert out["train"].name == "owt_train.txt"
    assert out["train"].read_bytes() == data["train"]
    assert not list((tmp_path / "a" / "owt").glob("*.gz*"))
    out = download_dataset("owt", tmp_path / "b", base_url=server.url, splits=["train"], max_bytes=5_000)
    prefix = out["train"].read_bytes()
    assert len(prefix) <= 5_000 and prefix.endswith(b"<|endoftext|>") and data["train"].startswith(prefix)


def test_from_dir_offline_copy_with_prefix(served, tmp_path):
    server, data = served
    server.close()  # nothing may be fetched
    out = download_dataset("tinystories", tmp_path / "d", from_dir=server.root, max_bytes=4_000)
    assert data["valid"].startswith(out["valid"].read_bytes())
    out = download_dataset("owt", tmp_path / "d", from_dir=server.root, splits=["train"])
    assert out["train"].read_bytes() == data["train"]
    with pytest.raises(UserError, match="neither owt_valid.txt.gz nor owt_valid.txt"):
        download_dataset("owt", tmp_path / "d", from_dir=server.root, splits=["valid"])


def test_verify_detects_local_damage(served, tmp_path):
    server, _ = served
    out = download_dataset("tinystories", tmp_path, base_url=server.url, splits=["valid"])
    damaged = bytearray(out["valid"].read_bytes())
    damaged[10] ^= 1
    out["valid"].write_bytes(bytes(damaged))
    with pytest.raises(UserError, match="does not match its recorded checksum"):
        download_dataset("tinystories", tmp_path, base_url=server.url, splits=["valid"], verify=True)


def test_bad_arguments():
    with pytest.raises(UserError, match="unknown dataset"):
        download_dataset("wikipedia")
    with pytest.raises(UserError, match="unknown split"):
        download_dataset("owt", splits=["test"])


def test_cut_without_delimiter_errors(tmp_path):
    path = tmp_path / "x.txt"
    path.write_bytes(b"no delimiter here")
    with pytest.raises(UserError, match="larger --max-bytes"):
        cut_after_last_delimiter(path)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet="ab<|é\n", max_size=30), min_size=1, max_size=8), st.integers(14, 400))
def test_copy_prefix_matches_oracle(tmp_path_factory, docs, limit):
    """Oracle: the longest prefix of the first ``limit`` bytes ending with the delimiter."""
    src = tmp_path_factory.mktemp("p") / "src.txt"
    data = "<|endoftext|>".join(docs).encode("utf-8")
    src.write_bytes(data)
    dst = src.with_name("dst.txt")
    head = data[:limit]
    if limit >= len(data):
        expected = data
    else:
        idx = head.rfind(b"<|endoftext|>")
        expected = None if idx < 0 else head[: idx + len(b"<|endoftext|>")]
    if expected is None:
        with pytest.raises(UserError):
            copy_prefix(src, dst, limit)
    else:
        assert copy_prefix(src, dst, limit).read_bytes() == expected


def test_cli_download_against_local_server(served, tmp_path):
    server, data = served
    proc = run_cli("download", "tinystories", "--dest", str(tmp_path), "--split", "valid", "--max-bytes", "3K",
                   env={"CS336_DATASET_BASE_URL": server.url})
    assert proc.returncode == 0, proc.stderr
    path = Path(proc.stdout.split("\t")[1].strip())
    assert data["valid"].startswith(path.read_bytes())
    server.status[TS_TRAIN] = 404
    proc = run_cli("download", "tinystories", "--dest", str(tmp_path), "--split", "train", "--base-url", server.url)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "404" in proc.stderr and "Traceback" not in proc.stderr


def test_real_tinystories_served_locally(tmp_path, tinystories_valid):
    """The TinyStories fixture through the whole path: served, resumed after a drop, verified."""
    src = tinystories_valid
    root = tmp_path / "remote"
    root.mkdir()
    (root / TS_VALID).write_bytes(src.read_bytes())
    server = LocalServer(root)
    try:
        server.set(drops=1, drop_after=300_000)
        out = download_dataset("tinystories", tmp_path / "data", base_url=server.url, splits=["valid"], retries=2)
        assert out["valid"].read_bytes() == src.read_bytes()
    finally:
        server.close()
