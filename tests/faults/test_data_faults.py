"""Fault injection on the data side: token files, tokenizer files, input text, downloads, a full disk.

Each test reproduces one way bad data used to turn into a successful-looking result
(or an internal error) and asserts the behaviour that replaced it: exit code 2, one
line on stderr naming the problem and the fix, no traceback, and the files already
on disk unchanged or still valid. Commands run as a user runs them (``run_cli``);
the full-disk cases run ``cli.main`` in this process, because the fault is a patched
writer (no root, no small file system needed).
"""

from __future__ import annotations

import builtins
import dataclasses
import errno
import json
import os
import re
import shlex
from pathlib import Path

import numpy as np
import pytest

from huggingface_hub import constants, file_download

from cs336_basics import datasets, download
from cs336_basics.errors import DiskFullError, UserError
from cs336_basics.tokenizer import token_files
from cs336_basics.tokenizer.bpe_train import train_bpe
from cs336_basics.tokenizer.token_files import manifest_path, open_token_file, read_manifest, tokenize_file
from cs336_basics.tokenizer.tokenizer import Tokenizer
from cs336_basics.tokenizer.tokenizer_dir import save_tokenizer_dir
from tests.conftest import run_cli
from tests.hub_fixtures import LocalServer, cached_blobs, corpus, hub_env, use_hub
from tests.test_download import TS_TRAIN, TS_VALID
from tests.training_fixtures import make_byte_dataset

EOT = "<|endoftext|>"
TINY_MODEL = ["--set", "model.vocab_size=257", "--set", "model.context_length=32", "--set", "model.d_model=32",
              "--set", "model.num_layers=1", "--set", "model.num_heads=4", "--set", "model.d_ff=64",
              "--set", "train.device=cpu", "--set", "train.samples=false", "--set", "logging.quiet=true",
              "--total-steps", "2", "--batch-size", "2"]


# ----------------------------------------------------------------------------- helpers
def one_line_error(proc_or_err, *fragments: str) -> str:
    """The ``cs336: error:`` line of a failed command; asserts it is the only error line and has no traceback."""
    err = proc_or_err if isinstance(proc_or_err, str) else proc_or_err.stderr
    assert "Traceback" not in err and "internal error" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("cs336: error:")]
    assert len(errors) == 1, err
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes): what "unchanged" is checked against."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def quoted_command(message: str) -> list[str]:
    """The ``cs336 ...`` command quoted in an error or warning message, as arguments after ``cs336``."""
    found = re.search(r"'cs336 ([^']+)'", message)
    assert found, message
    return shlex.split(found.group(1))


def train_cli(dataset: Path, tmp_path: Path, *extra: str):
    return run_cli("train", "--dataset", str(dataset), "--runs-dir", str(tmp_path / "runs"), "--run-name", "r",
                   *TINY_MODEL, *extra)


@pytest.fixture(scope="module")
def byte_dataset(tmp_path_factory) -> Path:
    """A dataset directory (byte-level tokenizer of 257 ids, train/valid text and token files); copy before changing."""
    return make_byte_dataset(tmp_path_factory.mktemp("bytes") / "data")


@pytest.fixture
def dataset(byte_dataset, tmp_path) -> Path:
    import shutil

    return Path(shutil.copytree(byte_dataset, tmp_path / "data"))


@pytest.fixture(scope="module")
def small_tokenizer(tmp_path_factory, byte_dataset) -> Path:
    """A 300-token BPE tokenizer directory (so merges.txt has lines to damage)."""
    vocab, merges = train_bpe(byte_dataset / "train.txt", 300, [EOT], workers=1)
    return save_tokenizer_dir(tmp_path_factory.mktemp("tok") / "tokenizer", vocab, merges, [EOT])


