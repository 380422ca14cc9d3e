"""Encoding throughput: ours vs tiktoken vs Hugging Face tokenizers, same text, same learned vocabulary.

    python benchmarks/bench_encode.py [--corpus web|gutenberg] [--mb 20] [--single-mb 8] [--repeats 3]

1. Takes the first ``--mb`` MB of a shared corpus (decompressed once into
   .bench/encode/), trains a ``--vocab`` (10,000) BPE on it with our trainer
   (cached), and builds the three encoders from that one vocabulary: ours
   (``Tokenizer.from_dir``), tiktoken (an ``Encoding`` from our ranks: ids are
   in merge order, so tiktoken's rank-of-merged-bytes order is our pair order)
   and HF ``tokenizers`` (our ``tokenizer.json``).
2. Checks that all three give identical ids on the first MB.
3. Single thread: ``encode`` of the first ``--single-mb`` MB (HF and our
   pure-Python fallback on a 1/8 slice: they are far slower), interleaved
   repeats, median MB/s and the ratio to tiktoken.
4. Whole file: ``tokenize_file`` with 1 and 2 workers (subprocesses; peak RSS of
   the process tree) vs tiktoken ``encode_ordinary_batch`` on all threads over
   the file's lines, and the extrapolated time for 1 GB.

Results go to stdout and are appended to benchmarks/results/encode.md.
"""

from __future__ import annotations

import argparse
import lzma
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Contender, compare, print_table  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CS336_SHARED_DATA", REPO.parent / "shared" / "data"))
CACHE = REPO / ".bench" / "encode"
CORPORA = {"web": "english/web_english.txt.xz", "gutenberg": "english/gutenberg_200M.txt.xz"}
EOT = "<|endoftext|>"


def prepare_text(corpus: str, mb: int) -> Path:
    out = CACHE / f"{corpus}_{mb}MB.txt"
    if out.exists():
        return out
    src = SHARED / CORPORA[corpus]
    if not src.exists():
        sys.exit(f"corpus not available: {src}")
    CACHE.mkdir(parents=True, exist_ok=True)
    with lzma.open(src, "rb") as fh:
        data = fh.read(mb * 2**20)
    data = data[: data.rfind(b"\n") + 1]  # end at a line boundary
    tmp = out.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.rename(out)
    return out


def prepare_tokenizer(text: Path, vocab_size: int) -> Path:
    out = CACHE / f"tok_{text.stem}_{vocab_size}"
    if (out / "meta.json").exists():
        return out
    from cs336_basics.tokenizer import train_bpe
    from cs336_basics.tokenizer.tokenizer_dir import save_tokenizer_dir

    start = time.perf_counter()
    vocab, merges = train_bpe(text, vocab_size, [EOT])
    save_tokenizer_dir(out, vocab, merges, [EOT], {"trained_on": text.name})
    print(f"trained a {vocab_size} vocabulary on {text.name} in {time.perf_counter() - start:.1f}s", file=sys.stderr)
    return out


def build_tiktoken(tok):
    import tiktoken

    from cs336_basics.tokenizer.pretokenize import GPT2_PATTERN

    ranks = {b: i for i, b in tok.vocab.items() if i != tok.eos_id}
    return tiktoken.Encoding(name="ours_as_tiktoken", pat_str=GPT2_PATTERN, mergeable_ranks=ranks,
                             special_tokens={EOT: tok.eos_id})


