"""The benchmarks: one script per area, a shared harness, records and the text rendered from them.

``python -m benchmarks run [--quick] [--only AREA]`` measures every area and appends a record
to ``benchmarks/results/AREA.jsonl``; ``python -m benchmarks render`` regenerates the
generated blocks of BENCHMARKS.md and README.md from the records. Each ``bench_AREA.py``
also runs on its own (``python benchmarks/bench_model.py --quick``) and prints its tables.

Shared by the scripts: ``harness.py`` (measuring, records), ``render.py`` (the text made from the
records), ``script.py`` (every script's command line), ``corpora.py`` (the data),
``reference_models.py`` (the standard PyTorch model ours is compared with) and ``standalone.py``
(the import path of a script run as a file).
"""

# area -> (script module, what it compares); the order of the summary
AREAS: dict[str, tuple[str, str]] = {
    "bpe_train": ("bench_bpe_train", "BPE training: ours vs rustbpe vs Hugging Face tokenizers"),
    "encode": ("bench_encode", "Encoding: ours vs tiktoken vs Hugging Face tokenizers"),
    "tokenize_workers": ("bench_tokenize_workers", "`cs336 tokenize`: 2 workers vs 1"),
    "model": ("bench_model", "Model forward+backward: ours vs a standard PyTorch GPT"),
    "train": ("bench_train", "Training loop: `cs336 train` vs a standard PyTorch loop"),
    "precision": ("bench_precision", "Autocast precision on this CPU: bf16 vs float32, and what dtype=auto chose"),
    "optimizer": ("bench_optimizer", "AdamW on the CPU: per-tensor, foreach (whole, chunked, compiled), fused C, "
                  "torch.optim.AdamW(fused=True)"),
    "compile": ("bench_compile", "Training step with `train.compile=true` (TorchInductor) vs eager, on the CPU"),
    "generate": ("bench_generate", "Generation: KV cache, Hugging Face transformers, a functional loop"),
    "eval": ("bench_eval", "Evaluation: sliding windows and batching"),
    "quickstart": ("bench_quickstart", "The quickstart: time budget and quality (full runs only)"),
}
