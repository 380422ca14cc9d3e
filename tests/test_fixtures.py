"""The fixtures are what tests/fixtures/README.md says they are, and stay small."""

from __future__ import annotations

import hashlib
import json

import pytest

from tests.conftest import (FIXTURES, MULTILINGUAL, TINYSTORIES_TRAIN, TINYSTORIES_VALID, fixture_bytes,
                            project_documents)

EOT = b"<|endoftext|>"
SHA256 = {
    "gpt2/vocab.json": "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
    "gpt2/merges.txt": "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
    TINYSTORIES_TRAIN: "009cb2f11b5d2ad64a58562bcc9ad625dfe545c47650343566c8fa1649e3e386",
    TINYSTORIES_VALID: "c86f734a3a07fffb8a52f4a7970ac7dbeaf4eaf6a031dc8742a8de92fbbb9446",
}


def test_sizes_stay_within_the_limits():
    files = [p for p in FIXTURES.rglob("*") if p.is_file()]
    assert max(p.stat().st_size for p in files) < 2_000_000
    assert sum(p.stat().st_size for p in files) < 5_000_000


def test_every_file_is_listed_in_the_readme():
    readme = (FIXTURES / "README.md").read_text(encoding="utf-8")
    for path in FIXTURES.rglob("*"):
        if path.is_file() and path.name not in ("README.md", ".gitattributes"):
            assert f"`{path.relative_to(FIXTURES).as_posix()}`" in readme, path


@pytest.mark.parametrize("name", list(SHA256))
def test_unpacked_contents_are_the_documented_ones(name):
    assert hashlib.sha256(fixture_bytes(name)).hexdigest() == SHA256[name]


def test_tinystories_samples_are_whole_stories():
    train, valid = fixture_bytes(TINYSTORIES_TRAIN), fixture_bytes(TINYSTORIES_VALID)
    assert train.count(EOT) == 2316 and valid.count(EOT) == 1000
    assert train.endswith(b"\n" + EOT + b"\n") and valid.endswith(b"\n" + EOT + b"\n")
    assert len(train) > (2 << 20) - 4096 and len(valid) > 800_000
    stories = train.decode("utf-8").split("\n<|endoftext|>\n")
    assert stories[-1] == "" and min(len(s) for s in stories[:-1]) > 20  # real stories, no empty ones


def test_gpt2_files_are_complete():
    vocab = json.loads(fixture_bytes("gpt2/vocab.json"))
    merges = fixture_bytes("gpt2/merges.txt").decode("utf-8").splitlines()
    assert len(vocab) == 50257 and vocab["<|endoftext|>"] == 50256
    assert merges[0].startswith("#version") and len(merges) == 1 + 50000


def test_multilingual_sample_has_what_it_promises():
    text = fixture_bytes(MULTILINGUAL).decode("utf-8")
    assert text.count("<|endoftext|>") == 10
    for needle in ("中文", "日本語", "한국어", "العربية", "עברית", "हिन्दी", "ภาษาไทย", "Русский", "Ελληνικά",
                   "👨\u200d👩\u200d👧\u200d👦", "🇫🇷", "e\u0301", "<!DOCTYPE html>", "```bash", '"nested": {',
                   "def add(", "#include <stdio.h>", "\r\n", "\rcarriage", "\u00a0", "\u3000", "\u2028", "\x0b",
                   "\x0c", "\x85", "   \n", "\t\t\n", "----", "...."):
        assert needle in text, repr(needle)


def test_project_documents_are_this_repository_s_text():
    docs = project_documents()
    assert len(docs) > 50 and sum(map(len, docs)) > 500_000
    assert any(b"class Tokenizer" in d for d in docs) and any(b"#include" in d for d in docs)
