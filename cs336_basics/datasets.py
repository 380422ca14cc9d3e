"""Getting the published corpora onto disk: resumable, verified, atomic downloads.

``cs336 download tinystories|owt`` fetches the files the CS336 assignment names
(TinyStoriesV2-GPT4 from ``roneneldan/TinyStories``, the OpenWebText sample
from ``stanford-cs336/owt-sample``, both on the Hugging Face Hub) into
``DEST/NAME/`` under their published names, ``.gz`` files decompressed.

Notable choices:

- Resume: bytes arrive in ``.NAME.part`` beside a ``.NAME.part.json`` that
  records the URL and the server's validator (ETag / Last-Modified). A later
  run (or the automatic retry after a dropped connection) asks for the rest
  with ``Range: bytes=N-`` and ``If-Range: <validator>``, so a file that
  changed on the server restarts from zero instead of being spliced.
- Refusal: an answer that is an error page (HTML/JSON Content-Type or first
  bytes) or empty is never kept (see :mod:`cs336_basics.http_download`), and a
  ``--from-dir`` source that is one is refused too.
- Verification: the expected size comes from the table below where known, else
  from the server (``X-Linked-Size`` of a Hub HEAD, ``Content-Range`` or
  ``Content-Length``); the expected SHA-256 from the table or from the Hub's
  ``X-Linked-Etag`` (the SHA-256 of an LFS object). A mismatch deletes the
  partial file and is a one-line :class:`UserError`; nothing is placed.
- A full disk is :class:`DiskFullError` (exit 2, "no space left on device at
  PATH"), never retried as a dropped connection; the ``.part`` file stays for
  the resume.
- Atomic placement: the final file is written under a temporary name and
  renamed, and ``DEST/NAME/downloads.json`` records what was verified (size,
  SHA-256, source, prefix limit) so reruns skip finished files.
- ``max_bytes``: fetch only a prefix (a ranged request; for ``.gz`` the
  decompressed stream is cut) and cut it after the last ``<|endoftext|>``, so
  the prefix holds only whole documents and stays valid UTF-8.
- Offline: ``from_dir`` (or a local directory as ``base_url``) copies the
  published files from a folder with the same prefix cut and verification.

The HTTP side (HEAD probe, ranged resume, retries, one-line errors) lives in
:mod:`cs336_basics.http_download`; this module knows the catalog and where files go.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

from cs336_basics.errors import UserError, disk_full_is_user_error, is_disk_full
from cs336_basics.fileio import atomic_write_text
from cs336_basics.http_download import (
    NETWORK_ERRORS,
    NetworkError,
    error_page_reason,
    fetch,
    open_stream,
    probe,
    refuse_error_page,
    unreachable_reason,
)
from cs336_basics.outputs import DirOutput, check_output_dir
from cs336_basics.progress import byte_progress, info

DOC_DELIMITER = b"<|endoftext|>"
BASE_URL_ENV = "CS336_DATASET_BASE_URL"
MANIFEST_NAME = "downloads.json"
CHUNK = 1 << 20
DISK_FULL_FIX = "free space and rerun the same command (finished files are kept, partial downloads resume)"


@dataclass(frozen=True)
class RemoteFile:
    """One published file: where it lives and what we know about it in advance."""

    split: str
    filename: str
    base_url: str
    size: int | None = None
    """Size in bytes of the published (possibly compressed) file, where known."""
    sha256: str | None = None
    """SHA-256 of the published file, where known."""

    @property
    def compressed(self) -> bool:
        return self.filename.endswith(".gz")

    @property
    def local_name(self) -> str:
        return self.filename[: -len(".gz")] if self.compressed else self.filename

    def url(self, base_url: str | None = None) -> str:
        return f"{(base_url or self.base_url).rstrip('/')}/{self.filename}"


_TINYSTORIES = "https://huggingface.co/datasets/roneneldan/TinyStories/resolve/main"
_OWT = "https://huggingface.co/datasets/stanford-cs336/owt-sample/resolve/main"

# Sizes/checksums are left None rather than guessed: the Hub tells us both for LFS files
# (X-Linked-Size / X-Linked-Etag), which is what gets verified and recorded in downloads.json.
DATASETS: dict[str, dict[str, RemoteFile]] = {
    "tinystories": {
        "train": RemoteFile("train", "TinyStoriesV2-GPT4-train.txt", _TINYSTORIES),
        "valid": RemoteFile("valid", "TinyStoriesV2-GPT4-valid.txt", _TINYSTORIES),
    },
    "owt": {
        "train": RemoteFile("train", "owt_train.txt.gz", _OWT),
        "valid": RemoteFile("valid", "owt_valid.txt.gz", _OWT),
    },
}


def published_names() -> dict[str, str]:
    """Map every published local file name (decompressed) to its split, for ``prepare``."""
    return {f.local_name: f.split for files in DATASETS.values() for f in files.values()}


# ----------------------------------------------------------------------------- helpers


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def cut_after_last_delimiter(path: Path, delimiter: bytes = DOC_DELIMITER) -> int:
    """Truncate ``path`` right after its last ``delimiter``; return the new size.

    Reads backwards in blocks so a multi-gigabyte prefix is never held in memory.
    """
    size = path.stat().st_size
    block = max(CHUNK, 4 * len(delimiter))
    with open(path, "r+b") as fh:
        end = size
        while end > 0:
            start = max(0, end - block)
            # overlap by len(delimiter)-1 so a delimiter straddling two blocks is still found
            fh.seek(start)
            data = fh.read(min(size, end + len(delimiter) - 1) - start)
            idx = data.rfind(delimiter)
            if idx >= 0:
                new_size = start + idx + len(delimiter)
                fh.truncate(new_size)
                return new_size
            end = start
    raise UserError(f"{path.name}: no {delimiter.decode()} in the downloaded prefix; use a larger --max-bytes")


def _load_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST_NAME
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return {}  # a damaged manifest only costs a re-verification
    return data if isinstance(data, dict) else {}


def _record(folder: Path, local_name: str, entry: dict[str, Any]) -> None:
    manifest = _load_manifest(folder)
    manifest[local_name] = entry
    atomic_write_text(folder / MANIFEST_NAME, json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def _up_to_date(folder: Path, remote: RemoteFile, max_bytes: int | None, verify: bool) -> bool:
    entry = _load_manifest(folder).get(remote.local_name)
    path = folder / remote.local_name
    if not entry or not path.is_file() or entry.get("max_bytes") != max_bytes:
        return False
    if path.stat().st_size != entry.get("size"):
        return False
    if verify:
        actual = sha256_file(path)
        if actual != entry.get("sha256"):
            raise UserError(f"{path} does not match its recorded checksum (expected {entry.get('sha256')}, "
                            f"got {actual}): the file was modified or damaged; rerun with --force to re-download")
    return True


# ----------------------------------------------------------------------------- placement


def _gunzip(src: Path, dst: Path, max_bytes: int | None, name: str) -> bool:
    """Decompress ``src`` into ``dst`` (only the first ``max_bytes`` bytes when set); True when cut short."""
    try:
        with gzip.open(src, "rb") as fin, open(dst, "wb") as fout:
            return _copy_limited(fin, fout, max_bytes)
    except (OSError, EOFError, zlib.error) as exc:
        dst.unlink(missing_ok=True)
        if is_disk_full(exc):
            raise
        raise UserError(f"{name} is not a valid gzip file ({exc}); rerun with --force to download it again") from exc


def _copy_limited(fin: BinaryIO, fout: BinaryIO, limit: int | None, on_bytes=None) -> bool:
    """Copy up to ``limit`` bytes; True when the limit cut the stream short (more bytes were left)."""
    remaining = limit
    while remaining is None or remaining > 0:
        chunk = fin.read(CHUNK if remaining is None else min(CHUNK, remaining))
        if not chunk:
            return False
        fout.write(chunk)
        if on_bytes is not None:
            on_bytes(len(chunk))
        if remaining is not None:
            remaining -= len(chunk)
    return bool(fin.read(1))


def _gz_prefix(url: str, tmp: Path, max_bytes: int, timeout: float) -> bool:
    """Stream-decompress the start of a remote .gz until ``max_bytes`` of text are out.

    No resume here: a prefix is small by intent, and a gzip stream cannot restart mid-way.
    """
    try:
        with open_stream(url, timeout) as response:
            reason = error_page_reason(response.headers.get("Content-Type"), b"")
            if reason is not None:
                raise refuse_error_page(url, reason)
            with open(tmp, "wb") as out, byte_progress(max_bytes, tmp.name.lstrip(".")) as bar:
                return _copy_limited(gzip.GzipFile(fileobj=response), out, max_bytes, bar.update)
    except NETWORK_ERRORS as exc:
        raise NetworkError(f"download of {url} was interrupted ({exc}); rerun the command", f"interrupted: {exc}") from exc
    except (OSError, EOFError, zlib.error) as exc:
        if is_disk_full(exc):
            raise
        raise UserError(f"{url} is not a valid gzip stream ({exc})") from exc


def _verify_sha(path: Path, expected: str | None, source: str) -> str:
    actual = sha256_file(path)
    if expected is not None and actual != expected.lower():
        path.unlink(missing_ok=True)
        raise UserError(f"checksum mismatch for {source}: expected sha256 {expected}, got {actual}; "
                        "the download was corrupted and has been deleted, rerun the command to download it again")
    return actual


def _place(tmp: Path, final: Path, truncated: bool) -> int:
    """Rename ``tmp`` to ``final``; a prefix that was cut short first loses its partial last document."""
    if truncated:
        cut_after_last_delimiter(tmp)
    os.replace(tmp, final)
    return final.stat().st_size


def _download_one(remote: RemoteFile, folder: Path, *, max_bytes: int | None, base_url: str | None,
                  retries: int, timeout: float) -> dict[str, Any]:
    url = remote.url(base_url)
    final = folder / remote.local_name
    tmp = folder / f".{remote.local_name}.tmp"
    reason = unreachable_reason(url, timeout=min(timeout, 10.0))
    if reason is not None:
        raise NetworkError(f"download of {url} failed ({reason}); check the network and rerun, "
                           "or copy the files by hand and use --from-dir", reason)
    if remote.compressed and max_bytes is not None:
        truncated = _gz_prefix(url, tmp, max_bytes, timeout)
        return {"source": url, "source_sha256": None, "size": _place(tmp, final, truncated)}

    remote_info = probe(url, timeout=timeout)
    expected_size = remote.size or remote_info.size
    expected_sha = remote.sha256 or remote_info.sha256
    part = folder / f".{remote.filename}.part"
    state_path = folder / f".{remote.filename}.part.json"
    # what identifies the bytes in a part file: a part of anything else must not be continued
    identity = {"url": url, "content": remote_info.sha256 or remote_info.validator, "max_bytes": max_bytes}
    old: dict[str, Any] = {}
    if part.exists():
        try:
            old = json.loads(state_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            old = {}
        if old.get("identity") != identity:
            part.unlink()
            old = {}

    def save_validator(value: str | None) -> None:
        atomic_write_text(state_path, json.dumps({"identity": identity, "if_range": value}))

    save_validator(old.get("if_range"))
    prefix_end = max_bytes if max_bytes is not None and not remote.compressed else None
    try:
        total = fetch(url, part, end=prefix_end, expected_size=expected_size, retries=retries, timeout=timeout,
                      validator=old.get("if_range"), on_validator=save_validator, desc=remote.filename)
    finally:
        if not part.exists():  # nothing to resume: the state of a transfer that kept no bytes goes too
            state_path.unlink(missing_ok=True)
    # A checksum covers the whole published file, so it can only be checked when we have all of it.
    whole = prefix_end is None or (total is not None and part.stat().st_size == total)
    source_sha = _verify_sha(part, expected_sha if whole else None, url) if whole else None
    if remote.compressed:
        _gunzip(part, tmp, None, remote.filename)
        part.unlink()
    else:
        os.replace(part, tmp)
    state_path.unlink(missing_ok=True)
    return {"source": url, "source_sha256": source_sha, "size": _place(tmp, final, not whole)}


def _copy_one(remote: RemoteFile, folder: Path, source_dir: Path, *, max_bytes: int | None) -> dict[str, Any]:
    candidates = [source_dir / remote.filename, source_dir / remote.local_name]
    src = next((p for p in candidates if p.is_file()), None)
    if src is None:
        raise UserError(f"{source_dir} has neither {remote.filename} nor {remote.local_name}; "
                        "put the published file there or drop --from-dir to download it")
    with open(src, "rb") as fh:
        reason = None if src.suffix == ".gz" else error_page_reason(None, fh.read(512))
    if reason is not None:
        raise UserError(f"{src} is an error page saved as a file ({reason}), not the dataset; download the "
                        "published file again")
    source_sha = None
    if src.name == remote.filename and (remote.sha256 or remote.size):
        if remote.size is not None and src.stat().st_size != remote.size:
            raise UserError(f"{src} is {src.stat().st_size} bytes but the published file has {remote.size}; "
                            "it is incomplete or a different file")
        source_sha = _verify_sha(src, remote.sha256, str(src)) if remote.sha256 else None
    if src.suffix == ".gz":
        tmp = folder / f".{remote.local_name}.tmp"
        size = _place(tmp, folder / remote.local_name, _gunzip(src, tmp, max_bytes, str(src)))
    else:
        size = copy_prefix(src, folder / remote.local_name, max_bytes).stat().st_size
    return {"source": str(src.resolve()), "source_sha256": source_sha, "size": size}


def _is_download_folder(folder: Path, files: dict[str, RemoteFile]) -> bool:
    """True when every entry of ``folder`` is downloads.json or a (partial) file of this dataset."""
    names = [name for remote in files.values() for name in (remote.local_name, remote.filename)]
    return all(entry.name == MANIFEST_NAME or any(entry.name.lstrip(".").startswith(n) for n in names)
               for entry in folder.iterdir())


def check_download_folder(folder: Path, files: dict[str, RemoteFile], splits, from_dir: str | Path | None) -> None:
    """Before fetching: DEST/NAME is new or a previous download folder, does not hold --from-dir, and every file
    to be (re)placed is absent or recorded in downloads.json (a file cs336 download did not write stays)."""
    kind = DirOutput("cs336 download", "download folder", lambda d: _is_download_folder(d, files))
    check_output_dir(folder, kind, inputs=[from_dir], flag="the dataset folder", fix="choose another --dest")
    recorded = _load_manifest(folder) if folder.is_dir() else {}
    for split in splits:
        final = folder / files[split].local_name
        if (final.exists() or final.is_symlink()) and files[split].local_name not in recorded:
            raise UserError(f"{final} exists but {folder / MANIFEST_NAME} does not record it, so cs336 download did "
                            "not write it; move it away and rerun (or prepare that folder with 'cs336 prepare')")


def download_dataset(name: str, dest: str | Path = "data", splits: list[str] | tuple[str, ...] = ("train", "valid"),
                     *, max_bytes: int | None = None, base_url: str | None = None, from_dir: str | Path | None = None,
                     force: bool = False, verify: bool = False, retries: int = 5,
                     timeout: float = 60.0) -> dict[str, Path]:
    """Fetch ``splits`` of dataset ``name`` into ``DEST/NAME/``; return {split: path of the text file}.

    ``base_url`` (default: env ``CS336_DATASET_BASE_URL``, else the published URL) may also be a local
    directory, which is the same as ``from_dir``. Files already recorded in ``downloads.json`` with the
    same prefix limit are skipped (re-hashed first with ``verify``) unless ``force``.
    """
    if name not in DATASETS:
        raise UserError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    files = DATASETS[name]
    unknown = [s for s in splits if s not in files]
    if unknown or not splits:
        raise UserError(f"unknown split {','.join(unknown) or '(none)'} for {name}; choose from: {','.join(files)}")
    if max_bytes is not None and max_bytes <= len(DOC_DELIMITER):
        raise UserError(f"--max-bytes must be larger than {len(DOC_DELIMITER)}, got {max_bytes}")
    base_url = base_url or os.environ.get(BASE_URL_ENV) or None
    if base_url and from_dir is None and "://" not in base_url:
        from_dir, base_url = base_url, None
    elif base_url and base_url.startswith("file://"):
        from_dir, base_url = base_url[len("file://"):], None
    if from_dir is not None and not Path(from_dir).is_dir():
        raise UserError(f"--from-dir {from_dir} is not a directory")
    folder = Path(dest) / name
    check_download_folder(folder, files, splits, from_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create {folder}: {exc.strerror}; choose another --dest") from exc
    out: dict[str, Path] = {}
    for split in splits:
        remote = files[split]
        final = folder / remote.local_name
        if not force and _up_to_date(folder, remote, max_bytes, verify):
            info(f"{final}: up to date ({final.stat().st_size:,} bytes)")
            out[split] = final
            continue
        try:
            with disk_full_is_user_error(final, DISK_FULL_FIX):
                entry = _place_one(remote, folder, from_dir, max_bytes=max_bytes, base_url=base_url,
                                   retries=retries, timeout=timeout)
        finally:
            (folder / f".{remote.local_name}.tmp").unlink(missing_ok=True)  # left only by a failure
        info(f"{final}: {entry['size']:,} bytes" + (" (prefix cut after the last <|endoftext|>)" if max_bytes else ""))
        out[split] = final
    return out


def _place_one(remote: RemoteFile, folder: Path, from_dir: str | Path | None, *, max_bytes: int | None,
               base_url: str | None, retries: int, timeout: float) -> dict[str, Any]:
    """Put one file in place (downloaded, or copied from ``from_dir``), record it in downloads.json, return its entry."""
    if from_dir is not None:
        entry = _copy_one(remote, folder, Path(from_dir), max_bytes=max_bytes)
    else:
        entry = _download_one(remote, folder, max_bytes=max_bytes, base_url=base_url, retries=retries,
                              timeout=timeout)
    entry.update(max_bytes=max_bytes, sha256=sha256_file(folder / remote.local_name),
                 downloaded=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    _record(folder, remote.local_name, entry)
    return entry


def copy_prefix(src: str | Path, dst: str | Path, max_bytes: int | None) -> Path:
    """Copy ``src`` to ``dst`` atomically, cut after the last ``<|endoftext|>`` within ``max_bytes``."""
    src, dst = Path(src), Path(dst)
    tmp = dst.with_name(f".{dst.name}.tmp")
    with open(src, "rb") as fin, open(tmp, "wb") as fout:
        truncated = _copy_limited(fin, fout, max_bytes)
    _place(tmp, dst, truncated)
    return dst
