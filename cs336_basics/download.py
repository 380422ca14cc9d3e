"""Getting the published corpora: from the Hugging Face Hub through its client, or from a folder.

``cs336 download tinystories|owt`` (and the quickstart, for a TinyStories prefix) puts the
catalog's files (:mod:`cs336_basics.datasets`) into ``DEST/NAME/`` under their published
names, ``.gz`` files decompressed.

- The Hub through its client (:mod:`cs336_basics.hub`): ``HF_ENDPOINT``, ``HF_TOKEN``,
  ``HF_HUB_OFFLINE`` and the shared Hub cache apply. A whole file is fetched into (or found
  in) the Hub cache, resumed after a drop and checked against its published SHA-256, then
  copied (or decompressed) from there.
- What arrives is checked before it is kept: an error page or an empty file is refused
  (and removed from the Hub cache), so a mirror's "not found" page never becomes
  ``TinyStoriesV2-GPT4-train.txt``.
- ``max_bytes``: only a prefix, cut after the last ``<|endoftext|>``. It is read from the
  Hub cache when the whole file is there (no request at all), else with a ranged GET (for
  ``.gz``: streamed and decompressed until enough text came out). A limit at least the
  file's size fetches the whole file.
- A full disk is :class:`DiskFullError` (exit 2, "no space left on device at PATH").
- ``from_dir`` copies the published files from a folder instead, with the same cut and checks.
"""

from __future__ import annotations

import io
import zlib
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

from cs336_basics.datasets import (DATASETS, DOC_DELIMITER, RemoteFile, check_download_folder, copy_from_dir,
                                   copy_prefix, error_page_reason, gunzip, place, record, up_to_date)
from cs336_basics.errors import UserError, disk_full_is_user_error
from cs336_basics.fileio import sha256_file
from cs336_basics.hub import (BY_HAND, Enough, HubFile, cached_file, evict, fetch_file, file_metadata,
                              read_prefix)
from cs336_basics.progress import byte_progress, info

CHUNK = 1 << 20
DISK_FULL_FIX = "free space and rerun the same command (finished files are kept)"


def refuse_error_page(source: str, reason: str) -> UserError:
    return UserError(f"download failed: {source} answered with an error page ({reason}), not the data file; nothing "
                     f"was kept: check HF_ENDPOINT, {BY_HAND}")


def refuse_empty(source: str) -> UserError:
    return UserError(f"download failed: {source} sent an empty file; nothing was kept: check HF_ENDPOINT, {BY_HAND}")


