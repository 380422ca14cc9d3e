"""`cs336 download` through the Hugging Face Hub client, against a local server that speaks the Hub's resolve API.

The server (:mod:`tests.hub_fixtures`) is reached through ``HF_ENDPOINT``, as a mirror would be; its
Hub cache is a folder of the test (``HF_HOME``). The commands run as a user runs them where a Hub
setting is what is tested (the client reads ``HF_*`` at import, so a subprocess with that environment
is the honest test); the rest call :func:`download_dataset` in this process with the same settings.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import pytest
from huggingface_hub import constants, file_download
from hypothesis import given, settings
from hypothesis import strategies as st

from cs336_basics.datasets import DATASETS, copy_prefix, cut_after_last_delimiter
from cs336_basics.download import download_dataset
from cs336_basics.errors import UserError
from tests.conftest import run_cli
from tests.hub_fixtures import COMMIT, LocalServer, cached_blobs, corpus, hub_env, use_hub

TS_TRAIN = DATASETS["tinystories"]["train"].filename
TS_VALID = DATASETS["tinystories"]["valid"].filename
OWT_TRAIN = DATASETS["owt"]["train"].filename
TS_PATH = "/datasets/roneneldan/TinyStories/resolve/main/"


@pytest.fixture
def served(tmp_path):
    root = tmp_path / "remote"
    root.mkdir()
    train, valid = corpus(400, 1), corpus(60, 2)
    (root / TS_TRAIN).write_bytes(train)
    (root / TS_VALID).write_bytes(valid)
    (root / OWT_TRAIN).write_bytes(gzip.compress(train))
    server = LocalServer(root)
    yield server, {"train": train, "valid": valid}
    server.close()


@pytest.fixture
def hub(served, tmp_path, monkeypatch):
    """The client of this process pointed at the local server, its cache in the test's folder."""
    server, data = served
    quick_resume(monkeypatch)
    cache = use_hub(monkeypatch, server.url, tmp_path / "hf")
    return server, data, cache


def quick_resume(monkeypatch) -> None:
    """The client keeps what it received in steps of 10 MiB and pauses a second before it resumes a dropped
    transfer: steps of 1000 bytes and no pause make a drop in a small file show in a quick test."""
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 1000)
    monkeypatch.setattr(file_download.time, "sleep", lambda seconds: None)


def one_line(proc) -> str:
    """The ``cs336: error:`` line of a failed command: exit 2, exactly one error line, no traceback."""
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("cs336: error:")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


def test_whole_files_come_through_the_hub_cache_verified_and_recorded(hub, tmp_path):
    server, data, cache = hub
    out = download_dataset("tinystories", tmp_path / "data")
    assert out["train"].read_bytes() == data["train"]
    assert out["valid"].read_bytes() == data["valid"]
    sha = hashlib.sha256(data["train"]).hexdigest()
    manifest = json.loads((tmp_path / "data" / "tinystories" / "downloads.json").read_text())
    assert manifest[TS_TRAIN]["sha256"] == manifest[TS_TRAIN]["source_sha256"] == sha
    assert manifest[TS_TRAIN]["source"] == server.url + TS_PATH + TS_TRAIN
    assert manifest[TS_TRAIN]["commit"] == COMMIT
    # the published file sits in the shared cache under the client's layout, its blob named by its SHA-256
    assert (cache / "datasets--roneneldan--TinyStories" / "blobs" / sha).read_bytes() == data["train"]
    # no temporary or partial files left behind
    assert sorted(p.name for p in (tmp_path / "data" / "tinystories").iterdir()) == sorted(
        [TS_TRAIN, TS_VALID, "downloads.json"])


def test_rerun_skips_finished_files(hub, tmp_path):
    server, _, _ = hub
    download_dataset("tinystories", tmp_path, splits=["valid"])
    before = len(server.resolves())
    download_dataset("tinystories", tmp_path, splits=["valid"])
    assert len(server.resolves()) == before


@pytest.mark.parametrize("ignore_range", [False, True], ids=["ranged-resume", "server-ignores-range"])
def test_dropped_connection_is_resumed_by_the_client(hub, tmp_path, ignore_range):
    server, data, _ = hub
    server.set(drops=1, drop_after=5000, ignore_range=ignore_range)
    out = download_dataset("tinystories", tmp_path, splits=["train"])
    assert out["train"].read_bytes() == data["train"]
    # the second GET asks for the rest; a server that answers it with the whole file restarts the transfer
    assert server.gets() == [None, "bytes=5000-"]


