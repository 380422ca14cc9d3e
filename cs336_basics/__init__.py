"""cs336_basics: a small, fast, from-scratch toolkit for training language models.

The package mirrors the pipeline of Stanford CS336 Assignment 1 (docs/architecture.md has the layers):

- ``tokenizer/``   byte-level BPE: training, encoding, token files (C accelerators with Python fallbacks)
- ``model/``       the Transformer LM, its layers, the variant registry, parameter and FLOP accounting
- ``training/``    loss, AdamW and Muon, schedules, batches, the training step and loop, DDP, trackers
- ``runs/``        run and dataset directories on disk: layout, metrics.jsonl, checkpoints, trained models
- ``generation/``  sampling and KV-cache decoding
- ``evaluation/``  validation loss, bits per byte, text metrics, the unigram baseline, ``cs336 eval``
- ``reporting/``   run and sweep reports, plots, the convergence fit
- ``experiments/`` sweep grids and the sweep runner
- ``compat/``      the course's adapter functions
- ``commands/``    one module per ``cs336`` command (``cli.py`` wires them)
"""

__version__ = "0.1.0"
