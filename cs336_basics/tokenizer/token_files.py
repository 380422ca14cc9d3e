"""Token files: a text corpus tokenized once into a memory-mappable ``.npy``, with a manifest that keeps it honest.

Layout: ``train.npy`` (1-D, ``uint16`` when every id fits, else ``uint32``; ids
>= 65536 are never written as uint16) and beside it
``train.npy.manifest.json``::

    {"format": 1, "tokenizer_fingerprint": "...", "vocab_size": 10000,
     "special_tokens": ["<|endoftext|>"], "dtype": "uint16", "num_tokens": ...,
     "min_id": ..., "max_id": ... (null for an empty file),
     "token_file": {"size", "mtime_ns"} (of the .npy when the manifest was written),
     "num_bytes": ... (UTF-8 bytes of the source), "source": {"path", "size",
     "mtime_ns", "mtime", "hash"}, "created": "...", "seconds": ..., "workers": ...}

Why: the original workflow had to "manually delete the token files to ensure
they are regenerated". Here ``tokenize_file`` rebuilds an output exactly when
the tokenizer (fingerprint of vocab, merges, specials) or the source (size,
mtime, content hash: whole file up to 64 MiB, else 64 sampled blocks) changed,
and ``open_token_file`` refuses a token file whose manifest does not match the
tokenizer or model in use, or whose ids fall outside the vocabulary. The ids
are read, never taken on trust: a chunked scan of the whole file runs at
memory speed, while a
manifest's ``min_id``/``max_id`` describe the file only as it was written (a
file changed in place with its mtime restored looks current). No manifest is
a warning; a manifest that is not a JSON object with the required keys is an
error, never "no manifest": skipping the checks would let another
tokenizer's ids through.

Parallelism: the file is cut into byte ranges at safe boundaries
(``boundaries.find_byte_cut``), worker processes encode ranges into part
files, and the parent splices each finished part, in file order, onto a temp
file (a fixed-size ``.npy`` header whose count is filled in at the end) with an
in-kernel copy, flushing to disk in the background as it goes; the temp file is
then renamed into place (no partial file ever carries the final name). The
assembly overlaps the encoding, so the serial work after the last range is one
part's copy and a short fsync. (Sending the ids through the pool's pipe
instead would cost the parent CPU time taken from the workers.) Invalid UTF-8 in the
source is kept as raw bytes (``Tokenizer.encode_bytes`` semantics), so the
result equals ``tokenizer.encode_bytes(open(path, "rb").read())``, which is
``tokenizer.encode(text)`` for a valid UTF-8 file.
"""

from __future__ import annotations

import codecs
import datetime as _dt
import hashlib
import json
import os
import shutil
import struct
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from cs336_basics.errors import UserError, disk_full_is_user_error, not_a_file
from cs336_basics.fileio import atomic_path, atomic_write_text
from cs336_basics.outputs import check_output_file
from cs336_basics.progress import byte_progress, warn
from cs336_basics.runtime.allocator import keep_freed_cpu_memory
from cs336_basics.tokenizer.boundaries import find_byte_cut, safe_chunks
from cs336_basics.tokenizer.vocabulary import check_ids_in_vocabulary, check_vocab_agreement
from cs336_basics.tokenizer.workers import clamp_workers, worker_pool

FORMAT = 1
MANIFEST_SUFFIX = ".manifest.json"
FULL_HASH_LIMIT = 64 << 20
SAMPLE_BLOCKS, SAMPLE_SIZE = 64, 1 << 16
READ_BLOCK = 1 << 20  # bytes read per step inside a worker
ENCODE_CHUNK = 1 << 20  # bytes per encode call inside a worker
TEXT_FALLBACK = 8 << 20  # bytes without a byte-level safe cut before falling back to the text chunker
MAX_RANGE = 4 << 20  # bytes per work item: small enough that the workers finish together
SCAN_CHUNK = 1 << 20  # ids per step of an id-range scan: small enough that the second pass (max) hits the cache
REQUIRED_KEYS = {"format": int, "tokenizer_fingerprint": str, "vocab_size": int, "dtype": str, "num_tokens": int}
OPTIONAL_KEYS = {"min_id": int, "max_id": int, "num_bytes": int, "token_file": dict, "source": dict,
                 "special_tokens": list}


def manifest_path(npy_path: str | Path) -> Path:
    return Path(str(npy_path) + MANIFEST_SUFFIX)


