"""A local server on 127.0.0.1 that speaks the part of the Hugging Face Hub's resolve API the client uses.

``HEAD`` and ``GET /{datasets/}{owner}/{name}/resolve/{revision}/{path}`` answer the way the Hub
does for a large (LFS) file: ``X-Repo-Commit``, ``X-Linked-Size``, ``X-Linked-Etag`` (the
SHA-256) and ``ETag`` on ``HEAD``; ``Range`` on ``GET`` (206 and ``Content-Range``); refusals
with the ``X-Error-Code`` the client turns into its exceptions (``RepoNotFound``,
``EntryNotFound``, ``GatedRepo``, ``RevisionNotFound``). The files are the ones in a folder,
under their names, in every repository it knows.

It can misbehave on purpose: ``token`` (a gated repository: 401 without
``Authorization: Bearer TOKEN``), ``fail`` (name -> HTTP status for ``GET``), ``pages`` (name ->
(Content-Type, body) served as if it were the file, e.g. an HTML error page), ``corrupt_at``
(a flipped byte in every ``GET``), ``drops``/``drop_after`` (close the connection after that many
bytes of a body, that many times), ``ignore_range``, ``advertise_sha=False`` (a git-style ETag
instead of the SHA-256). With ``cdn=True`` it answers a file's resolve URL as the Hub does for
large files, with a redirect (302, the file's headers on it) to a storage host:
``http://localhost:PORT/cdn/SHA256``, the same server under another host name, which never
asks for a token. ``requests`` records every request (method, path, Range,
Authorization). The server stops itself after ``lifetime`` seconds whatever happens.

The client is pointed at it through ``HF_ENDPOINT``, as a mirror would be: :func:`hub_env` for
a subprocess (the client reads its settings at import), :func:`use_hub` for this process.
"""

from __future__ import annotations

import hashlib
import http.server
import re
import threading
from pathlib import Path
from typing import NamedTuple
from urllib.parse import unquote

from huggingface_hub import constants

COMMIT = "c0ffee00" * 5
RESOLVE = re.compile(r"^/(?:datasets/)?(?P<repo>[^/]+/[^/]+)/resolve/(?P<revision>[^/]+)/(?P<path>[^?]+)")
REPOS = ("roneneldan/TinyStories", "stanford-cs336/owt-sample")


