"""Files on the Hugging Face Hub, fetched through its client, ``huggingface_hub``.

What Hub users configure applies here as it does for ``datasets`` and ``transformers``:
``HF_ENDPOINT`` (a mirror), ``HF_TOKEN`` or ``hf auth login`` (gated and private
repositories), ``HF_HUB_OFFLINE``, the shared cache (``HF_HOME`` / ``HF_HUB_CACHE``) and
the client's transfer backends.

- :func:`fetch_file`: a whole file through ``hf_hub_download``. It lands in the Hub cache,
  or is found there and not fetched again; the client resumes a dropped connection from
  the bytes it kept. Its SHA-256 is then checked against the one the Hub published (the
  ETag of an LFS file, which the cache also uses as the blob's name); a file that fails is
  removed from the cache (:func:`evict`), so it is never served again.
- :func:`read_prefix`: the start of a file, written to a file-like sink through the
  client's transfer function (its headers and token, its retries that resume with
  ``Range``): a ranged GET for the first ``length`` bytes, or a stream that the sink ends
  by raising :class:`Enough` (a gzip file is read until enough text came out of it).
- :func:`cached_file` finds a whole file already in the Hub cache without any request;
  :func:`file_metadata` asks the Hub for a file's size and commit (one HEAD).
- :func:`client_errors` turns the client's exceptions into one-line :class:`UserError`
  messages that name the fix: gated -> set ``HF_TOKEN``; offline and not cached -> unset
  ``HF_HUB_OFFLINE`` or use ``--from-dir``; unreachable -> :class:`NetworkError`, which the
  quickstart answers with its bundled sample.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import httpx2  # huggingface_hub's HTTP transport: its network errors reach us unwrapped
from huggingface_hub import constants, get_hf_file_metadata, hf_hub_download, hf_hub_url, try_to_load_from_cache
from huggingface_hub.errors import (FileMetadataError, GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError,
                                    OfflineModeIsEnabled, RemoteEntryNotFoundError, RepositoryNotFoundError,
                                    RevisionNotFoundError)
from huggingface_hub.file_download import HfFileMetadata, http_get
from huggingface_hub.utils import build_hf_headers

from cs336_basics.errors import UserError, disk_full_is_user_error, is_disk_full
from cs336_basics.fileio import sha256_file
from cs336_basics.progress import ByteBar, SilentBar

BY_HAND = "or download the file by hand and use --from-dir"
CACHE_FULL_FIX = "free space there (or point HF_HUB_CACHE at a disk with room) and rerun the same command"


class NetworkError(UserError):
    """The Hub could not be reached, or the transfer kept failing (as opposed to a bad answer)."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason or message
        """The cause alone, e.g. 'cannot reach https://huggingface.co: [Errno -2] Name or service not known'."""


class Enough(Exception):
    """Raised by a prefix sink that holds all it wants: it ends the transfer early and is not an error."""


@dataclass(frozen=True)
class HubFile:
    """A file in a repository on the Hub."""

    repo_id: str
    filename: str
    repo_type: str = "dataset"
    revision: str = "main"

    @property
    def url(self) -> str:
        """Its resolve URL on the endpoint the client uses (``HF_ENDPOINT``)."""
        return hf_hub_url(self.repo_id, self.filename, repo_type=self.repo_type, revision=self.revision)


def is_sha256(text: str | None) -> bool:
    return bool(text) and len(text) == 64 and all(c in "0123456789abcdef" for c in text.lower())


def _endpoint() -> str:
    return constants.ENDPOINT


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _status(exc: HfHubHTTPError) -> str:
    return str(getattr(exc.response, "status_code", "?"))


def offline_error(f: HubFile) -> NetworkError:
    reason = f"HF_HUB_OFFLINE is set and {f.filename} is not in the Hub cache"
    return NetworkError(f"{reason} ({constants.HF_HUB_CACHE}); unset HF_HUB_OFFLINE to download it, {BY_HAND}", reason)


def _not_the_hub(f: HubFile) -> NetworkError:
    reason = f"{_endpoint()} does not answer like the Hugging Face Hub (no X-Repo-Commit or ETag for {f.url})"
    return NetworkError(f"download failed: {reason}; check HF_ENDPOINT and the proxy settings, {BY_HAND}", reason)


def _unreachable(f: HubFile, cause: BaseException) -> UserError:
    if isinstance(cause, FileMetadataError):
        return _not_the_hub(f)
    if isinstance(cause, HfHubHTTPError):
        return _http_error(f, cause)
    reason = f"cannot reach {_endpoint()}: {_first_line(cause)}"
    return NetworkError(f"download of {f.url} failed ({reason}); check the network (or HF_ENDPOINT) and rerun, "
                        f"{BY_HAND}", reason)


def _http_error(f: HubFile, exc: HfHubHTTPError) -> UserError:
    code = _status(exc)
    if code == "404":
        return UserError(f"download failed: HTTP 404 Not Found for {f.url}; check the dataset name or HF_ENDPOINT")
    if code in ("401", "403"):
        return UserError(f"download failed: HTTP {code} for {f.url}; the file is not public there: set HF_TOKEN to a "
                         f"token with access (or run 'hf auth login'), {BY_HAND}")
    if code == "429" or code.startswith("5"):
        return UserError(f"download failed: server error HTTP {code} for {f.url}; try again later")
    return UserError(f"download failed: HTTP {code} for {f.url} ({_first_line(exc)})")


