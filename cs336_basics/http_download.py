"""Resumable, retrying HTTP downloads into a ``.part`` file, with only :mod:`urllib`.

- ``probe(url)``: a HEAD that does not follow redirects, because the Hugging Face Hub
  puts the size and SHA-256 of large (LFS) files on the redirect (``X-Linked-Size``,
  ``X-Linked-Etag``), not on the CDN answer behind it.
- ``fetch(url, part, ...)``: appends to ``part`` what it lacks, with
  ``Range: bytes=N-`` and ``If-Range: <ETag or Last-Modified of the bytes we hold>``
  (RFC 9110), so a server whose file changed answers 200 and the download restarts
  from zero instead of splicing two versions. Dropped connections and 5xx answers are
  retried with exponential backoff, each retry continuing where the last stopped.
  A server that ignores ``Range`` (200 instead of 206) is handled by restarting.
- Errors are one-line :class:`UserError` messages saying what to do (404: check
  the name or mirror; 5xx: try later, bytes are kept).
- What arrives is checked: an answer that is an error page (an HTML or JSON
  Content-Type, or a body starting like ``<!DOCTYPE``, ``<html`` or ``{"error"``)
  or an empty body is refused before anything is kept, since a data file is never
  one. A full disk while writing is :class:`DiskFullError` at once, not a dropped
  connection to retry; the bytes already in the ``.part`` file stay for a resume.

urllib keeps the ``Range`` header across redirects, which is all the Hub's CDN needs.
"""

from __future__ import annotations

import http.client
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cs336_basics.errors import UserError, disk_full_is_user_error
from cs336_basics.progress import byte_progress

CHUNK = 1 << 20
USER_AGENT = "cs336_basics-downloader/1"
NETWORK_ERRORS = (urllib.error.URLError, socket.timeout, ConnectionError, http.client.HTTPException)
ERROR_PAGE_TYPES = ("text/html", "application/xhtml+xml", "application/json", "application/problem+json")
ERROR_PAGE_STARTS = (b"<!doctype", b"<html", b"<?xml", b"<head", b"<body")
JSON_ERROR_START = re.compile(rb'^\{\s*"(error|errors|message|detail)"\s*:')
KEEP_PART = "free space and rerun the same command to resume (the bytes downloaded so far are kept)"