def dtype_for(vocab_size: int) -> np.dtype:
    """uint16 when every id (< vocab_size) fits, else uint32."""
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


def source_fingerprint(path: str | Path) -> dict[str, Any]:
    """Size, mtime and a content hash (whole file up to 64 MiB, else sampled blocks) of a source file."""
    path = Path(path)
    st = path.stat()
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        if st.st_size <= FULL_HASH_LIMIT:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
            kind = "sha256"
        else:
            h.update(str(st.st_size).encode())
            step = (st.st_size - SAMPLE_SIZE) / (SAMPLE_BLOCKS - 1)
            for i in range(SAMPLE_BLOCKS):  # first and last block included
                fh.seek(int(i * step))
                h.update(fh.read(SAMPLE_SIZE))
            kind = f"sha256-sampled-{SAMPLE_BLOCKS}x{SAMPLE_SIZE}"
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "mtime": _dt.datetime.fromtimestamp(st.st_mtime, _dt.timezone.utc).isoformat(),
            "hash": f"{kind}:{h.hexdigest()}"}


def tokenize_command(npy_path: str | Path, text: str | Path | None = None, force: bool = False) -> str:
    """The ``cs336 tokenize`` command line that (re)builds ``npy_path`` (DIR: the tokenizer directory in use)."""
    return (f"cs336 tokenize --tokenizer DIR --input {text or 'TEXT'} --out {npy_path}"
            + (" --force" if force else ""))


def _manifest_problem(data: Any) -> str | None:
    """What is wrong with a parsed manifest (None when its keys have the expected types)."""
    if not isinstance(data, dict):
        return f"a JSON {type(data).__name__} instead of an object"
    for key, kind in (*REQUIRED_KEYS.items(), *OPTIONAL_KEYS.items()):
        if key not in data:
            if key in REQUIRED_KEYS:
                return f"no {key!r}"
            continue
        value = data[key]
        if value is None and key in ("min_id", "max_id"):
            continue  # an empty token file has no ids
        if not isinstance(value, kind) or isinstance(value, bool):
            return f"{key!r} is {json.dumps(value)[:40]}, not a JSON {'number' if kind is int else kind.__name__}"
    try:
        if np.dtype(data["dtype"]).kind not in "ui":
            return f"'dtype' is {data['dtype']!r}, not an integer type"
    except TypeError:
        return f"'dtype' is {data['dtype']!r}, not a numpy type"
    return None


def read_manifest(npy_path: str | Path) -> dict | None:
    """The manifest beside ``npy_path``, or None when there is none.

    A manifest that cannot be read or is not what ``tokenize_file`` writes (not JSON, not an
    object, a key missing or of the wrong type) is a UserError naming the file and the fix.
    """
    path = manifest_path(npy_path)
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}; check its permissions") from exc
    except UnicodeDecodeError:
        problem = "not UTF-8 text"
    except json.JSONDecodeError as exc:
        problem = f"not valid JSON: {exc.msg} at line {exc.lineno}"
    else:
        problem = _manifest_problem(data)
        if problem is None:
            return data
    raise UserError(f"{path} is damaged ({problem}); rebuild the token file and its manifest with "
                    f"'{tokenize_command(npy_path, force=True)}'")


def id_range(tokens: np.ndarray, chunk: int = SCAN_CHUNK) -> tuple[int, int] | None:
    """(smallest, largest) id of a (memory-mapped) token array, read in chunks; None when it is empty."""
    lo = hi = None
    for start in range(0, len(tokens), chunk):
        block = tokens[start:start + chunk]
        block_lo, block_hi = int(block.min()), int(block.max())
        lo = block_lo if lo is None else min(lo, block_lo)
        hi = block_hi if hi is None else max(hi, block_hi)
    return None if lo is None else (lo, hi)


def check_id_range(path: str | Path, ids: tuple[int, int] | None, vocab_size: int) -> None:
    """UserError when the token file's ``ids`` (smallest, largest) leave ``0 .. vocab_size - 1``, with the
    ``cs336 tokenize`` that rebuilds it."""
    check_ids_in_vocabulary(ids, vocab_size, where=str(path),
                            fix=f"rebuild it with the tokenizer in use: '{tokenize_command(path, force=True)}'")