class Request(NamedTuple):
    method: str
    path: str
    range: str | None
    authorization: str | None


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass

    def _refuse(self, code: int, error_code: str | None = None, message: str = "") -> None:
        self.send_response(code)
        if error_code:
            self.send_header("X-Error-Code", error_code)
            self.send_header("X-Error-Message", message)
            self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _resolve(self, method: str) -> tuple[bytes, str] | None:
        """Record the request and answer refusals; else the file's bytes and Content-Type."""
        srv = self.server
        srv.requests.append(Request(method, self.path, self.headers.get("Range"), self.headers.get("Authorization")))
        found = RESOLVE.match(self.path)
        if found is None:
            self._refuse(404)
            return None
        if found["repo"] not in srv.repos:
            self._refuse(404, "RepoNotFound", "Repository not found")
            return None
        if srv.token is not None and self.headers.get("Authorization") != f"Bearer {srv.token}":
            self._refuse(401, "GatedRepo", f"Access to dataset {found['repo']} is restricted. You must have access "
                                           "to it and be authenticated to access it. Please log in.")
            return None
        if found["revision"] not in ("main", COMMIT):
            self._refuse(404, "RevisionNotFound", "Invalid rev id")
            return None
        name = unquote(found["path"])
        if name in srv.pages:
            content_type, body = srv.pages[name]
            return body, content_type
        path = srv.root / name
        if not path.is_file():
            self._refuse(404, "EntryNotFound", "Entry not found")
            return None
        if method == "GET" and name in srv.fail:
            self._refuse(srv.fail[name])
            return None
        return path.read_bytes(), "text/plain; charset=utf-8"

    def _redirect_to_cdn(self, data: bytes) -> None:
        self.send_response(302)
        self.send_header("Location", f"http://localhost:{self.server.server_address[1]}/cdn/{self._etag(data)}")
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("X-Linked-Size", str(len(data)))
        self.send_header("X-Linked-Etag", f'"{self._etag(data)}"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _cdn(self, method: str) -> tuple[bytes, str] | None:
        """A file by its SHA-256, as a storage host serves it (no token asked for)."""
        srv = self.server
        srv.requests.append(Request(method, self.path, self.headers.get("Range"), self.headers.get("Authorization")))
        wanted = self.path.removeprefix("/cdn/")
        for path in srv.root.iterdir():
            if path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == wanted:
                return path.read_bytes(), "application/octet-stream"
        self._refuse(404)
        return None

    def _answer(self, method: str) -> tuple[bytes, str] | None:
        if self.path.startswith("/cdn/"):
            return self._cdn(method)
        answer = self._resolve(method)
        if answer is not None and self.server.cdn:
            self._redirect_to_cdn(answer[0])
            return None
        return answer

    def _etag(self, data: bytes) -> str:
        if self.server.advertise_sha:
            return hashlib.sha256(data).hexdigest()
        return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()  # what the Hub sends for a git file

    def do_HEAD(self):
        answer = self._answer("HEAD")
        if answer is None:
            return
        data, content_type = answer
        self.send_response(200)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("ETag", f'"{self._etag(data)}"')
        if self.server.advertise_sha:
            self.send_header("X-Linked-Size", str(len(data)))
            self.send_header("X-Linked-Etag", f'"{self._etag(data)}"')
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()

    def do_GET(self):
        answer = self._answer("GET")
        if answer is None:
            return
        raw, content_type = answer
        data = bytearray(raw)
        if self.server.corrupt_at is not None and self.server.corrupt_at < len(data):
            data[self.server.corrupt_at] ^= 0xFF
        start, end = 0, len(data) - 1
        rng = self.headers.get("Range")
        if rng is not None and not self.server.ignore_range:
            first, _, last = rng.removeprefix("bytes=").partition("-")
            start = int(first)
            end = min(int(last), len(data) - 1) if last else len(data) - 1
            if start >= len(data):
                self._refuse(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        else:
            self.send_response(200)
        body = bytes(data[start:end + 1])
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", f'"{self._etag(raw)}"')
        self.end_headers()
        if self.server.drops > 0 and len(body) > self.server.drop_after:
            self.server.drops -= 1
            self.wfile.write(body[: self.server.drop_after])
            self.wfile.flush()
            self.connection.shutdown(2)  # the client sees a short body: an interrupted transfer
            return
        self.wfile.write(body)


class LocalServer:
    """The Hub-speaking server on an ephemeral port of 127.0.0.1, serving the files in ``root``."""

    def __init__(self, root: Path, lifetime: float = 120.0):
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.set(root=root, repos=set(REPOS), requests=[], fail={}, pages={}, token=None, corrupt_at=None, drops=0,
                 drop_after=0, ignore_range=False, advertise_sha=True, cdn=False)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self._stop = threading.Timer(lifetime, self.close)
        self._stop.daemon = True
        self._stop.start()
        self._closed = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __getattr__(self, name):
        return getattr(self.httpd, name)

    def set(self, **kwargs) -> None:
        for key, value in kwargs.items():
            setattr(self.httpd, key, value)

    def resolves(self) -> list[Request]:
        """The requests for files so far (the client may also ask ``/api/...`` things of its own)."""
        return [r for r in self.httpd.requests if "/resolve/" in r.path]

    def from_cdn(self) -> list[Request]:
        """The requests the storage host got (``cdn=True``)."""
        return [r for r in self.httpd.requests if r.path.startswith("/cdn/")]

    def gets(self) -> list[str | None]:
        """The Range header of every GET of a file so far (None: the whole file)."""
        return [r.range for r in self.resolves() if r.method == "GET"]

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.cancel()
        self.httpd.shutdown()
        self.httpd.server_close()


def corpus(n_docs: int = 300, seed: int = 0) -> bytes:
    """Stories separated by <|endoftext|>, with a few multi-byte characters."""
    import random

    rng = random.Random(seed)
    words = ["Once", "upon", "a", "time", "Lily", "saw", "a", "big", "dog", "café", "naïve", "happy", "ran", "home"]
    docs = [" ".join(rng.choice(words) for _ in range(rng.randint(20, 80))) + "." for _ in range(n_docs)]
    return "\n<|endoftext|>\n".join(docs).encode("utf-8")


def hub_env(endpoint: str, home: Path, **extra: str) -> dict[str, str]:
    """The environment of a subprocess whose Hub client talks to ``endpoint`` and caches under ``home``
    (no token, not offline, whatever this machine's own settings are)."""
    return {"HF_ENDPOINT": endpoint, "HF_HOME": str(home), "HF_HUB_CACHE": str(home / "hub"), "HF_TOKEN": "",
            "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_TELEMETRY": "1", **extra}


def use_hub(monkeypatch, endpoint: str, home: Path) -> Path:
    """The same settings for the client already imported in this process (it read its environment at import);
    returns the Hub cache folder."""
    for key, value in hub_env(endpoint, home).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(home / "token"))
    return home / "hub"


def cached_blobs(cache: Path) -> list[Path]:
    """Every blob in a Hub cache folder (complete or not)."""
    return sorted(p for p in cache.glob("*/blobs/*") if p.is_file())