class NetworkError(UserError):
    """The server could not be reached or the connection kept dropping (as opposed to a bad answer)."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason or message
        """The cause alone, e.g. 'cannot connect to huggingface.co:443: Name or service not known'."""


def unreachable_reason(url: str, timeout: float = 10.0) -> str | None:
    """Why ``url``'s host (or the proxy for its scheme) cannot be reached by TCP; None when it can.

    One quick connection instead of a retried download: without a network a download would
    otherwise spend its whole retry schedule before saying so.
    """
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https"):
        return None
    proxy = urllib.request.getproxies().get(parsed.scheme)
    if proxy and not urllib.request.proxy_bypass(parsed.hostname or ""):
        parsed = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((parsed.hostname, port), timeout=timeout).close()
    except OSError as exc:
        return f"cannot connect to {parsed.hostname}:{port}: {getattr(exc, 'strerror', None) or exc}"
    return None


def is_sha256(text: str | None) -> bool:
    return bool(text) and len(text) == 64 and all(c in "0123456789abcdef" for c in text.lower())


@dataclass
class RemoteInfo:
    """What a HEAD request told us about a URL (all optional: servers differ)."""

    size: int | None = None
    sha256: str | None = None
    validator: str | None = None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: D401 - urllib API
        return None


def error_page_reason(content_type: str | None, head: bytes) -> str | None:
    """Why an answer looks like an error page rather than a data file (``head``: its first bytes), or None."""
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind in ERROR_PAGE_TYPES:
        return f"Content-Type {kind}"
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n")[:64]
    if start.lower().startswith(ERROR_PAGE_STARTS) or JSON_ERROR_START.match(start):
        return f"a body starting with {start[:20].decode('utf-8', 'replace')!r}"
    return None


def refuse_error_page(url: str, reason: str) -> UserError:
    return UserError(f"download failed: {url} answered with an error page ({reason}), not the data file; nothing "
                     "was kept: check the URL (--base-url) or download the file by hand and use --from-dir")


def http_error(url: str, exc: urllib.error.HTTPError) -> UserError:
    if exc.code == 404:
        return UserError(f"download failed: HTTP 404 Not Found for {url}; check the dataset name or --base-url")
    if exc.code in (401, 403):
        return UserError(f"download failed: HTTP {exc.code} {exc.reason} for {url}; the file is not public here, "
                         "download it by hand and use --from-dir")
    return UserError(f"download failed: server error HTTP {exc.code} {exc.reason} for {url}; try again later "
                     "(completed bytes are kept and resumed)")


def probe(url: str, timeout: float = 30.0) -> RemoteInfo:
    """HEAD ``url`` without following redirects: the Hub puts size and SHA-256 of LFS files on the redirect."""
    opener = urllib.request.build_opener(_NoRedirect)
    request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": USER_AGENT,
                                                                  "Accept-Encoding": "identity"})
    try:
        response = opener.open(request, timeout=timeout)
        headers = response.headers
        response.close()
    except urllib.error.HTTPError as exc:
        if 300 <= exc.code < 400:
            headers = exc.headers
        elif exc.code in (404, 401, 403):
            raise http_error(url, exc) from exc
        else:
            return RemoteInfo()  # HEAD unsupported or flaky: the GET will tell
    except (urllib.error.URLError, OSError, http.client.HTTPException):
        return RemoteInfo()
    linked_size = headers.get("X-Linked-Size")
    length = headers.get("Content-Length")
    size = int(linked_size) if linked_size and linked_size.isdigit() else None
    if size is None and length and length.isdigit() and not headers.get("Location"):
        size = int(length)
    # Only the Hub's X-Linked-Etag is known to be the content's SHA-256; a plain ETag is opaque.
    linked = (headers.get("X-Linked-Etag") or "").strip().removeprefix("W/").strip('"')
    sha = linked.lower() if is_sha256(linked) else None
    validator = headers.get("X-Linked-Etag") or headers.get("ETag") or headers.get("Last-Modified")
    return RemoteInfo(size=size, sha256=sha, validator=validator)


class _Interrupted(Exception):
    """The connection dropped mid-transfer; the bytes so far are in the .part file."""


def _parse_content_range(value: str | None) -> tuple[int, int | None] | None:
    """``bytes START-END/TOTAL`` -> (START, TOTAL or None)."""
    if not value or not value.startswith("bytes "):
        return None
    span, _, total = value[len("bytes "):].partition("/")
    start = span.split("-")[0]
    if not start.isdigit():
        return None
    return int(start), int(total) if total.isdigit() else None


@dataclass
class _Transfer:
    """State shared by the attempts of one download."""

    url: str
    part: Path
    end: int | None
    total: int | None
    validator: str | None
    """If-Range value: the strong ETag (or Last-Modified) the server sent with the bytes we hold."""
    on_validator: Callable[[str | None], None] | None = None

    def set_total(self, value: int | None) -> int | None:
        if value is not None:
            if self.total is not None and value != self.total:
                self.part.unlink(missing_ok=True)
                raise UserError(f"download failed: {self.url} is {value} bytes but {self.total} were expected; "
                                "the published file changed or --base-url points elsewhere")
            self.total = value
        return self.total

    def remember_validator(self, headers) -> None:
        etag = headers.get("ETag")
        # a weak ETag may not be used in If-Range (RFC 9110 13.1.5); Last-Modified may
        value = etag if etag and not etag.startswith("W/") else headers.get("Last-Modified")
        if value != self.validator:
            self.validator = value
            if self.on_validator is not None:
                self.on_validator(value)


def _read(response, size: int) -> bytes:
    """Up to ``size`` bytes of the answer; a failing connection is _Interrupted (the caller retries)."""
    try:
        return response.read(size)
    except (socket.timeout, ConnectionError, http.client.HTTPException, OSError) as exc:
        raise _Interrupted(str(exc)) from exc


def _fetch_once(t: _Transfer, timeout: float, bar) -> None:
    """One GET appending to the part file up to byte ``t.end`` (or the end); raises _Interrupted on a drop."""
    have = t.part.stat().st_size if t.part.exists() else 0
    if t.end is not None and have >= t.end:
        return
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if have or t.end is not None:
        headers["Range"] = f"bytes={have}-" + (str(t.end - 1) if t.end is not None else "")
        if have and t.validator:
            headers["If-Range"] = t.validator
    try:
        response = urllib.request.urlopen(urllib.request.Request(t.url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:
            return  # nothing left to send: the part file already holds the whole file
        if exc.code >= 500 or exc.code == 429:
            raise _Interrupted(f"HTTP {exc.code}") from http_error(t.url, exc)
        raise http_error(t.url, exc) from exc
    except NETWORK_ERRORS as exc:
        raise _Interrupted(str(getattr(exc, "reason", exc))) from exc
    with response:
        if response.status == 206:
            parsed = _parse_content_range(response.headers.get("Content-Range"))
            if parsed is None or parsed[0] != have:
                raise UserError(f"download failed: {t.url} answered a range request with a wrong Content-Range; "
                                "delete the .part file and retry")
            total = t.set_total(parsed[1])
            mode = "ab"
        else:  # 200: the server ignored Range, or the file changed (If-Range): restart from zero
            bar.reset(total=bar.total)
            have = 0
            length = response.headers.get("Content-Length")
            total = t.set_total(int(length) if length and length.isdigit() else None)
            mode = "wb"
        content_type = response.headers.get("Content-Type")
        reason = error_page_reason(content_type, b"")
        if reason is not None:
            raise refuse_error_page(t.url, reason)
        t.remember_validator(response.headers)
        limit = t.end if total is None else (total if t.end is None else min(t.end, total))
        remaining = None if limit is None else limit - have
        first = _read(response, CHUNK if remaining is None else min(CHUNK, remaining))
        if have == 0:
            reason = error_page_reason(content_type, first)
            if reason is not None:
                raise refuse_error_page(t.url, reason)
        with disk_full_is_user_error(t.part, KEEP_PART), open(t.part, mode) as out:
            chunk = first
            while chunk:
                out.write(chunk)
                bar.update(len(chunk))
                if remaining is not None:
                    remaining -= len(chunk)
                    if remaining <= 0:
                        break
                chunk = _read(response, CHUNK if remaining is None else min(CHUNK, remaining))
    if remaining is not None and remaining > 0:
        raise _Interrupted(f"connection closed with {remaining} bytes missing")


def fetch(url: str, part: Path, *, end: int | None = None, expected_size: int | None = None,
          retries: int = 5, timeout: float = 60.0, validator: str | None = None,
          on_validator: Callable[[str | None], None] | None = None, desc: str = "") -> int | None:
    """Download ``url`` (bytes ``[0, end)`` when ``end`` is set) into ``part``, resuming what it already holds.

    ``validator`` is the ETag/Last-Modified that came with the bytes already in ``part`` (sent as
    If-Range); ``on_validator`` is told each new one so a later process can resume safely.
    Returns the full size of the remote file when the server told it.
    Dropped connections and 5xx answers are retried ``retries`` times with backoff; each retry
    continues from the bytes already written. Raises UserError when it gives up (the part stays).
    """
    t = _Transfer(url, part, end, expected_size, validator, on_validator)
    have = part.stat().st_size if part.exists() else 0
    bar_total = min(end, expected_size) if end is not None and expected_size else (end or expected_size)
    with byte_progress(bar_total, desc or part.name) as bar:
        bar.update(have)
        attempt = 0
        while True:
            try:
                _fetch_once(t, timeout, bar)
                break
            except _Interrupted as exc:
                attempt += 1
                if attempt > retries:
                    cause = exc.__cause__
                    if isinstance(cause, UserError):
                        raise cause from None
                    raise NetworkError(f"download of {url} interrupted ({exc}) after {retries} retries; "
                                       "rerun the same command to resume", f"interrupted: {exc}") from None
                time.sleep(min(2.0 ** (attempt - 1) * 0.5, 10.0))
    size = part.stat().st_size if part.exists() else 0
    if size == 0:
        part.unlink(missing_ok=True)
        raise UserError(f"download failed: {url} sent an empty file; check the URL (--base-url) or download the file "
                        "by hand and use --from-dir")
    want = t.total if end is None else (end if t.total is None else min(end, t.total))
    if want is not None and size != want:
        part.unlink(missing_ok=True)
        raise UserError(f"download of {url} is {size} bytes but {want} were expected; the transfer was corrupted, "
                        "rerun the command to download it again")
    return t.total




def open_stream(url: str, timeout: float = 60.0):
    """A plain GET response to read from (for streams that cannot resume, such as a gzip prefix)."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"})
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        raise http_error(url, exc) from exc
    except NETWORK_ERRORS as exc:
        reason = str(getattr(exc, "reason", exc))
        raise NetworkError(f"download of {url} failed ({reason}); check the network and rerun", reason) from exc
