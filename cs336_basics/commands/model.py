"""`cs336 model info`: parameter counts, training memory and forward FLOPs of a model config.

The model comes from ``--config FILE`` (its ``[model]`` section; its
``train.batch_size`` is the default batch), then ``--preset NAME`` replaces the
fields the preset sets, then ``--set model.KEY=VALUE`` overrides apply. Nothing
is built: the numbers come from :mod:`cs336_basics.config.accounting`.
"""

from __future__ import annotations

import argparse
import json

from cs336_basics.commands import add_config_args, positive_int


def register(subparsers, parents) -> None:
    parser = subparsers.add_parser("model", parents=parents, help="model accounting (parameters, memory, FLOPs)",
                                   description="Model tools.")
    sub = parser.add_subparsers(dest="model_command", metavar="SUBCOMMAND")
    from cs336_basics.config import MODEL_PRESETS

    info = sub.add_parser(
        "info", parents=parents, help="parameter counts, memory and FLOPs per token of a model config",
        description="Print parameter counts (embedding vs non-embedding), training memory (parameters, gradients, "
                    "AdamW state, activations for a batch) and forward FLOPs per token by component.",
        epilog="Examples: 'cs336 model info --preset gpt2-xl'; "
               "'cs336 model info --config configs/tinystories_cpu.toml --set model.d_model=768 --batch-size 64'.")
    add_config_args(info)
    info.add_argument("--preset", choices=sorted(MODEL_PRESETS), help="start from a named model (applied after "
                      "--config, before --set)")
    info.add_argument("--batch-size", type=positive_int, default=None,
                      help="batch size for the activation memory (default: the config's train.batch_size)")
    info.add_argument("--seq-len", type=positive_int, default=None,
                      help="sequence length for attention FLOPs and activations (default: model.context_length)")
    info.add_argument("--json", action="store_true", help="print the numbers as one JSON object")
    info.set_defaults(func=run_info)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)


ASSUMED_VOCAB = 10_000


def _resolve(args: argparse.Namespace):
    from cs336_basics.config import apply_overrides, apply_preset, load_config
    from cs336_basics.progress import info

    cfg = load_config(args.config)
    if args.preset:
        cfg.model = apply_preset(cfg.model, args.preset)
    cfg = apply_overrides(cfg, args.overrides)
    if cfg.model.vocab_size is None:  # training takes it from the tokenizer; counting needs a number
        info(f"model.vocab_size is unset (training takes the tokenizer's): counting with {ASSUMED_VOCAB:,}, the "
             "handout's TinyStories vocabulary; --set model.vocab_size=N for another")
        cfg.model = cfg.model.with_changes(vocab_size=ASSUMED_VOCAB)
    return cfg


def _fmt_count(n: int) -> str:
    return f"{n:>15,}  ({n / 1e6:10.2f} M)"


def _fmt_bytes(n: int) -> str:
    return f"{n / 2**30:10.3f} GiB" if n >= 2**30 else f"{n / 2**20:10.1f} MiB"


def run_info(args: argparse.Namespace) -> int:
    from cs336_basics.config.accounting import count_parameters, flops_per_token, memory_bytes, resolved_d_ff

    cfg = _resolve(args)
    m = cfg.model
    batch = args.batch_size or cfg.train.batch_size
    seq = args.seq_len or m.context_length
    params = count_parameters(m)
    flops = flops_per_token(m, seq)
    mem = memory_bytes(m, batch, seq)
    if args.json:
        print(json.dumps({"model": {**vars(m), "d_ff": resolved_d_ff(m)}, "batch_size": batch, "seq_len": seq,
                          "parameters": params, "flops_per_token": flops, "memory_bytes": mem}, indent=1))
        return 0
    print(f"model: {m.num_layers} layers, d_model {m.d_model}, {m.num_heads} heads, d_ff {resolved_d_ff(m)}, "
          f"vocab {m.vocab_size}, context {m.context_length}")
    print(f"       position={m.position} block={m.block} norm={m.norm} qk_norm={m.qk_norm} ffn={m.ffn} "
          f"init={m.init} tie_embeddings={m.tie_embeddings}" + (f" experts={m.num_experts} top_k={m.moe_top_k}"
                                                   if m.ffn == "moe" else ""))
    print("\nparameters")
    for key in ("token_embeddings", "position_embeddings", "attention", "ffn", "norms", "lm_head"):
        print(f"  {key:<28}{_fmt_count(params[key])}")
    print(f"  {'total':<28}{_fmt_count(params['total'])}")
    print(f"  {'embedding (token + position)':<28}{_fmt_count(params['embedding'])}")
    print(f"  {'non-embedding (with head)':<28}{_fmt_count(params['non_embedding'])}   <- the 2024 handout's count")
    print(f"  {'non-embedding (no head)':<28}{_fmt_count(params['non_embedding_no_head'])}   <- Kaplan et al. style")
    print(f"\ntraining memory (float32, AdamW, batch {batch} x {seq} tokens)")
    for key in ("parameters", "gradients", "adamw_state", "activations", "total"):
        print(f"  {key:<28}{_fmt_bytes(mem[key])}")
    print(f"\nforward FLOPs per token (sequence length {seq})")
    for key in ("attention_projections", "attention_scores", "ffn", "lm_head"):
        share = 100.0 * flops[key] / flops["total"]
        print(f"  {key:<28}{flops[key] / 1e6:12.2f} MFLOP  {share:5.1f} %")
    print(f"  {'total':<28}{flops['total'] / 1e6:12.2f} MFLOP")
    print(f"  {'training (3 x forward)':<28}{flops['train'] / 1e6:12.2f} MFLOP")
    return 0