def _not_a_token_file(path: Path, detail: str) -> UserError:
    """The error for a path that cannot be opened as a token file, with a ``cs336 tokenize`` that works."""
    if path.suffix == ".npy":
        return UserError(f"{path} {detail}; rebuild it with '{tokenize_command(path, force=True)}'")
    npy = path.with_suffix(".npy")
    text = path if path.is_file() else None
    return UserError(f"{path} {detail}: token files are .npy arrays made from text; make one with "
                     f"'{tokenize_command(npy, text)}' and use {npy}")


def open_token_file(npy_path: str | Path, *, vocab_size: int | None = None,
                    tokenizer_fingerprint: str | None = None) -> np.ndarray:
    """Memory-map a token file, checking it against the tokenizer/model in use (UserError with the fix).

    Checks: a readable 1-D integer ``.npy``; its manifest (damaged: an error; missing: a warning)
    matches the tokenizer fingerprint, length and dtype; with ``vocab_size``, every id is in
    ``0 .. vocab_size - 1`` (a chunked scan of the data).
    """
    path = Path(npy_path)
    problem = not_a_file(path)
    if problem == "does not exist":
        if path.suffix == ".npy":
            raise UserError(f"token file not found: {path}; create it with '{tokenize_command(path)}'")
        raise _not_a_token_file(path, "is not a token file (not found)")
    if problem is not None:
        raise UserError(f"token file {path} {problem}; move it out of the way and create the token file with "
                        f"'{tokenize_command(path.with_suffix('.npy'))}'")
    try:
        arr = np.load(path, mmap_mode="r")
    except (ValueError, OSError, EOFError) as exc:
        raise _not_a_token_file(path, f"is not a readable .npy token file ({exc})") from exc
    if not isinstance(arr, np.ndarray) or arr.ndim != 1 or arr.dtype.kind not in "ui":
        detail = f"a {arr.ndim}-D {arr.dtype} array" if isinstance(arr, np.ndarray) else "not one array"
        raise _not_a_token_file(path, f"holds {detail}, not 1-D integer token ids")
    manifest = read_manifest(path)
    if manifest is None:
        warn(f"{path} has no manifest ({manifest_path(path).name}), so its tokenizer cannot be checked; scanning "
             f"its {arr.shape[0]:,} ids instead (rebuild it with '{tokenize_command(path, force=True)}')")
        if vocab_size is not None:
            check_id_range(path, id_range(arr), vocab_size)
        return arr
    source = (manifest.get("source") or {}).get("path")
    rebuild = f"rebuild it with the tokenizer in use: '{tokenize_command(path, source, force=True)}'"
    fp = manifest["tokenizer_fingerprint"]
    if tokenizer_fingerprint is not None and fp != tokenizer_fingerprint:
        raise UserError(f"{path} was made with a different tokenizer (fingerprint {fp[:12]}..., in use "
                        f"{tokenizer_fingerprint[:12]}...); {rebuild}")
    if manifest["num_tokens"] != arr.shape[0]:
        raise UserError(f"{path} has {arr.shape[0]} tokens but its manifest says {manifest['num_tokens']} "
                        f"(replaced or truncated); {rebuild}")
    if np.dtype(manifest["dtype"]) != arr.dtype:
        raise UserError(f"{path} holds {arr.dtype} ids but its manifest says {manifest['dtype']} (replaced by "
                        f"other code?); {rebuild}")
    if vocab_size is not None:
        made_with = manifest["vocab_size"]
        check_vocab_agreement(vocab_size, made_with, model="model.vocab_size", tokenizer=f"the tokenizer of {path}",
                              fix=f"set model.vocab_size >= {made_with}")
        # the ids themselves, not the manifest's record of them: a file edited in place keeps its size,
        # and its mtime can be restored, so a manifest that looks current proves nothing about the ids
        check_id_range(path, id_range(arr), vocab_size)
    return arr


def staleness(tokenizer, input_path: str | Path, out_path: str | Path) -> str | None:
    """Why ``out_path`` must be (re)built from ``input_path``, or None when it is up to date."""
    out_path = Path(out_path)
    if not out_path.is_file():
        return "no token file yet"
    try:
        manifest = read_manifest(out_path)
    except UserError:
        return "its manifest is damaged"
    if manifest is None or manifest.get("format") != FORMAT:
        return "no manifest"
    if manifest.get("tokenizer_fingerprint") != tokenizer.fingerprint:
        return "the tokenizer changed"
    src, st = manifest.get("source") or {}, Path(input_path).stat()
    if src.get("size") != st.st_size or src.get("mtime_ns") != st.st_mtime_ns:
        return "the source file changed"
    if src.get("hash") != source_fingerprint(input_path)["hash"]:
        return "the source file's content changed"
    try:
        if np.load(out_path, mmap_mode="r").shape[0] != manifest.get("num_tokens"):
            return "the token file does not match its manifest"
    except (ValueError, OSError, EOFError):
        return "the token file is unreadable"
    return None


