"""A small real TinyStories sample inside the package, so the quickstart runs offline.

Two xz-compressed files (about 0.65 MB together; source, licence and checksums in
this folder's README.md): the first 2 MiB of the train split and the first 1,000
validation stories. :func:`extract_sample` unpacks them into a folder as
``train.txt`` / ``valid.txt``, checking each against its SHA-256, and skips the
work when the files are already there and intact.
"""

from __future__ import annotations

import hashlib
import lzma
from dataclasses import dataclass
from pathlib import Path

from cs336_basics.errors import UserError
from cs336_basics.fileio import atomic_write_bytes

HERE = Path(__file__).resolve().parent
SAMPLE_NAME = "sample"
"""The value of ``cs336 quickstart --data`` that selects this sample."""


@dataclass(frozen=True)
class SampleFile:
    split: str
    packed: str
    sha256: str
    stories: int


SAMPLE_FILES = (
    SampleFile("train", "tinystories_train.txt.xz",
               "009cb2f11b5d2ad64a58562bcc9ad625dfe545c47650343566c8fa1649e3e386", 2316),
    SampleFile("valid", "tinystories_valid.txt.xz",
               "c86f734a3a07fffb8a52f4a7970ac7dbeaf4eaf6a031dc8742a8de92fbbb9446", 1000),
)

DESCRIPTION = ("the TinyStories sample shipped with the package (first 2 MiB of the train split, "
               "1,000 validation stories)")
FULL_DATA_HINT = "for the full data: 'cs336 download tinystories --dest data/' when online, then --data FILE"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def extract_sample(dest: str | Path) -> dict[str, Path]:
    """Unpack the sample into ``dest/train.txt`` and ``dest/valid.txt``; return {split: path}."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    out = {}
    for f in SAMPLE_FILES:
        target = dest / f"{f.split}.txt"
        if target.is_symlink():
            target.unlink()  # a link left by an earlier --data run must not be written through
        if not (target.is_file() and _sha256(target) == f.sha256):
            packed = HERE / f.packed
            try:
                data = lzma.decompress(packed.read_bytes())
            except (OSError, lzma.LZMAError) as exc:
                raise UserError(f"the bundled sample {packed} is missing or damaged ({exc}); reinstall the "
                                "package or pass --data FILE") from exc
            if hashlib.sha256(data).hexdigest() != f.sha256:
                raise UserError(f"the bundled sample {packed} does not match its checksum; reinstall the package "
                                "or pass --data FILE")
            atomic_write_bytes(target, data)
        out[f.split] = target
    return out