def download_dataset(name: str, dest: str | Path = "data", splits: list[str] | tuple[str, ...] = ("train", "valid"),
                     *, max_bytes: int | None = None, from_dir: str | Path | None = None, force: bool = False,
                     verify: bool = False) -> dict[str, Path]:
    """Fetch ``splits`` of dataset ``name`` into ``DEST/NAME/``; return {split: path of the text file}.

    Files come from the Hub through its client (``HF_ENDPOINT``, ``HF_TOKEN``, ``HF_HUB_OFFLINE`` and the
    Hub cache apply), or from the folder ``from_dir``. Files already recorded in ``downloads.json`` with the
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
        if not force and up_to_date(folder, remote, max_bytes, verify):
            info(f"{final}: up to date ({final.stat().st_size:,} bytes)")
            out[split] = final
            continue
        with disk_full_is_user_error(final, DISK_FULL_FIX):
            entry = _place_one(remote, folder, from_dir, max_bytes=max_bytes)
        info(f"{final}: {entry['size']:,} bytes" + (" (prefix cut after the last <|endoftext|>)" if max_bytes else ""))
        out[split] = final
    return out


def _place_one(remote: RemoteFile, folder: Path, from_dir: str | Path | None, *, max_bytes: int | None
               ) -> dict[str, Any]:
    """Put one file in place (downloaded, or copied from ``from_dir``), record it in downloads.json; its entry."""
    if from_dir is not None:
        entry = copy_from_dir(remote, folder, Path(from_dir), max_bytes=max_bytes)
    else:
        entry = _download_one(remote, folder, max_bytes=max_bytes)
    if "sha256" not in entry:  # a copy of a file hashed on the way is not hashed again
        entry["sha256"] = sha256_file(folder / remote.local_name)
    entry.update(max_bytes=max_bytes, downloaded=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    record(folder, remote.local_name, entry)
    return entry


def _download_one(remote: RemoteFile, folder: Path, *, max_bytes: int | None) -> dict[str, Any]:
    """Fetch one file through the Hub client: whole (into the Hub cache, then copied here), or a prefix."""
    hub_file = HubFile(remote.repo_id, remote.filename)
    cached = cached_file(hub_file) if max_bytes is not None else None
    meta = None
    if max_bytes is not None and cached is None:
        meta = file_metadata(hub_file)
        if not remote.compressed and meta.size is not None and max_bytes >= meta.size:
            max_bytes = None  # the limit keeps the whole file: fetched whole and verified
    if max_bytes is None:
        return _place_whole(remote, folder, *fetch_file(hub_file, remote.size, remote.sha256))

    def fetch(tmp: Path) -> bool:
        with open(tmp, "wb") as out, byte_progress(max_bytes, remote.local_name) as bar:
            sink = _PrefixSink(out, max_bytes, remote.compressed, str(cached or hub_file.url), bar)
            if cached is not None:
                sink.read_from(cached)
                sink.finish()
            else:
                read_prefix(hub_file, sink, meta, None if remote.compressed else max_bytes)
                sink.finish(None if remote.compressed else meta.size)
        return sink.truncated

    size = place(folder / remote.local_name, fetch)
    commit = cached.parent.name if cached is not None else meta.commit_hash
    return {"source": hub_file.url, "commit": commit, "source_sha256": None, "size": size}


def _place_whole(remote: RemoteFile, folder: Path, cached: Path, sha256: str) -> dict[str, Any]:
    """Copy (or decompress) a whole file from the Hub cache into ``folder``; an error page or an empty file is
    refused and removed from the cache, so that it is never served again."""
    url = HubFile(remote.repo_id, remote.filename).url
    with open(cached, "rb") as fh:
        head = fh.read(512)
    reason = error_page_reason(head) if head else None
    if not head or reason is not None:
        evict(cached)
        raise refuse_error_page(url, reason) if reason is not None else refuse_empty(url)
    final = folder / remote.local_name
    if remote.compressed:
        place(final, lambda tmp: gunzip(cached, tmp, None, str(cached)))
    else:
        copy_prefix(cached, final, None)
    return {"source": url, "commit": cached.parent.name, "source_sha256": sha256,
            "size": final.stat().st_size, **({} if remote.compressed else {"sha256": sha256})}


class _PrefixSink:
    """Where the start of a published file goes: the first ``limit`` bytes of its text (decompressed on the
    way for ``.gz``) are written to ``out``; more than that raises :class:`Enough`, which ends the transfer.

    It is the file object the Hub client writes to, so it also answers ``tell``, ``seek(0)`` and ``truncate``:
    the client starts over that way when a server ignores ``Range`` on a resume.
    """

    def __init__(self, out: BinaryIO, limit: int, gz: bool, source: str, bar) -> None:
        self.out, self.limit, self.gz, self.source, self.bar = out, limit, gz, source, bar
        self._start()

    def _start(self) -> None:
        self.received = 0
        self.kept = 0
        self.truncated = False
        self.unzip = zlib.decompressobj(wbits=31) if self.gz else None
        self.inside_member = False

    def _text(self, data: bytes) -> bytes:
        if self.unzip is None:
            return data
        parts = []
        try:
            while data:
                parts.append(self.unzip.decompress(data))
                self.inside_member = not self.unzip.eof
                if self.inside_member:
                    break
                data = self.unzip.unused_data  # a gzip file may hold several members, one after the other
                self.unzip = zlib.decompressobj(wbits=31)
        except zlib.error as exc:
            raise UserError(f"{self.source} is not a valid gzip stream ({exc}); check HF_ENDPOINT") from exc
        return b"".join(parts)

    def write(self, data: bytes) -> int:
        if self.received == 0:
            reason = error_page_reason(data[:512])
            if reason is not None:
                raise refuse_error_page(self.source, reason)
        self.received += len(data)
        text = self._text(data)
        room = self.limit - self.kept
        self.out.write(text[:room])
        self.kept += min(room, len(text))
        self.bar.update(min(room, len(text)))
        if len(text) > room:
            self.truncated = True
            raise Enough
        return len(data)

    def tell(self) -> int:
        return self.received

    def seek(self, offset: int, whence: int = 0) -> int:
        if (offset, whence) != (0, 0):
            raise io.UnsupportedOperation("a prefix starts over from byte 0 only")
        self.out.seek(0)
        self.out.truncate()
        self.bar.reset()
        self._start()
        return 0

    def truncate(self, size: int | None = None) -> int:
        return self.received

    def read_from(self, path: Path) -> None:
        """Feed a local copy of the file (the Hub cache's) instead of a transfer."""
        with open(path, "rb") as fh:
            try:
                while chunk := fh.read(CHUNK):
                    self.write(chunk)
            except Enough:
                pass

    def finish(self, total: int | None = None) -> None:
        """Check what arrived; ``total``: the size of the file when only part of it was asked for."""
        if total is not None and self.received < total:
            self.truncated = True
        if self.received == 0:
            raise refuse_empty(self.source)
        if self.inside_member and not self.truncated:
            raise UserError(f"{self.source} is not a valid gzip stream (it ends mid-stream); check HF_ENDPOINT")