# ----------------------------------------------------------------------------- parallel tokenization
def plan_ranges(path: Path, size: int, pieces: int, specials: list[str]) -> list[tuple[int, int]]:
    """Cut [0, size) into about ``pieces`` byte ranges at safe boundaries (fewer when none is found)."""
    if pieces <= 1 or size < 2:
        return [(0, size)] if size else []
    special_bytes = [s.encode("utf-8") for s in specials]
    back = max((len(s) for s in special_bytes), default=1)
    cuts = [0]
    with open(path, "rb") as fh:
        for i in range(1, pieces):
            target = max(size * i // pieces, cuts[-1] + 1)
            for window in (1 << 16, 1 << 20):
                start = max(0, target - back)
                fh.seek(start)
                data = fh.read(window)
                k = find_byte_cut(data, special_bytes, lo=max(1, target - start))
                if k >= 0:
                    if start + k > cuts[-1]:
                        cuts.append(start + k)
                    break
    cuts.append(size)
    return [(a, b) for a, b in zip(cuts, cuts[1:]) if b > a]


def _range_blocks(path: Path, start: int, end: int) -> Iterator[bytes]:
    """The bytes [start, end) of ``path`` in blocks of at most ``READ_BLOCK``."""
    with open(path, "rb") as fh:
        fh.seek(start)
        left = end - start
        while left > 0:
            block = fh.read(min(READ_BLOCK, left))
            if not block:
                break
            left -= len(block)
            yield block


def _range_text(path: Path, start: int, end: int) -> Iterator[str]:
    """The bytes [start, end) as text pieces; invalid UTF-8 decoded with surrogateescape (kept as bytes)."""
    decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
    for block in _range_blocks(path, start, end):
        yield decoder.decode(block)
    tail = decoder.decode(b"", final=True)
    if tail:
        yield tail


def _last_byte_cut(data: bytearray, specials: list[bytes]) -> int:
    """A safe byte cut as close to the end of ``data`` as a few searches find, or -1."""
    for back in (1 << 16, 1 << 20, len(data)):
        k = find_byte_cut(data, specials, lo=max(1, len(data) - back))
        if k >= 0:
            return k
    return -1


def _range_chunks(path: Path, start: int, end: int, specials: list[str]) -> Iterator[bytes]:
    """The bytes [start, end) as chunks of about ``ENCODE_CHUNK`` bytes, each ending at a safe cut.

    The fast path never decodes: it cuts the raw bytes at ``find_byte_cut`` positions
    (an ASCII character followed by a space), which prose has everywhere. A stretch
    of ``TEXT_FALLBACK`` bytes without one (text without spaces: CJK, minified code,
    one long token) hands the rest of the range to the decoded-text chunker, which
    also cuts between character classes.
    """
    special_bytes = [s.encode("utf-8") for s in specials]
    pending = bytearray()
    offset = start  # file offset of pending[0]: always a safe cut
    for block in _range_blocks(path, start, end):
        pending += block
        if len(pending) < ENCODE_CHUNK:
            continue
        k = _last_byte_cut(pending, special_bytes)
        if k > 0:
            yield bytes(pending[:k])
            del pending[:k]
            offset += k
        elif len(pending) >= TEXT_FALLBACK:
            for chunk in safe_chunks(_range_text(path, offset, end), specials, ENCODE_CHUNK):
                yield chunk.encode("utf-8", "surrogateescape")
            return
    if pending:
        yield bytes(pending)


def _union(a: tuple[int, int] | None, b: tuple[int, int] | None) -> tuple[int, int] | None:
    """The smallest range holding two (smallest, largest) id ranges (None: no ids)."""
    if a is None or b is None:
        return a if b is None else b
    return min(a[0], b[0]), max(a[1], b[1])


def encode_range(tokenizer, path: Path, start: int, end: int, out, dtype: np.dtype,
                 on_bytes=None) -> tuple[int, tuple[int, int] | None]:
    """Encode bytes [start, end) of ``path`` (a range cut at safe boundaries) into ``out``.

    Returns the number of tokens and their (smallest, largest) id, None when there are none.
    """
    count, ids_range = 0, None
    for data in _range_chunks(path, start, end, tokenizer.special_tokens):
        ids = tokenizer.encode_to_array(data)
        if ids.size:
            ids_range = _union(ids_range, (int(ids.min()), int(ids.max())))
            if ids_range[1] > np.iinfo(dtype).max:  # defensive: never wrap an id
                raise UserError(f"token id {ids_range[1]} does not fit {dtype}; this is a bug in dtype selection")
        out.write(ids.astype(dtype, copy=False).tobytes())
        count += ids.size
        if on_bytes is not None:
            on_bytes(len(data))
    return count, ids_range


_WORKER: dict[str, Any] = {}


def _worker_init(tokenizer) -> None:
    keep_freed_cpu_memory()  # every range allocates the same chunk buffers again: keep them
    _WORKER["tokenizer"] = tokenizer


def _worker_task(task: tuple[str, int, int, str, str]) -> tuple[str, int, tuple[int, int] | None, int]:
    """Encode one range in a worker into its own part file (the parent splices it into the output)."""
    path, start, end, dtype, part = task
    with open(part, "wb") as out:
        count, ids_range = encode_range(_WORKER["tokenizer"], Path(path), start, end, out, np.dtype(dtype))
    return part, count, ids_range, end - start


def _append_file(dst, src_path: str) -> None:
    """Append the file at ``src_path`` to the open file ``dst``: an in-kernel copy where Linux offers one."""
    dst.flush()
    with open(src_path, "rb") as src:
        size = os.fstat(src.fileno()).st_size
        left = size
        try:
            while left > 0:
                copied = os.copy_file_range(src.fileno(), dst.fileno(), left)
                if copied == 0:
                    break
                left -= copied
        except (AttributeError, OSError):  # not Linux, or a file system without it
            pass
        dst.seek(0, os.SEEK_END)  # copy_file_range moved the fd offset under Python's buffered writer
        if left > 0:  # whatever the kernel did not copy goes through user space
            src.seek(size - left)
            shutil.copyfileobj(src, dst, 1 << 22)


HEADER_LEN = 128  # bytes; an .npy header padded to a fixed size, so the count can be filled in at the end


def npy_header(dtype: np.dtype, count: int) -> bytes:
    """A version-1.0 ``.npy`` header for a 1-D array of ``count`` items, exactly ``HEADER_LEN`` bytes long.

    Fixed-size so the data can be streamed after a placeholder and the real count
    written over it when known (numpy accepts any space padding before the newline).
    """
    text = f"{{'descr': {np.lib.format.dtype_to_descr(dtype)!r}, 'fortran_order': False, 'shape': ({count},), }}"
    body_len = HEADER_LEN - 10  # magic (6) + version (2) + header length field (2)
    text = text.ljust(body_len - 1) + "\n"
    if len(text) != body_len:
        raise ValueError(f"npy header for {count} items does not fit {HEADER_LEN} bytes")
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", body_len) + text.encode("latin1")


class _Syncer:
    """Flushes written data to disk in the background while encoding goes on, so the final fsync is short.

    A background flush that fails (a full disk shows up here when the file system allocates late) is
    raised by the next ``kick`` or by ``finish``, in the writing thread.
    """

    def __init__(self, fh) -> None:
        self.fh, self.thread, self.error = fh, None, None

    def _sync(self) -> None:
        try:
            os.fdatasync(self.fh.fileno())
        except OSError as exc:
            self.error = exc

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error

    def kick(self) -> None:
        if self.thread is None or not self.thread.is_alive():
            self._raise()
            self.fh.flush()
            self.thread = threading.Thread(target=self._sync, daemon=True)
            self.thread.start()

    def finish(self) -> None:
        if self.thread is not None:
            self.thread.join()
        self._raise()
        self.fh.flush()
        os.fsync(self.fh.fileno())


def _is_token_output(path: Path) -> bool:
    return manifest_path(path).is_file()


def check_token_output(out_path: str | Path, inputs: list[str | Path]) -> None:
    """Refuse an output that is a directory, an input, or an existing file without the manifest tokenize writes."""
    out_path = Path(out_path)
    check_output_file(out_path, command="cs336 tokenize", is_previous=_is_token_output, inputs=inputs,
                      example="train.npy", why=f" (it has no {manifest_path(out_path).name} beside it; a tokenize "
                                               "run killed before writing it leaves such a file: then delete it)")
    if out_path.suffix != ".npy":
        raise UserError(f"output must be a .npy file, got {out_path}; e.g. --out {out_path.with_suffix('.npy')}")


def tokenize_file(tokenizer, input_path: str | Path, out_path: str | Path, workers: int | None = None,
                  force: bool = False) -> dict:
    """Tokenize a text file into ``out_path`` (.npy) + manifest; skip when up to date. Returns the manifest.

    The returned dict also carries ``"skipped"`` (True when nothing was done) and,
    when rebuilt, ``"reason"``; neither is stored in the manifest file.
    """
    input_path, out_path = Path(input_path), Path(out_path)
    if not input_path.is_file():
        raise UserError(f"input text file not found: {input_path}")
    check_token_output(out_path, [input_path])
    reason = "--force" if force else staleness(tokenizer, input_path, out_path)
    if reason is None:
        return {**read_manifest(out_path), "skipped": True}
    out_path.parent.mkdir(parents=True, exist_ok=True)
    workers = clamp_workers(workers)
    source = source_fingerprint(input_path)
    size = source["size"]
    dtype = dtype_for(tokenizer.vocab_size)
    n_pieces = 1 if workers == 1 else max(workers * 8, -(-size // MAX_RANGE))
    ranges = plan_ranges(input_path, size, n_pieces, tokenizer.special_tokens)
    work_dir: Path | None = None  # the workers' parts, in a folder made here (so removing it removes only them)
    started = time.perf_counter()
    total, ids_range = 0, None
    full = "free space and rerun (the token file there before, if any, is unchanged)"
    try:
        with (atomic_path(out_path, full) as out_tmp, open(out_tmp, "wb") as fh,
              byte_progress(size, f"tokenize {input_path.name}") as bar):
            fh.write(npy_header(dtype, 0))  # placeholder until the count is known
            syncer = _Syncer(fh)
            if workers == 1 or len(ranges) <= 1:
                def advance(nbytes: int) -> None:
                    bar.update(nbytes)
                    syncer.kick()

                for start, end in ranges:
                    count, span = encode_range(tokenizer, input_path, start, end, fh, dtype, advance)
                    total, ids_range = total + count, _union(ids_range, span)
            else:
                work_dir = Path(tempfile.mkdtemp(prefix=f".{out_path.name}.", suffix=".parts", dir=out_path.parent))
                tasks = [(str(input_path), a, b, dtype.str, str(work_dir / f"{i:05d}.bin"))
                         for i, (a, b) in enumerate(ranges)]
                with worker_pool(min(workers, len(tasks)), _worker_init, (tokenizer,)) as pool:
                    # in file order: each range is appended (and flushed to disk in the background)
                    # while the workers encode the next ones
                    for part, count, span, nbytes in pool.imap(_worker_task, tasks):
                        _append_file(fh, part)
                        os.unlink(part)
                        total, ids_range = total + count, _union(ids_range, span)
                        syncer.kick()
                        bar.update(nbytes)
            fh.seek(0)
            fh.write(npy_header(dtype, total))
            syncer.finish()
            # Drop the old manifest before the rename: a crash after it then leaves "no manifest" (stale), never
            # a lie.
            manifest_path(out_path).unlink(missing_ok=True)
    finally:
        if work_dir is not None:
            shutil.rmtree(work_dir, ignore_errors=True)
    elapsed = time.perf_counter() - started
    written = out_path.stat()
    manifest = {
        "format": FORMAT, "tokenizer_fingerprint": tokenizer.fingerprint, "vocab_size": tokenizer.vocab_size,
        "special_tokens": list(tokenizer.special_tokens), "dtype": dtype.name, "num_tokens": int(total),
        "min_id": None if ids_range is None else ids_range[0], "max_id": None if ids_range is None else ids_range[1],
        "token_file": {"size": written.st_size, "mtime_ns": written.st_mtime_ns},
        "num_bytes": size, "source": source,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(elapsed, 3), "workers": workers,
    }
    with disk_full_is_user_error(manifest_path(out_path), "free space and rerun (the token file is rebuilt)"):
        atomic_write_text(manifest_path(out_path), json.dumps(manifest, indent=1))
    return {**manifest, "skipped": False, "reason": reason}