def test_a_transfer_that_keeps_failing_places_nothing_and_leaves_no_partial_blob(hub, tmp_path):
    server, data, cache = hub
    server.set(drops=10, drop_after=0)  # no byte gets through: the client gives up after its retries
    with pytest.raises(UserError, match="after the Hub client's retries; check the network and rerun") as exc:
        download_dataset("tinystories", tmp_path, splits=["train"])
    assert "\n" not in str(exc.value)
    assert not (tmp_path / "tinystories" / TS_TRAIN).exists()
    assert cached_blobs(cache) == []
    server.set(drops=0)
    assert download_dataset("tinystories", tmp_path, splits=["train"])["train"].read_bytes() == data["train"]


def test_corrupted_transfer_is_detected_placed_nowhere_and_fetched_again(hub, tmp_path):
    server, data, cache = hub
    server.set(corrupt_at=1234)
    with pytest.raises(UserError, match="checksum mismatch.*removed from the Hub cache"):
        download_dataset("tinystories", tmp_path, splits=["train"])
    assert not (tmp_path / "tinystories" / TS_TRAIN).exists()
    assert cached_blobs(cache) == []  # a corrupted blob is not served again from the cache
    server.set(corrupt_at=None)
    assert download_dataset("tinystories", tmp_path, splits=["train"])["train"].read_bytes() == data["train"]


@pytest.mark.parametrize("fault,message", [("missing", "HTTP 404 Not Found"), ("500", "server error HTTP 500")])
def test_server_errors_are_one_line_user_errors(hub, tmp_path, fault, message):
    server, _, _ = hub
    if fault == "missing":
        (server.root / TS_VALID).unlink()
    else:
        server.fail[TS_VALID] = 500
    with pytest.raises(UserError, match=message) as exc:
        download_dataset("tinystories", tmp_path, splits=["valid"])
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("fault, gets", [
    ({}, ["bytes=0-9999"]),  # only the prefix is asked for
    ({"ignore_range": True}, ["bytes=0-9999"]),  # the whole file comes: the transfer stops after the prefix
    ({"drops": 1, "drop_after": 3000}, ["bytes=0-9999", "bytes=3000-9999"]),  # the client resumes the range
], ids=["ranged", "server-ignores-range", "dropped-and-resumed"])
def test_prefix_is_cut_after_last_delimiter(hub, tmp_path, fault, gets):
    server, data, _ = hub
    server.set(**fault)
    out = download_dataset("tinystories", tmp_path, splits=["train"], max_bytes=10_000)
    text = out["train"].read_bytes()
    assert len(text) <= 10_000
    assert text.endswith(b"<|endoftext|>")
    assert data["train"].startswith(text)
    text.decode("utf-8")
    assert server.gets() == gets
    # a different prefix size is not "up to date"; the full file replaces the prefix
    out = download_dataset("tinystories", tmp_path, splits=["train"])
    assert out["train"].read_bytes() == data["train"]


def test_a_limit_beyond_the_file_fetches_it_whole_and_verified(hub, tmp_path):
    server, data, _ = hub
    out = download_dataset("tinystories", tmp_path, splits=["train"], max_bytes=10**9)
    assert out["train"].read_bytes() == data["train"]  # its last story included
    manifest = json.loads((tmp_path / "tinystories" / "downloads.json").read_text())
    assert manifest[TS_TRAIN]["source_sha256"] == hashlib.sha256(data["train"]).hexdigest()
    assert server.gets() == [None]


def test_a_prefix_of_a_file_in_the_hub_cache_needs_no_request(hub, tmp_path):
    server, data, _ = hub
    download_dataset("tinystories", tmp_path / "a", splits=["train"])
    before = len(server.resolves())
    out = download_dataset("tinystories", tmp_path / "b", splits=["train"], max_bytes=8_000)
    assert len(server.resolves()) == before
    text = out["train"].read_bytes()
    assert 0 < len(text) <= 8_000 and text.endswith(b"<|endoftext|>") and data["train"].startswith(text)