# ----------------------------------------------------------------------------- token files: ids outside the vocabulary
def test_out_of_range_id_with_a_valid_manifest_is_refused_before_training(dataset, tmp_path):
    """The .npy was replaced after its manifest (same length, so the count check passes): the ids are scanned."""
    ids = np.load(dataset / "train.npy")
    ids[len(ids) // 2] = 300
    np.save(dataset / "train.npy", ids)
    before = snapshot(dataset)
    proc = train_cli(dataset, tmp_path)
    assert proc.returncode == 2
    one_line_error(proc, "train.npy", "contains token id 300", "257 ids", "cs336 tokenize")
    assert snapshot(dataset) == before
    assert not (tmp_path / "runs" / "r").exists()  # refused before the run directory was made


def test_recorded_id_range_is_trusted_without_a_scan_and_checked(dataset, monkeypatch):
    path = dataset / "train.npy"
    manifest = read_manifest(path)
    ids = np.load(path)
    assert (manifest["min_id"], manifest["max_id"]) == (int(ids.min()), int(ids.max()))

    def no_scan(*_):
        raise AssertionError("a fresh manifest's id range must be used, not a scan")

    monkeypatch.setattr(token_files, "id_range", no_scan)
    assert open_token_file(path, vocab_size=257).shape == ids.shape
    stat = path.stat()
    manifest_path(path).write_text(json.dumps({**manifest, "max_id": 400}))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(UserError, match="contains token id 400"):
        open_token_file(path, vocab_size=257)


def test_negative_ids_in_a_signed_file_are_refused(dataset, tmp_path):
    ids = np.load(dataset / "valid.npy").astype(np.int32)
    ids[3] = -5
    np.save(dataset / "valid.npy", ids)
    manifest = read_manifest(dataset / "valid.npy")
    manifest_path(dataset / "valid.npy").write_text(json.dumps({**manifest, "dtype": "int32"}))
    proc = train_cli(dataset, tmp_path)
    assert proc.returncode == 2
    one_line_error(proc, "valid.npy", "negative token id -5")


def test_manifest_written_before_id_ranges_still_loads_and_is_scanned(dataset):
    path = dataset / "train.npy"
    old = {k: v for k, v in read_manifest(path).items() if k not in ("min_id", "max_id", "token_file")}
    manifest_path(path).write_text(json.dumps(old))
    assert open_token_file(path, vocab_size=257).shape[0] == old["num_tokens"]
    ids = np.load(path)
    ids[7] = 300
    np.save(path, ids)
    with pytest.raises(UserError, match="contains token id 300"):
        open_token_file(path, vocab_size=257)


# ----------------------------------------------------------------------------- token files: damaged or missing manifests
@pytest.mark.parametrize("damage, problem", [
    (lambda m: b"{not json", "not valid JSON"),
    (lambda m: b"[1, 2, 3]", "a JSON list"),
    (lambda m: json.dumps({k: v for k, v in m.items() if k != "tokenizer_fingerprint"}).encode(),
     "no 'tokenizer_fingerprint'"),
    (lambda m: json.dumps({**m, "num_tokens": str(m["num_tokens"])}).encode(), "'num_tokens' is"),
    (lambda m: json.dumps({**m, "vocab_size": True}).encode(), "'vocab_size' is true"),
    (lambda m: json.dumps({**m, "dtype": "float32"}).encode(), "not an integer type"),
    (lambda m: b"\xff\xfe{}", "not UTF-8"),
])
def test_damaged_manifest_is_an_error_not_a_missing_one(dataset, tmp_path, damage, problem):
    target = manifest_path(dataset / "train.npy")
    target.write_bytes(damage(json.loads(target.read_text())))
    before = snapshot(dataset)
    proc = train_cli(dataset, tmp_path)
    assert proc.returncode == 2
    line = one_line_error(proc, "train.npy.manifest.json is damaged", problem, "--force")
    assert snapshot(dataset) == before and not (tmp_path / "runs" / "r").exists()
    # the advice works: rebuilding with the suggested command makes the file usable again
    args = [a.replace("DIR", str(dataset / "tokenizer")).replace("TEXT", str(dataset / "train.txt"))
            for a in quoted_command(line)]
    assert run_cli(*args).returncode == 0
    assert open_token_file(dataset / "train.npy", vocab_size=257).shape[0] == read_manifest(dataset / "train.npy")[
        "num_tokens"]


def test_missing_manifest_warns_and_scans(dataset, tmp_path):
    ids = np.load(dataset / "train.npy")
    ids[-1] = 999
    np.save(dataset / "train.npy", ids)
    manifest_path(dataset / "train.npy").unlink()
    proc = train_cli(dataset, tmp_path)
    assert proc.returncode == 2
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "train.npy has no manifest" in warnings[0] and "scanning" in warnings[0]
    one_line_error(proc, "contains token id 999")


def test_missing_manifest_warning_through_the_api(dataset, capsys):
    manifest_path(dataset / "valid.npy").unlink()
    assert len(open_token_file(dataset / "valid.npy", vocab_size=257)) > 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("warning:") and "no manifest" in err


def test_text_file_given_as_token_file_gets_advice_that_works(dataset, tmp_path):
    valid_txt = dataset / "valid.txt"
    proc = train_cli(dataset, tmp_path, "--set", f"data.valid_path={valid_txt}")
    assert proc.returncode == 2
    line = one_line_error(proc, str(valid_txt), "token files are .npy")
    assert "re-eate" not in line and f"--out {valid_txt} " not in line and "--force" not in line
    args = [a.replace("DIR", str(dataset / "tokenizer")) for a in quoted_command(line)]
    assert args[args.index("--input") + 1] == str(valid_txt)
    new = Path(args[args.index("--out") + 1])
    new.unlink()
    manifest_path(new).unlink()
    assert run_cli(*args).returncode == 0 and new.exists()


def test_unreadable_token_file_advice_is_spelled_right(dataset):
    (dataset / "valid.npy").write_bytes(b"garbage")
    with pytest.raises(UserError) as exc:
        open_token_file(dataset / "valid.npy")
    assert "re-eate" not in str(exc.value) and "rebuild it with 'cs336 tokenize" in str(exc.value)
    assert str(exc.value).endswith("--force'")


# ----------------------------------------------------------------------------- corrupt tokenizer files
def _corrupt(tok_dir: Path, name: str, data: bytes) -> None:
    (tok_dir / name).write_bytes(data)


def _bad_byte_on_line_3(data: bytes) -> bytes:
    lines = data.split(b"\n")
    lines[2] = b"\xff" + lines[2]
    return b"\n".join(lines)


A1 = '"\u0101"'.encode()  # how vocab.json spells the token of byte 0x01 (id 1, line 3)


@pytest.mark.parametrize("name, edit, where", [
    ("merges.txt", _bad_byte_on_line_3, "merges.txt:3: not UTF-8"),
    ("merges.txt", lambda b: b + b"onlyone\n", "merges.txt:45: expected two tokens"),
    ("merges.txt", lambda b: b + b"a \x01\n", "merges.txt:45: "),
    ("meta.json", lambda b: b"[1, 2]", "meta.json holds a JSON list"),
    ("meta.json", lambda b: b'{"special_tokens": "<|endoftext|>"}', "meta.json: 'special_tokens' is"),
    ("meta.json", lambda b: b"{\n\"a\": 1,,\n}", "meta.json:2: not valid JSON"),
    ("vocab.json", lambda b: b.replace(A1 + b": 1,", A1 + b': "1",'), "vocab.json:3: the id of"),
    ("vocab.json", lambda b: b.replace(A1 + b": 1,", A1 + b": 1.5,"), "vocab.json:3: the id of"),
    ("vocab.json", lambda b: b.replace(A1 + b": 1,", A1 + b": 0,"), "vocab.json:3: id 0 is given to two tokens"),
    ("vocab.json", lambda b: b[:-5], "vocab.json:"),
    ("vocab.json", lambda b: b"[]", "vocab.json holds a JSON list"),
    ("vocab.json", lambda b: b.replace(A1, b'"\xff"', 1), "vocab.json:3: not UTF-8"),
])
def test_corrupt_tokenizer_file_is_a_one_line_error_naming_file_and_line(small_tokenizer, tmp_path, name, edit,
                                                                          where):
    import shutil

    tok_dir = Path(shutil.copytree(small_tokenizer, tmp_path / "tok"))
    assert (tok_dir / "merges.txt").read_bytes().count(b"\n") == 44  # "#version" + 43 merges
    _corrupt(tok_dir, name, edit((tok_dir / name).read_bytes()))
    text = tmp_path / "t.txt"
    text.write_text("Once upon a time.")
    out = tmp_path / "t.npy"
    proc = run_cli("tokenize", "--tokenizer", str(tok_dir), "--input", str(text), "--out", str(out))
    assert proc.returncode == 2
    one_line_error(proc, where)
    assert not out.exists()


# ----------------------------------------------------------------------------- special tokens
def test_string_as_special_tokens_is_a_type_error(byte_dataset):
    vocab = {i: bytes([i]) for i in range(256)}
    with pytest.raises(TypeError, match=r"wrap it in a list: special_tokens=\['<\|endoftext\|>'\]"):
        Tokenizer(vocab, [], EOT)
    with pytest.raises(TypeError, match="wrap it in a list"):
        train_bpe(byte_dataset / "train.txt", 300, "abc")
    with pytest.raises(TypeError, match="must be strings"):
        Tokenizer(vocab, [], [EOT.encode()])


def test_separator_in_text_without_special_token_warns(byte_dataset, tmp_path):
    text = byte_dataset / "train.txt"
    text_with_eot = tmp_path / "docs.txt"
    text_with_eot.write_text(text.read_text(encoding="utf-8")[:20_000].replace(". ", f". {EOT}", 20), encoding="utf-8")
    proc = run_cli("tokenizer", "train", "--input", str(text_with_eot), "--vocab-size", "300", "--out",
                   str(tmp_path / "none"), "--no-special-tokens", "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and EOT in warnings[0] and "--special-token" in warnings[0]
    assert "special tokens: none" in proc.stdout
    # the default is the same special token 'cs336 prepare' uses, and the summary says so
    proc = run_cli("tokenizer", "train", "--input", str(text_with_eot), "--vocab-size", "300", "--out",
                   str(tmp_path / "default"), "--workers", "1")
    assert proc.returncode == 0 and "warning" not in proc.stderr, proc.stderr
    assert f"special tokens: '{EOT}'" in proc.stdout
    assert json.loads((tmp_path / "default" / "meta.json").read_text())["special_tokens"] == [EOT]
    proc = run_cli("tokenizer", "train", "--input", str(text), "--vocab-size", "300", "--out", str(tmp_path / "x"),
                   "--no-special-tokens", "--special-token", EOT)
    assert proc.returncode == 2
    one_line_error(proc, "--no-special-tokens contradicts --special-token")


# ----------------------------------------------------------------------------- text in another encoding
def _stories(byte_dataset: Path, n: int = 60_000) -> str:
    return (byte_dataset / "train.txt").read_text(encoding="utf-8")[:n]


@pytest.mark.parametrize("encoding, expected", [
    ("utf-16", "iconv -f UTF-16 -t UTF-8"),
    ("utf-16-le", "iconv -f UTF-16LE -t UTF-8"),
    ("utf-32", "iconv -f UTF-32 -t UTF-8"),
])
def test_wide_encodings_warn_on_tokenize(byte_dataset, tmp_path, encoding, expected):
    text = tmp_path / "wide.txt"
    text.write_bytes(_stories(byte_dataset, 5_000).encode(encoding))
    proc = run_cli("tokenize", "--tokenizer", str(byte_dataset / "tokenizer"), "--input", str(text), "--out",
                   str(tmp_path / "wide.npy"), "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and expected in warnings[0], proc.stderr


@pytest.mark.parametrize("content, expected", [
    (lambda s: s.encode("cp1252", "replace").replace(b"e", b"\xe9"), "WINDOWS-1252"),
    (lambda s: bytes(range(256)) * 40, "NUL bytes"),
])
def test_latin1_and_binary_input_warn(byte_dataset, tmp_path, content, expected):
    text = tmp_path / "odd.txt"
    text.write_bytes(content(_stories(byte_dataset, 20_000)))
    proc = run_cli("tokenizer", "train", "--input", str(text), "--vocab-size", "300", "--out", str(tmp_path / "t"),
                   "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and expected in warnings[0], proc.stderr


def test_prepare_on_utf16_warns_and_succeeds_instead_of_advising_force(byte_dataset, tmp_path):
    root = tmp_path / "wide"
    root.mkdir()
    text = _stories(byte_dataset)
    (root / "train.txt").write_bytes(text[:50_000].encode("utf-16"))
    (root / "valid.txt").write_bytes(text[50_000:].encode("utf-16"))
    proc = run_cli("prepare", "--data", str(root), "--vocab-size", "300", "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2 and all("iconv -f UTF-16 -t UTF-8" in w for w in warnings)
    assert "--force" not in proc.stderr
    # the suggested conversion is a command that works, and prepare is then quiet
    for warning in warnings:
        command = re.search(r"'(iconv [^']+)'", warning).group(1)
        assert os.system(command) == 0  # noqa: S605 - the command quoted to the user, run as they would
    proc = run_cli("prepare", "--data", str(root), "--vocab-size", "300", "--workers", "1")
    assert proc.returncode == 0 and "warning" not in proc.stderr, proc.stderr
    assert (root / "train.txt").read_text(encoding="utf-8") == text[:50_000]


# ----------------------------------------------------------------------------- validation split too short
def _split_dir(byte_dataset: Path, tmp_path: Path, valid: str) -> Path:
    root = tmp_path / "ds"
    root.mkdir()
    (root / "train.txt").write_text(_stories(byte_dataset), encoding="utf-8")
    (root / "valid.txt").write_text(valid, encoding="utf-8")
    return root


@pytest.mark.parametrize("valid, found", [("", "is empty"), ("Once upon a time. " * 10, "is 180 bytes long")])
def test_empty_or_tiny_validation_split_is_rejected_before_anything_is_built(byte_dataset, tmp_path, valid, found):
    root = _split_dir(byte_dataset, tmp_path, valid)
    before = snapshot(root)
    proc = run_cli("prepare", "--data", str(root), "--vocab-size", "300", "--workers", "1")
    assert proc.returncode == 2
    one_line_error(proc, "valid.txt", found, "257 tokens of one context window", "--context-length")
    assert snapshot(root) == before  # no tokenizer, no token file
    # a model with a shorter context needs less: the same text passes with --context-length 16
    if valid:
        proc = run_cli("prepare", "--data", str(root), "--vocab-size", "300", "--workers", "1", "--context-length", "16")
        assert proc.returncode == 0, proc.stderr


def test_validation_split_with_too_few_tokens_is_rejected_before_tokenizing(byte_dataset, tmp_path):
    story = _stories(byte_dataset)[:600]  # more bytes than the window has tokens, fewer tokens once merged
    root = _split_dir(byte_dataset, tmp_path, story)
    proc = run_cli("prepare", "--data", str(root), "--vocab-size", "300", "--workers", "1", "--context-length", "500")
    assert proc.returncode == 2
    line = one_line_error(proc, "valid.txt", "tokens long", "501 tokens")
    assert int(re.search(r"is (\d+) tokens long", line).group(1)) < 501
    assert not (root / "train.npy").exists() and not (root / "valid.npy").exists()


def test_prepare_records_the_id_range_it_checks(byte_dataset, tmp_path):
    root = _split_dir(byte_dataset, tmp_path, (byte_dataset / "valid.txt").read_text(encoding="utf-8"))
    result = run_cli("prepare", "--data", str(root), "--vocab-size", "300", "--workers", "1")
    assert result.returncode == 0, result.stderr
    assert f"special tokens\t{EOT}" in result.stdout
    for split in ("train", "valid"):
        ids, manifest = np.load(root / f"{split}.npy"), read_manifest(root / f"{split}.npy")
        assert (manifest["min_id"], manifest["max_id"]) == (int(ids.min()), int(ids.max()))


# ----------------------------------------------------------------------------- downloads that are not the data
@pytest.fixture
def server(tmp_path):
    root = tmp_path / "remote"
    root.mkdir()
    (root / TS_TRAIN).write_bytes(corpus(400, 1))
    (root / TS_VALID).write_bytes(corpus(60, 2))
    srv = LocalServer(root)
    yield srv
    srv.close()


HTML_PAGE = b"<!DOCTYPE html><html><body>Service unavailable. Try again.</body></html>\n"


@pytest.mark.parametrize("content_type, body, reason", [
    ("text/html; charset=utf-8", HTML_PAGE, "a body starting with '<!DOCTYPE html><html'"),
    (None, b"\n  <html><body>Service unavailable</body></html>", "a body starting with '<html><body>Servic"),
    ("application/json", b'{"error": "Repository not found"}', "a body starting with '{\"error\""),
    ("text/plain", b'{"error": "rate limited"}', "a body starting with '{\"error\""),
    ("text/plain", b"", "sent an empty file"),
])
@pytest.mark.parametrize("prefix", [False, True], ids=["whole", "prefix"])
def test_error_page_is_not_saved_as_a_dataset(server, tmp_path, content_type, body, reason, prefix):
    """A mirror that serves a page (with HTTP 200) as if it were the file: refused, kept neither in DEST nor in
    the Hub cache, from where it would be served again to the next download."""
    server.pages[TS_VALID] = (content_type, body)
    dest = tmp_path / "data"
    proc = run_cli("download", "tinystories", "--dest", str(dest), "--split", "valid",
                   *(["--max-bytes", "1K"] if prefix else []), env=hub_env(server.url, tmp_path / "hf"))
    assert proc.returncode == 2
    one_line_error(proc, reason, "--from-dir")
    assert list((dest / "tinystories").iterdir()) == []  # nothing kept, not even the transfer's state
    assert cached_blobs(tmp_path / "hf" / "hub") == []


def test_error_page_leaves_a_finished_download_untouched(server, tmp_path):
    dest = tmp_path / "data"
    assert run_cli("download", "tinystories", "--dest", str(dest), "--split", "valid",
                   env=hub_env(server.url, tmp_path / "hf")).returncode == 0
    before = snapshot(dest)
    server.pages[TS_VALID] = ("text/html", HTML_PAGE)
    fresh_cache = hub_env(server.url, tmp_path / "hf2")  # with the first cache, the client would not ask again
    proc = run_cli("download", "tinystories", "--dest", str(dest), "--split", "valid", "--force", env=fresh_cache)
    assert proc.returncode == 2
    one_line_error(proc, "error page")
    assert snapshot(dest) == before


@pytest.mark.parametrize("field, value, message", [
    ("size", 123, "bytes but 123 were expected"),
    ("sha256", "0" * 64, "checksum mismatch"),
])
def test_catalog_size_and_checksum_are_checked_before_placing(server, tmp_path, monkeypatch, field, value, message):
    server.set(advertise_sha=False)  # a git-style ETag: only the catalog knows the SHA-256
    use_hub(monkeypatch, server.url, tmp_path / "hf")
    entry = datasets.DATASETS["tinystories"]["valid"]
    monkeypatch.setitem(datasets.DATASETS["tinystories"], "valid", dataclasses.replace(entry, **{field: value}))
    with pytest.raises(UserError, match=message):
        download.download_dataset("tinystories", tmp_path, splits=["valid"])
    assert not (tmp_path / "tinystories" / TS_VALID).exists()


def test_from_dir_refuses_a_saved_error_page(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / TS_VALID).write_bytes(HTML_PAGE)
    with pytest.raises(UserError, match="error page saved as a file"):
        download.download_dataset("tinystories", tmp_path / "d", splits=["valid"], from_dir=src)
    assert not (tmp_path / "d" / "tinystories" / TS_VALID).exists()


# ----------------------------------------------------------------------------- a full disk
class _DiskFillsUp:
    """A binary file whose writes fail with ENOSPC once ``room`` bytes have been written."""

    def __init__(self, path, mode: str, room: int, fh=None) -> None:
        self._fh, self._path, self.room = fh or builtins.open(path, mode), str(path), room

    def write(self, data) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self._path)
        self.room -= len(data)
        return self._fh.write(data)

    def __getattr__(self, name):
        return getattr(self._fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._fh.close()


def _fill_disk_when_writing(monkeypatch, module, suffix: str, room: int) -> None:
    """Make ``module``'s ``open`` hand out a filling-up file for paths ending in ``suffix``."""
    def fake_open(path, mode="r", *args, **kwargs):
        if "w" in mode or "a" in mode:
            if str(path).endswith(suffix):
                return _DiskFillsUp(path, mode, room)
        return builtins.open(path, mode, *args, **kwargs)

    monkeypatch.setattr(module, "open", fake_open, raising=False)


def test_disk_full_while_downloading_is_not_retried_and_places_nothing(server, tmp_path, monkeypatch, capsys):
    """The disk of the Hub cache fills up while the client writes the file: exit 2 naming the cache, no retry,
    nothing placed and no partial blob left; with space freed the same command completes."""
    from cs336_basics.cli import main

    cache = use_hub(monkeypatch, server.url, tmp_path / "hf")
    monkeypatch.setenv("CS336_NO_PROGRESS", "1")
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 1000)  # the disk fills up part-way through the transfer
    client_get = file_download.http_get
    with monkeypatch.context() as full:
        full.setattr(file_download, "http_get", lambda url, temp_file, **kw: client_get(
            url, _DiskFillsUp(temp_file.name, "wb", 5000, fh=temp_file), **kw))
        code = main(["download", "tinystories", "--dest", str(tmp_path / "data"), "--split", "train"])
    assert code == 2
    one_line_error(capsys.readouterr().err, f"no space left on device at {cache}", "free space", "HF_HUB_CACHE")
    assert server.gets() == [None]  # no retry
    assert not (tmp_path / "data" / "tinystories" / TS_TRAIN).exists()
    assert cached_blobs(cache) == []
    out = download.download_dataset("tinystories", tmp_path / "data", splits=["train"])
    assert out["train"].read_bytes() == (server.root / TS_TRAIN).read_bytes()


def test_disk_full_while_tokenizing_keeps_the_old_token_file(dataset, monkeypatch, capsys):
    from cs336_basics.cli import main

    before = snapshot(dataset)
    _fill_disk_when_writing(monkeypatch, token_files, ".tmp", 3000)
    code = main(["tokenize", "--tokenizer", str(dataset / "tokenizer"), "--input", str(dataset / "train.txt"),
                 "--out", str(dataset / "train.npy"), "--workers", "1", "--force"])
    assert code == 2
    one_line_error(capsys.readouterr().err, f"no space left on device at {dataset / 'train.npy'}",
                   "free space and rerun")
    assert snapshot(dataset) == before  # the old token file and manifest, and no temp file
    assert open_token_file(dataset / "train.npy", vocab_size=257).shape[0] > 0


def test_disk_full_on_a_background_flush_is_reported_too(dataset, monkeypatch):
    tok = Tokenizer.from_dir(dataset / "tokenizer")

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(token_files.os, "fdatasync", full)
    with pytest.raises(DiskFullError, match="no space left on device"):
        tokenize_file(tok, dataset / "valid.txt", dataset / "other.npy", workers=1)
    assert not (dataset / "other.npy").exists()
