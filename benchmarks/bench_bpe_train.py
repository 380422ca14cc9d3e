"""Benchmark BPE training: ours vs rustbpe vs Hugging Face tokenizers, side by side.

Builds (once, cached under .bench/) a corpus of real English text from ../shared/data/english:
about half Gutenberg books and half web/news text, alternating whole documents, joined with
``<|endoftext|>``, cut at a document boundary near ``--mb`` MB. Every contender runs as a subprocess
(so peak RSS covers its whole process tree, workers included), interleaved, ``--repeats`` times.

- ours: ``train_bpe(file, vocab, ["<|endoftext|>"])`` (C counting + C merging, 2 workers);
- rustbpe: ``Tokenizer.train_from_iterator`` over the documents (split on ``<|endoftext|>``,
  which it does not know), GPT-2 pattern;
- tokenizers: BpeTrainer with the GPT-2 split + ByteLevel, fed the documents split on
  ``<|endoftext|>`` (its only mode equivalent to ours).

rustbpe and tokenizers break ties towards smaller ids, so their merges differ from ours after a few
dozen: compare time and memory, not merges.

Usage: python benchmarks/bench_bpe_train.py --mb 100 --vocab 10000 --repeats 3 [--only ours,rustbpe]
"""

from __future__ import annotations

import argparse
import lzma
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Contender, compare, dump_json, print_table  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "english"
CACHE = REPO / ".bench"
EOT = "<|endoftext|>"
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


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


def build_corpus(mb: int) -> Path:
    """The benchmark file of ``mb`` MB (cached). Only ~386 MB of real text exist: beyond that the
    mix is repeated whole (no new distinct pre-tokens, so it measures the size-dependent costs)."""
    out = CACHE / f"english_mix_{mb}MB.txt"
    if out.exists():
        return out
    CACHE.mkdir(exist_ok=True)
    target = mb * 1_000_000
    half = target // 2
    books = _documents(SHARED / "gutenberg_200M.txt.xz", half)
    web = _documents(SHARED / "web_english.txt.xz", half)
    tmp = out.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
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
    written = tmp.stat().st_size
    if written < target * 0.95:
        # Not enough real text: repeat what we have, whole, until the size is reached.
        with open(tmp, "rb") as src_fh:
            base = src_fh.read()
        with open(tmp, "ab") as fh:
            while written < target:
                piece = base[: target - written]
                if len(piece) < len(base):
                    piece = piece[: piece.rfind(EOT.encode())]
                    if not piece:
                        break
                fh.write(EOT.encode() + piece)
                written += len(piece) + len(EOT)
    tmp.rename(out)
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mb", type=int, default=100)
    ap.add_argument("--vocab", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--only", default="ours,rustbpe,tokenizers")
    ap.add_argument("--json", default=None, help="also write raw results here")
    ap.add_argument("--run", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--input", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.run:
        run_one(args.run, args.input, args.vocab, args.workers)
        return
    corpus = build_corpus(args.mb)
    size = corpus.stat().st_size
    print(f"corpus: {corpus} ({size / 1e6:.1f} MB)", file=sys.stderr)
    contenders = [Contender(name, cmd=[sys.executable, __file__, "--run", name, "--input", str(corpus),
                                       "--vocab", str(args.vocab), "--workers", str(args.workers)],
                            work=size / 1e6, work_unit="MB")
                  for name in args.only.split(",")]
    results = compare(contenders, repeats=args.repeats)
    baseline = "rustbpe" if "rustbpe" in args.only.split(",") else contenders[0].name
    print(f"\n{size / 1e6:.1f} MB, vocab {args.vocab}, {args.repeats} interleaved runs, medians:\n")
    print_table(results, baseline=baseline)
    if args.json:
        dump_json(results, args.json)


if __name__ == "__main__":
    main()