def test_gz_is_decompressed_and_prefix_streams(hub, tmp_path):
    server, data, _ = hub
    out = download_dataset("owt", tmp_path / "a", splits=["train"])
    assert out["train"].name == "owt_train.txt"
    assert out["train"].read_bytes() == data["train"]
    assert not list((tmp_path / "a" / "owt").glob("*.gz*"))
    # the prefix is a stream decompressed on the way, not a cached whole file: a fresh cache shows it
    (server.root / "owt_valid.txt.gz").write_bytes(gzip.compress(data["train"]) + gzip.compress(data["valid"]))
    server.set(drops=1, drop_after=2000)  # a drop mid-stream: the decompression goes on where the bytes resume
    out = download_dataset("owt", tmp_path / "b", splits=["valid"], max_bytes=50_000)
    prefix = out["valid"].read_bytes()
    assert 40_000 < len(prefix) <= 50_000 and prefix.endswith(b"<|endoftext|>") and data["train"].startswith(prefix)
    assert server.gets()[-2:] == [None, "bytes=2000-"]
    # two gzip members one after the other are one text, as gzip reads them
    out = download_dataset("owt", tmp_path / "c", splits=["valid"], max_bytes=10**9)
    assert out["valid"].read_bytes() == data["train"] + data["valid"]


def test_a_prefix_that_is_an_error_page_is_refused(hub, tmp_path):
    server, _, _ = hub
    server.pages[TS_TRAIN] = ("text/html", b"<!DOCTYPE html><html><body>Not here</body></html>" * 100)
    with pytest.raises(UserError, match="error page"):
        download_dataset("tinystories", tmp_path, splits=["train"], max_bytes=1_000)
    assert list((tmp_path / "tinystories").iterdir()) == []


def test_from_dir_offline_copy_with_prefix(served, tmp_path):
    server, data = served
    server.close()  # nothing may be fetched
    out = download_dataset("tinystories", tmp_path / "d", from_dir=server.root, max_bytes=4_000)
    assert data["valid"].startswith(out["valid"].read_bytes())
    out = download_dataset("owt", tmp_path / "d", from_dir=server.root, splits=["train"])
    assert out["train"].read_bytes() == data["train"]
    with pytest.raises(UserError, match="neither owt_valid.txt.gz nor owt_valid.txt"):
        download_dataset("owt", tmp_path / "d", from_dir=server.root, splits=["valid"])


def test_verify_detects_local_damage(hub, tmp_path):
    out = download_dataset("tinystories", tmp_path, splits=["valid"])
    damaged = bytearray(out["valid"].read_bytes())
    damaged[10] ^= 1
    out["valid"].write_bytes(bytes(damaged))
    with pytest.raises(UserError, match="does not match its recorded checksum"):
        download_dataset("tinystories", tmp_path, splits=["valid"], verify=True)


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


# ----------------------------------------------------------------------------- the Hub settings, as a user sets them
def download_cli(dest: Path, *args: str, env: dict[str, str]):
    return run_cli("download", "tinystories", "--dest", str(dest), *args, env=env)


def test_cli_downloads_from_the_mirror_in_hf_endpoint(served, tmp_path):
    server, data = served
    env = hub_env(server.url, tmp_path / "hf")
    proc = download_cli(tmp_path / "d", "--split", "valid", "--max-bytes", "3K", env=env)
    assert proc.returncode == 0, proc.stderr
    path = Path(proc.stdout.split("\t")[1].strip())
    assert data["valid"].startswith(path.read_bytes())
    assert [(r.method, r.path) for r in server.resolves()] == [("HEAD", TS_PATH + TS_VALID),
                                                               ("GET", TS_PATH + TS_VALID)]
    manifest = json.loads((tmp_path / "d" / "tinystories" / "downloads.json").read_text())
    assert manifest[TS_VALID]["source"].startswith(server.url + "/")
    # a missing file is a one-line error naming the fix, exit 2
    (server.root / TS_TRAIN).unlink()
    line = one_line(download_cli(tmp_path / "d", "--split", "train", env=env))
    assert "HTTP 404" in line and "HF_ENDPOINT" in line


