"""Encoding throughput: ours vs tiktoken vs Hugging Face tokenizers, same text, same learned vocabulary.

1. Takes the first ``--mb`` MB of a shared corpus (distinct text; decompressed once
   into .bench/), trains a ``--vocab`` (10,000) BPE on it with our trainer (cached),
   and builds the encoders from that one vocabulary: ours (``Tokenizer.from_dir``),
   tiktoken (an ``Encoding`` from our ranks: ids are in merge order, so tiktoken's
   rank-of-merged-bytes order is our pair order) and HF ``tokenizers`` (our
   ``tokenizer.json``).
2. Checks that they give identical ids on the first MB (recorded).
3. Group ``single_thread``: ``encode`` of the first ``--single-mb`` MB on one thread,
   interleaved; HF and our pure-Python fallback on the first 1/8 of it (they are far
   slower; rates are per MB, so the ratios stay comparable).
4. Group ``whole_file``: the whole file as subprocesses (start-up included):
   ``tokenize_file`` with 1 and 2 workers vs tiktoken ``encode_ordinary_batch`` on
   all threads over ~1000-line pieces.

    python benchmarks/bench_encode.py --quick
    python benchmarks/bench_encode.py --corpus gutenberg
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: benchmarks/standalone.py puts the repository on sys.path
    import standalone  # noqa: F401
from benchmarks.corpora import EOT, GUTENBERG, WEB, text_prefix, tokenizer_dir
from benchmarks.harness import CACHE, Contender, compare, group
from benchmarks.script import script_main

# The package entry points this script uses (one place, so a restructured package is one edit away).
from cs336_basics.tokenizer import Tokenizer, tokenize_file
from cs336_basics.tokenizer.pretokenize import GPT2_PATTERN

CORPORA = {"web": WEB, "gutenberg": GUTENBERG}
SIZES = {
    "quick": dict(corpus="web", mb=8, single_mb=4.0, vocab=10_000, repeats=3, whole_file=True),
    "full": dict(corpus="web", mb=100, single_mb=20.0, vocab=10_000, repeats=5, whole_file=True),
}


def build_tiktoken(tok: Tokenizer):
    import tiktoken

    ranks = {b: i for i, b in tok.vocab.items() if i != tok.eos_id}
    return tiktoken.Encoding(name="ours_as_tiktoken", pat_str=GPT2_PATTERN, mergeable_ranks=ranks,
                             special_tokens={EOT: tok.eos_id})


def run_file_mode(argv: list[str]) -> None:
    """Subprocess entry points for the whole-file contenders."""
    mode, tok_dir, text, out = argv[:4]
    if mode == "ours":
        os.environ["CS336_NO_PROGRESS"] = "1"
        tokenize_file(Tokenizer.from_dir(tok_dir), text, out, workers=int(argv[4]), force=True)
    else:
        import numpy as np

        enc = build_tiktoken(Tokenizer.from_dir(tok_dir))
        with open(text, encoding="utf-8") as fh:
            lines = fh.readlines()
        # Pieces of ~1000 lines: per-line calls would measure Python overhead, not tiktoken.
        pieces = ["".join(lines[i:i + 1000]) for i in range(0, len(lines), 1000)]
        batches = enc.encode_ordinary_batch(pieces, num_threads=os.cpu_count())
        np.save(out, np.concatenate([np.array(b, dtype=np.uint16) for b in batches]))


def measure(settings: dict, data_dir) -> dict:
    text_path = text_prefix(CORPORA[settings["corpus"]], settings["mb"], data_dir)
    tok_dir = tokenizer_dir(text_path, settings["vocab"])
    ours = Tokenizer.from_dir(tok_dir)
    os.environ["CS336_NO_NATIVE"] = "1"
    fallback = Tokenizer.from_dir(tok_dir)
    del os.environ["CS336_NO_NATIVE"]
    enc = build_tiktoken(ours)
    os.environ["RAYON_NUM_THREADS"] = "1"  # HF tokenizers' thread pool: one thread (read when it first starts)
    import tokenizers

    hf = tokenizers.Tokenizer.from_file(str(tok_dir / "tokenizer.json"))

    full = text_path.read_text(encoding="utf-8")
    single = full[: int(settings["single_mb"] * 1e6)]
    small = single[: len(single) // 8]
    mb, small_mb = len(single.encode()) / 1e6, len(small.encode()) / 1e6
    probe = full[: 2**20]
    expected = enc.encode(probe, allowed_special="all")
    facts = {"C encoder built": ours.uses_native,
             "identical ids on the first MiB": {"ours (C)": ours.encode(probe) == expected,
                                                "ours (Python fallback)": fallback.encode(probe) == expected,
                                                "HF tokenizers": hf.encode(probe, add_special_tokens=False).ids
                                                == expected}}
    contenders = [
        Contender("ours (C)", lambda: ours.encode(single), work=mb, work_unit="MB"),
        Contender("tiktoken", lambda: enc.encode(single, allowed_special="all"), work=mb, work_unit="MB"),
        Contender("ours (Python fallback)", lambda: fallback.encode(small), work=small_mb, work_unit="MB"),
        Contender("HF tokenizers", lambda: hf.encode(small, add_special_tokens=False), work=small_mb, work_unit="MB"),
    ]
    groups = [group("single_thread", f"encode on one thread: {mb:.1f} MB of {text_path.name} (the Python fallback "
                    f"and HF tokenizers on its first {small_mb:.2f} MB), vocab {settings['vocab']}",
                    compare(contenders, repeats=settings["repeats"], warmup=1), size=f"{mb:.1f} MB", facts=facts)]
    if settings["whole_file"]:
        size = text_path.stat().st_size / 1e6
        out = CACHE / "encode_out"
        out.mkdir(parents=True, exist_ok=True)
        me = [sys.executable, str(Path(__file__).resolve()), "--file-mode"]
        file_contenders = [
            Contender("ours, 1 worker", cmd=me + ["ours", str(tok_dir), str(text_path), str(out / "w1.npy"), "1"]),
            Contender("ours, 2 workers", cmd=me + ["ours", str(tok_dir), str(text_path), str(out / "w2.npy"), "2"]),
            Contender("tiktoken encode_ordinary_batch, all threads",
                      cmd=me + ["tiktoken", str(tok_dir), str(text_path), str(out / "tt.npy")]),
        ]
        for c in file_contenders:
            c.work, c.work_unit = size, "MB"
        groups.append(group("whole_file", f"the whole {size:.1f} MB file, each run a new process (start-up and "
                            f"writing the .npy included), {os.cpu_count()} cores",
                            compare(file_contenders, repeats=settings["repeats"]), size=f"{size:.0f} MB file"))
    return {"groups": groups}


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--file-mode":
        run_file_mode(sys.argv[2:])
    else:
        script_main(__doc__.splitlines()[0], SIZES, measure)
