"""BPE training: ours vs rustbpe vs Hugging Face tokenizers, side by side, on distinct real English.

Builds (once, cached under .bench/) a corpus from the shared English text: whole
documents alternating between Gutenberg books and web/news text (about half each by
bytes), joined with ``<|endoftext|>``, cut at a document boundary near ``--mb`` MB.
Nothing is repeated: when less distinct text exists than asked for, the corpus is all
of it and the record says so. Every contender runs as a subprocess (so peak RSS covers
its whole process tree, workers included, and CPU time is the tree's), interleaved,
``--repeats`` times:

- ours: ``train_bpe(file, vocab, ["<|endoftext|>"], workers=2)`` (C counting + C merging);
- rustbpe: ``Tokenizer.train_from_iterator`` over the documents (split on ``<|endoftext|>``,
  which it does not know), GPT-2 pattern;
- tokenizers: BpeTrainer with the GPT-2 split + ByteLevel, fed the documents split on
  ``<|endoftext|>`` (its only mode equivalent to ours).

rustbpe and tokenizers break ties towards smaller ids, so their merges differ from ours after a few
dozen: compare time and memory, not merges (ours equals the reference merges; the tests check that).

    python benchmarks/bench_bpe_train.py --quick
    python benchmarks/bench_bpe_train.py --mb 100 --contenders ours,rustbpe
"""

from __future__ import annotations

import lzma
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file: benchmarks/standalone.py puts the repository on sys.path
    import standalone  # noqa: F401
from benchmarks.corpora import EOT, GUTENBERG, WEB
from benchmarks.harness import CACHE, Contender, compare, group, shared_data
from benchmarks.script import script_main
from cs336_basics.fileio import atomic_writer

GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
SIZES = {
    "quick": dict(mb=10, vocab=10_000, repeats=3, workers=2, contenders="ours,rustbpe,tokenizers"),
    "full": dict(mb=100, vocab=10_000, repeats=3, workers=2, contenders="ours,rustbpe,tokenizers"),
}


def _documents(xz_path: Path, limit: int):
    """Whole documents (split on <|endoftext|>) from a .xz corpus, until ``limit`` bytes were yielded."""
    done = 0
    pending = ""
    with lzma.open(xz_path, "rt", encoding="utf-8") as fh:
        while done < limit:
            block = fh.read(1 << 20)
            if not block:
                if pending.strip():
                    yield pending
                return
            parts = (pending + block).split(EOT)
            pending = parts.pop()
            for doc in parts:
                if doc.strip():
                    yield doc
                    done += len(doc.encode("utf-8"))
                    if done >= limit:
                        return


def build_corpus(mb: int, data_dir=None) -> Path:
    """The benchmark file of about ``mb`` MB of distinct text (cached); smaller when the corpora run out."""
    out = CACHE / f"english_mix_{mb}MB.txt"
    if out.exists():
        return out
    CACHE.mkdir(exist_ok=True)
    half = mb * 1_000_000 // 2
    books = _documents(shared_data(GUTENBERG, data_dir), half)
    web = _documents(shared_data(WEB, data_dir), half)
    with atomic_writer(out, "w") as fh:
        first = True
        # Alternate: one book, then web documents of about the same size.
        for book in books:
            fh.write(("" if first else EOT) + book)
            first = False
            size = len(book)
            for doc in web:
                fh.write(EOT + doc)
                size -= len(doc)
                if size <= 0:
                    break
        for doc in web:
            fh.write(EOT + doc)
    return out


def run_one(name: str, path: str, vocab: int, workers: int) -> None:
    """Body of one contender's subprocess."""
    start = time.perf_counter()
    if name in ("ours", "ours-python"):
        import os

        if name == "ours-python":
            os.environ["CS336_NO_NATIVE"] = "1"
        from cs336_basics.tokenizer.bpe_train import train_bpe_detailed

        result = train_bpe_detailed(path, vocab, [EOT], workers=workers, show_progress=False)
        print(result.summary.format(), file=sys.stderr)
    elif name == "rustbpe":
        import rustbpe

        text = Path(path).read_text(encoding="utf-8")
        tok = rustbpe.Tokenizer()
        tok.train_from_iterator(iter(text.split(EOT)), vocab, pattern=GPT2_PATTERN)
    elif name == "tokenizers":
        from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers

        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(GPT2_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=[EOT], show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        text = Path(path).read_text(encoding="utf-8")
        tok.train_from_iterator(iter(text.split(EOT)), trainer)
    else:
        raise SystemExit(f"unknown contender {name}")
    print(f"{name}: {time.perf_counter() - start:.2f}s", file=sys.stderr)


def measure(settings: dict, data_dir) -> dict:
    corpus = build_corpus(settings["mb"], data_dir)
    size = corpus.stat().st_size / 1e6
    contenders = [Contender(name, cmd=[sys.executable, __file__, "--run", name, "--input", str(corpus),
                                       "--vocab", str(settings["vocab"]), "--workers", str(settings["workers"])],
                            work=size, work_unit="MB")
                  for name in settings["contenders"].split(",")]
    results = compare(contenders, repeats=settings["repeats"])
    facts = {"corpus MB (distinct text, no repetition)": round(size, 1)}
    notes = []
    if size < 0.95 * settings["mb"]:
        notes.append(f"Only {size:.0f} MB of distinct text exist in the shared corpora; asked for {settings['mb']} MB.")
    return {"groups": [group("train", f"{size:.1f} MB of English (books + web), vocab {settings['vocab']}, "
                             f"special token <|endoftext|>", results, size=f"{size:.0f} MB", facts=facts)], "notes": notes}


if __name__ == "__main__":
    if "--run" in sys.argv:  # one contender's subprocess
        args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
        run_one(args["--run"], args["--input"], int(args["--vocab"]), int(args["--workers"]))
    else:
        script_main(__doc__.splitlines()[0], SIZES, measure)