def test_cli_sends_hf_token_to_a_gated_repository(served, tmp_path):
    server, data = served
    server.set(token="hf_test_token")
    line = one_line(download_cli(tmp_path / "d", "--split", "valid", env=hub_env(server.url, tmp_path / "hf")))
    assert "gated" in line and "set HF_TOKEN" in line
    assert not (tmp_path / "d" / "tinystories" / TS_VALID).exists()
    first = len(server.resolves())
    for args in (["--split", "valid"], ["--split", "train", "--max-bytes", "4K"]):  # whole file, ranged prefix
        proc = download_cli(tmp_path / "d", *args, env=hub_env(server.url, tmp_path / "hf", HF_TOKEN="hf_test_token"))
        assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "d" / "tinystories" / TS_VALID).read_bytes() == data["valid"]
    sent = server.resolves()[first:]
    assert {r.method for r in sent} == {"HEAD", "GET"}
    assert all(r.authorization == "Bearer hf_test_token" for r in sent)


def test_cli_file_in_the_hub_cache_is_not_fetched_again(served, tmp_path):
    server, data = served
    env = hub_env(server.url, tmp_path / "hf")
    assert download_cli(tmp_path / "a", "--split", "valid", env=env).returncode == 0
    assert server.gets() == [None]
    proc = download_cli(tmp_path / "b", "--split", "valid", env=env)  # another project, the same Hub cache
    assert proc.returncode == 0, proc.stderr
    assert server.gets() == [None]  # asked whether main moved (HEAD), never fetched again
    assert (tmp_path / "b" / "tinystories" / TS_VALID).read_bytes() == data["valid"]


def test_cli_hf_hub_offline(served, tmp_path):
    server, data = served
    offline = hub_env(server.url, tmp_path / "hf", HF_HUB_OFFLINE="1")
    line = one_line(download_cli(tmp_path / "d", "--split", "valid", env=offline))
    assert "HF_HUB_OFFLINE is set" in line and "not in the Hub cache" in line and "--from-dir" in line
    line = one_line(download_cli(tmp_path / "d", "--split", "valid", "--max-bytes", "2K", env=offline))
    assert "HF_HUB_OFFLINE is set" in line
    assert server.resolves() == []
    # once the file is in the cache, offline works, for the whole file and for a prefix, without a request
    online = hub_env(server.url, tmp_path / "hf")
    assert download_cli(tmp_path / "online", "--split", "valid", env=online).returncode == 0
    asked = len(server.requests)
    for dest, extra in ((tmp_path / "whole", []), (tmp_path / "prefix", ["--max-bytes", "2K"])):
        proc = download_cli(dest, "--split", "valid", *extra, env=offline)
        assert proc.returncode == 0, proc.stderr
        assert data["valid"].startswith((dest / "tinystories" / TS_VALID).read_bytes())
    assert (tmp_path / "whole" / "tinystories" / TS_VALID).read_bytes() == data["valid"]
    assert len(server.requests) == asked


def test_real_tinystories_served_locally(tmp_path, tinystories_valid, monkeypatch):
    """The TinyStories fixture through the whole path: served, resumed after a drop, verified."""
    src = tinystories_valid
    root = tmp_path / "remote"
    root.mkdir()
    (root / TS_VALID).write_bytes(src.read_bytes())
    server = LocalServer(root)
    try:
        quick_resume(monkeypatch)
        use_hub(monkeypatch, server.url, tmp_path / "hf")
        server.set(drops=1, drop_after=300_000)
        out = download_dataset("tinystories", tmp_path / "data", splits=["valid"])
        assert out["valid"].read_bytes() == src.read_bytes()
        assert server.gets() == [None, "bytes=300000-"]
    finally:
        server.close()


def test_cli_token_goes_to_the_hub_and_never_to_its_storage_host(served, tmp_path):
    """Large files redirect to a storage host, as on the Hub: the client follows, and the token stays with the Hub."""
    server, data = served
    server.set(token="hf_test_token", cdn=True)
    env = hub_env(server.url, tmp_path / "hf", HF_TOKEN="hf_test_token")
    for args in (["--split", "valid"], ["--split", "train", "--max-bytes", "4K"]):  # whole file, ranged prefix
        proc = download_cli(tmp_path / "d", *args, env=env)
        assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "d" / "tinystories" / TS_VALID).read_bytes() == data["valid"]
    assert data["train"].startswith((tmp_path / "d" / "tinystories" / TS_TRAIN).read_bytes())
    assert all(r.authorization == "Bearer hf_test_token" for r in server.resolves())
    fetched = server.from_cdn()
    assert [r.range for r in fetched] == [None, "bytes=0-4095"]
    assert all(r.authorization is None for r in fetched)
