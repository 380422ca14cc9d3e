"""The published corpora and how their files are placed on disk.

The catalog (:data:`DATASETS`) names the files the CS336 assignment uses:
TinyStoriesV2-GPT4 from ``roneneldan/TinyStories`` and the OpenWebText sample from
``stanford-cs336/owt-sample``, both datasets on the Hugging Face Hub. Getting them is
:mod:`cs336_basics.download`'s work; this module holds what every way of getting them
shares, without any network code (``cs336 --help`` reads the catalog):

- Placement is atomic: a file is written under a temporary name and renamed.
- A prefix (``--max-bytes``) is cut after the last ``<|endoftext|>``, so it holds only
  whole documents and stays valid UTF-8.
- ``DEST/NAME/downloads.json`` records what was placed (size, SHA-256, source, prefix
  limit) so reruns skip finished files, and ``--verify`` re-hashes them.
- A folder of published files (``--from-dir``) is copied with the same cut and checks;
  an error page saved as a data file is refused.
"""

from __future__ import annotations

import gzip
import json
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from cs336_basics.errors import UserError, is_disk_full
from cs336_basics.fileio import atomic_path, atomic_write_text, sha256_file
from cs336_basics.outputs import DirOutput, check_output_dir

DOC_DELIMITER = b"<|endoftext|>"
MANIFEST_NAME = "downloads.json"
CHUNK = 1 << 20
ERROR_PAGE_STARTS = (b"<!doctype", b"<html", b"<?xml", b"<head", b"<body")
JSON_ERROR_START = re.compile(rb'^\{\s*"(error|errors|message|detail)"\s*:')


@dataclass(frozen=True)
class RemoteFile:
    """One published file: the Hub repository it lives in and what we know about it in advance."""

    split: str
    filename: str
    repo_id: str
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


_TINYSTORIES = "roneneldan/TinyStories"
_OWT = "stanford-cs336/owt-sample"

# Sizes/checksums are left None rather than guessed: the Hub publishes the SHA-256 of its large (LFS)
# files, which is what gets verified and recorded in downloads.json.
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


def error_page_reason(head: bytes) -> str | None:
    """Why a file starting with ``head`` looks like an error page rather than a corpus, or None."""
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n")[:64]
    if start.lower().startswith(ERROR_PAGE_STARTS) or JSON_ERROR_START.match(start):
        return f"a body starting with {start[:20].decode('utf-8', 'replace')!r}"
    return None


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


def load_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST_NAME
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return {}  # a damaged manifest only costs a re-verification
    return data if isinstance(data, dict) else {}


def record(folder: Path, local_name: str, entry: dict[str, Any]) -> None:
    manifest = load_manifest(folder)
    manifest[local_name] = entry
    atomic_write_text(folder / MANIFEST_NAME, json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def up_to_date(folder: Path, remote: RemoteFile, max_bytes: int | None, verify: bool) -> bool:
    entry = load_manifest(folder).get(remote.local_name)
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


def gunzip(src: Path, dst: Path, max_bytes: int | None, name: str) -> bool:
    """Decompress ``src`` into ``dst`` (only the first ``max_bytes`` bytes when set); True when cut short."""
    try:
        with gzip.open(src, "rb") as fin, open(dst, "wb") as fout:
            return _copy_limited(fin, fout, max_bytes)
    except (OSError, EOFError, zlib.error) as exc:
        dst.unlink(missing_ok=True)
        if is_disk_full(exc):
            raise
        raise UserError(f"{name} is not a valid gzip file ({exc}); rerun with --force to download it again") from exc


def _copy_limited(fin: BinaryIO, fout: BinaryIO, limit: int | None) -> bool:
    """Copy up to ``limit`` bytes; True when the limit cut the stream short (more bytes were left)."""
    remaining = limit
    while remaining is None or remaining > 0:
        chunk = fin.read(CHUNK if remaining is None else min(CHUNK, remaining))
        if not chunk:
            return False
        fout.write(chunk)
        if remaining is not None:
            remaining -= len(chunk)
    return bool(fin.read(1))


def _verify_sha(path: Path, expected: str | None, source: str) -> str:
    actual = sha256_file(path)
    if expected is not None and actual != expected.lower():
        path.unlink(missing_ok=True)
        raise UserError(f"checksum mismatch for {source}: expected sha256 {expected}, got {actual}; "
                        "the download was corrupted and has been deleted, rerun the command to download it again")
    return actual


def place(final: Path, write: Callable[[Path], bool]) -> int:
    """Write ``final`` atomically with ``write(tmp)``, which returns True when it cut the text short: such a
    prefix first loses its partial last document. Returns the size placed."""
    with atomic_path(final, fix=None) as tmp:  # a full disk is the caller's to report, with its own advice
        if write(tmp):
            cut_after_last_delimiter(tmp)
    return final.stat().st_size


def copy_from_dir(remote: RemoteFile, folder: Path, source_dir: Path, *, max_bytes: int | None) -> dict[str, Any]:
    """Copy (or decompress) one published file from the folder ``source_dir`` into ``folder``; its entry."""
    candidates = [source_dir / remote.filename, source_dir / remote.local_name]
    src = next((p for p in candidates if p.is_file()), None)
    if src is None:
        raise UserError(f"{source_dir} has neither {remote.filename} nor {remote.local_name}; "
                        "put the published file there or drop --from-dir to download it")
    with open(src, "rb") as fh:
        reason = None if src.suffix == ".gz" else error_page_reason(fh.read(512))
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
        size = place(folder / remote.local_name, lambda tmp: gunzip(src, tmp, max_bytes, str(src)))
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
    recorded = load_manifest(folder) if folder.is_dir() else {}
    for split in splits:
        final = folder / files[split].local_name
        if (final.exists() or final.is_symlink()) and files[split].local_name not in recorded:
            raise UserError(f"{final} exists but {folder / MANIFEST_NAME} does not record it, so cs336 download did "
                            "not write it; move it away and rerun (or prepare that folder with 'cs336 prepare')")


def copy_prefix(src: str | Path, dst: str | Path, max_bytes: int | None) -> Path:
    """Copy ``src`` to ``dst`` atomically, cut after the last ``<|endoftext|>`` within ``max_bytes``."""
    src, dst = Path(src), Path(dst)

    def copy(tmp: Path) -> bool:
        with open(src, "rb") as fin, open(tmp, "wb") as fout:
            return _copy_limited(fin, fout, max_bytes)

    place(dst, copy)
    return dst