def run_file_mode(argv: list[str]) -> None:
    """Subprocess entry points for the whole-file contenders."""
    mode, tok_dir, text, out = argv[:4]
    if mode == "ours":
        from cs336_basics.tokenizer import Tokenizer, tokenize_file

        os.environ["CS336_NO_PROGRESS"] = "1"
        tokenize_file(Tokenizer.from_dir(tok_dir), text, out, workers=int(argv[4]), force=True)
    else:
        import numpy as np

        from cs336_basics.tokenizer import Tokenizer

        enc = build_tiktoken(Tokenizer.from_dir(tok_dir))
        with open(text, encoding="utf-8") as fh:
            lines = fh.readlines()
        # Pieces of ~1000 lines: per-line calls would measure Python overhead, not tiktoken.
        pieces = ["".join(lines[i:i + 1000]) for i in range(0, len(lines), 1000)]
        batches = enc.encode_ordinary_batch(pieces, num_threads=os.cpu_count())
        np.save(out, np.concatenate([np.array(b, dtype=np.uint16) for b in batches]))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--file-mode":
        run_file_mode(sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", choices=sorted(CORPORA), default="web")
    ap.add_argument("--mb", type=int, default=20, help="MB of text for training and whole-file runs")
    ap.add_argument("--single-mb", type=float, default=8, help="MB encoded in the single-thread comparison")
    ap.add_argument("--vocab", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-file", action="store_true", help="skip the whole-file comparison")
    args = ap.parse_args()

    from cs336_basics.tokenizer import Tokenizer
    from cs336_basics.tokenizer.tokenizer import _native_module

    text_path = prepare_text(args.corpus, args.mb)
    tok_dir = prepare_tokenizer(text_path, args.vocab)
    ours = Tokenizer.from_dir(tok_dir)
    if not ours.uses_native:
        print("WARNING: C encoder not built; measuring the pure-Python fallback", file=sys.stderr)
    os.environ["CS336_NO_NATIVE"] = "1"
    fallback = Tokenizer.from_dir(tok_dir)
    del os.environ["CS336_NO_NATIVE"]
    enc = build_tiktoken(ours)
    hf = None
    try:
        import tokenizers

        hf = tokenizers.Tokenizer.from_file(str(tok_dir / "tokenizer.json"))
    except Exception as exc:  # noqa: BLE001 - a missing/unloadable tokenizer.json only drops a contender
        print(f"skipping HF tokenizers: {exc}", file=sys.stderr)

    full = text_path.read_text(encoding="utf-8")
    single = full[: int(args.single_mb * 2**20)]
    small = single[: len(single) // 8]
    nbytes, small_bytes = len(single.encode()), len(small.encode())

    probe = full[: 2**20]
    expected = enc.encode(probe, allowed_special="all")
    same = {"ours (C)": ours.encode(probe) == expected, "ours (Python)": fallback.encode(probe) == expected}
    if hf is not None:
        same["HF tokenizers"] = hf.encode(probe, add_special_tokens=False).ids == expected
    print("identical ids on the first MB:", same)

    os.environ["RAYON_NUM_THREADS"] = "1"
    cpu_single: dict[str, list[float]] = {"ours (C)": [], "tiktoken": []}

    def cpu_timed(name, fn):
        # Process CPU seconds as well as wall time: on a loaded machine the CPU-time ratio is the steadier one.
        def run():
            before = os.times()
            fn()
            after = os.times()
            cpu_single[name].append(after[0] + after[1] - before[0] - before[1])
        return run

    contenders = [
        Contender("ours (C)", cpu_timed("ours (C)", lambda: ours.encode(single)), work=nbytes / 1e6, work_unit="MB"),
        Contender("tiktoken", cpu_timed("tiktoken", lambda: enc.encode(single, allowed_special="all")),
                  work=nbytes / 1e6, work_unit="MB"),
        Contender("ours (Python fallback, 1/8 text)", lambda: fallback.encode(small), work=small_bytes / 1e6,
                  work_unit="MB"),
    ]
    if hf is not None:
        contenders.append(Contender("HF tokenizers (1/8 text)", lambda: hf.encode(small, add_special_tokens=False),
                                    work=small_bytes / 1e6, work_unit="MB"))
    single_results = compare(contenders, repeats=args.repeats, warmup=1)
    print(f"\nSingle thread, {nbytes / 1e6:.1f} MB of {text_path.name} (1/8 of it for the slow ones):")
    single_table = print_table(single_results, baseline="tiktoken")
    rate = {r.name: r.rate for r in single_results}
    rate_ratio = rate["ours (C)"] / rate["tiktoken"]
    cpu_ours, cpu_tt = (statistics.median(cpu_single[k][1:] or cpu_single[k]) for k in ("ours (C)", "tiktoken"))
    cpu_line_single = (f"CPU time (median, warm-up excluded): ours {cpu_ours:.2f}s = {nbytes / 1e6 / cpu_ours:.1f} MB "
                       f"per CPU-second, tiktoken {cpu_tt:.2f}s = {nbytes / 1e6 / cpu_tt:.1f} MB per CPU-second; "
                       f"ratio {cpu_tt / cpu_ours:.2f}.")
    print(f"throughput ratio ours/tiktoken = {rate_ratio:.2f}\n{cpu_line_single}")

    file_table, est, inproc_table, cpu_line = "", "", "", ""
    if not args.no_file:
        size = text_path.stat().st_size
        out = CACHE / "bench_out.npy"
        me = [sys.executable, str(Path(__file__).resolve()), "--file-mode"]
        file_contenders = [
            Contender("ours, 1 worker", cmd=me + ["ours", str(tok_dir), str(text_path), str(out), "1"],
                      work=size / 1e6, work_unit="MB"),
            Contender("ours, 2 workers", cmd=me + ["ours", str(tok_dir), str(text_path), str(out), "2"],
                      work=size / 1e6, work_unit="MB"),
            Contender("tiktoken encode_ordinary_batch, all threads",
                      cmd=me + ["tiktoken", str(tok_dir), str(text_path), str(CACHE / "tt_out.npy")],
                      work=size / 1e6, work_unit="MB"),
        ]
        file_results = compare(file_contenders, repeats=args.repeats)
        # The same in this process: tokenize_file alone, without interpreter start-up and tokenizer loading.
        from cs336_basics.tokenizer import tokenize_file

        os.environ["CS336_NO_PROGRESS"] = "1"
        cpu: dict[int, list[float]] = {1: [], 2: []}

        def run_workers(w: int) -> None:
            # CPU seconds of this process and its (forked) workers: on a machine shared with other jobs a
            # second worker may get no second core, but equal CPU totals show the work itself parallelises.
            before = os.times()
            tokenize_file(ours, text_path, out, workers=w, force=True)
            after = os.times()
            cpu[w].append(sum(after[:4]) - sum(before[:4]))

        inproc = compare([Contender(f"tokenize_file, {w} worker(s)", lambda w=w: run_workers(w), work=size / 1e6,
                                    work_unit="MB") for w in (1, 2)], repeats=args.repeats)
        print("\ntokenize_file in-process (no start-up):")
        inproc_table = print_table(inproc, baseline="tokenize_file, 1 worker(s)")
        inproc_speedup = inproc[0].median / inproc[1].median
        cpu_line = (f"CPU seconds (all processes, median): 1 worker {statistics.median(cpu[1]):.2f}, "
                    f"2 workers {statistics.median(cpu[2]):.2f}; wall-clock speed-up possible on two free cores: "
                    f"{2 * statistics.median(cpu[1]) / statistics.median(cpu[2]):.2f}x.")
        print(cpu_line)
        print(f"\nWhole file ({size / 1e6:.1f} MB, process start-up included):")
        file_table = print_table(file_results, baseline="ours, 1 worker")
        by = {r.name: r for r in file_results}
        speedup = by["ours, 1 worker"].median / by["ours, 2 workers"].median
        gb = 1e3 / inproc[1].rate
        est = (f"2 workers vs 1: {speedup:.2f}x faster as whole processes, {inproc_speedup:.2f}x for "
               f"tokenize_file alone. Estimated time for 1 GB with 2 workers at this rate (start-up is negligible "
               f"at that size): {gb:.0f} s ({gb / 60:.1f} min).")
        print(est)

    load = os.getloadavg()
    report = [
        f"\n## {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: {args.corpus}, {args.mb} MB, vocab {args.vocab}",
        "", f"Command: `python benchmarks/bench_encode.py {' '.join(sys.argv[1:])}`",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, load average at the end "
        f"{load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f} (shared with other jobs: absolute times are noisy, "
        "ratios from interleaved runs are the numbers to read).",
        f"C encoder built: {_native_module() is not None}. Identical ids on the first MB: {same}.", "",
        f"Single thread, `encode` of {nbytes / 1e6:.1f} MB (slow contenders on 1/8 of it), median of "
        f"{args.repeats}:", "", single_table, "", f"Throughput ratio ours/tiktoken: **{rate_ratio:.2f}**.", "", cpu_line_single,
    ]
    if file_table:
        report += ["", "Whole file (`tokenize_file`, subprocesses, start-up included):", "", file_table, "",
                   "`tokenize_file` in the benchmark process (no start-up, tokenizer already loaded):", "",
                   inproc_table, "", cpu_line, "", est]
    results = REPO / "benchmarks" / "results" / "encode.md"
    results.parent.mkdir(parents=True, exist_ok=True)
    if not results.exists():
        results.write_text("# Encoding benchmarks (benchmarks/bench_encode.py)\n")
    with open(results, "a") as fh:
        fh.write("\n".join(report) + "\n")
    print(f"appended to {results}")


if __name__ == "__main__":
    main()