@contextmanager
def client_errors(f: HubFile) -> Iterator[None]:
    """Turn huggingface_hub's exceptions inside the block into one-line UserErrors that name the fix."""
    try:
        yield
    except UserError:
        raise
    except GatedRepoError as exc:
        raise UserError(f"download failed: {f.repo_id} is a gated repository and {_endpoint()} refused this request "
                        f"(HTTP {_status(exc)}); accept its conditions on the repository's page, then set HF_TOKEN to "
                        "a token of that account (or run 'hf auth login') and rerun") from exc
    except RepositoryNotFoundError as exc:
        raise UserError(f"download failed: repository {f.repo_id} not found at {_endpoint()} (HTTP {_status(exc)}); "
                        "check HF_ENDPOINT, or set HF_TOKEN if the repository is private") from exc
    except RevisionNotFoundError as exc:
        raise UserError(f"download failed: revision {f.revision} of {f.repo_id} not found at {_endpoint()}; "
                        "check HF_ENDPOINT") from exc
    except RemoteEntryNotFoundError as exc:
        raise UserError(f"download failed: HTTP 404 Not Found for {f.url}: {f.repo_id} has no {f.filename} there; "
                        f"check HF_ENDPOINT (a mirror may lack the file), {BY_HAND}") from exc
    except OfflineModeIsEnabled as exc:
        raise offline_error(f) from exc
    except LocalEntryNotFoundError as exc:
        if constants.is_offline_mode():
            raise offline_error(f) from exc
        raise _unreachable(f, exc.__cause__ or exc) from exc
    except HfHubHTTPError as exc:
        raise _http_error(f, exc) from exc
    except httpx2.TransportError as exc:
        reason = f"interrupted: {_first_line(exc)}"
        raise NetworkError(f"download of {f.url} failed ({reason}) after the Hub client's retries; check the network "
                           "and rerun the same command", reason) from exc
    except OSError as exc:
        if is_disk_full(exc):
            raise
        raise UserError(f"download of {f.url} failed: {_first_line(exc)}; rerun the command") from exc


def cached_file(f: HubFile) -> Path | None:
    """The whole file in the Hub cache, as the client would use it offline; None when it is not there."""
    found = try_to_load_from_cache(f.repo_id, f.filename, revision=f.revision, repo_type=f.repo_type)
    return Path(found) if isinstance(found, str) else None


def file_metadata(f: HubFile) -> HfFileMetadata:
    """Size, ETag and commit of the file as the Hub (or the mirror in ``HF_ENDPOINT``) reports them; one HEAD."""
    if constants.is_offline_mode():
        raise offline_error(f)
    with client_errors(f):
        meta = get_hf_file_metadata(f.url)
    if meta.commit_hash is None or meta.etag is None:
        raise _not_the_hub(f)
    return meta


def evict(path: Path) -> str:
    """Remove a file the client cached (its snapshot entry and the blob behind it), so that it is fetched
    anew instead of served again; say what became of it."""
    blob = path.resolve()
    try:
        path.unlink(missing_ok=True)
        blob.unlink(missing_ok=True)
    except OSError as exc:
        return f"delete {blob} by hand ({exc.strerror})"
    return "it was removed from the Hub cache"


def fetch_file(f: HubFile, size: int | None = None, sha256: str | None = None) -> tuple[Path, str]:
    """The whole file in the Hub cache (downloaded unless it is there already): its path and its checked SHA-256.

    ``size`` and ``sha256`` are what the caller knows in advance; the Hub's own SHA-256 (an LFS file's ETag,
    the blob's name in the cache) is checked in any case, and a file that fails it is removed from the cache.
    """
    with client_errors(f), disk_full_is_user_error(constants.HF_HUB_CACHE, CACHE_FULL_FIX):
        path = Path(hf_hub_download(f.repo_id, f.filename, repo_type=f.repo_type, revision=f.revision,
                                    tqdm_class=ByteBar))
    blob = path.resolve()
    actual_size = blob.stat().st_size
    if size is not None and actual_size != size:
        raise UserError(f"download failed: {f.url} is {actual_size} bytes but {size} were expected; the published "
                        "file changed or HF_ENDPOINT points elsewhere; nothing was placed")
    actual = sha256_file(blob)
    published = blob.name if is_sha256(blob.name) else None
    if published is not None and actual != published:
        raise UserError(f"checksum mismatch for {f.url}: the Hub published sha256 {published}, the download has "
                        f"{actual}; the transfer was corrupted and {evict(path)}: rerun the command")
    if sha256 is not None and actual != sha256.lower():
        raise UserError(f"checksum mismatch for {f.url}: expected sha256 {sha256}, got {actual}; the published file "
                        "changed or HF_ENDPOINT points elsewhere; nothing was placed")
    return path, actual


def read_prefix(f: HubFile, sink: BinaryIO, meta: HfFileMetadata, length: int | None) -> None:
    """Write the start of ``f`` to ``sink`` through the client's transfer function.

    With ``length``, only the first ``length`` bytes are asked for (a ranged GET); without, the file is
    streamed until ``sink`` raises :class:`Enough`. ``sink`` needs ``write`` and, for a server that ignores
    ``Range`` when the client resumes after a drop, ``tell``, ``seek(0)`` and ``truncate`` (start again).
    """
    headers = build_hf_headers()
    expected = meta.size
    if length is not None and meta.size is not None and length < meta.size:
        headers["Range"] = f"bytes=0-{length - 1}"
        expected = length
    with client_errors(f):
        try:
            http_get(f.url, sink, headers=headers, expected_size=expected, displayed_filename=f.filename,
                     tqdm_class=SilentBar)
        except Enough:
            pass
