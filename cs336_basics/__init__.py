"""cs336_basics: a small, fast, from-scratch toolkit for training language models.

The package mirrors the pipeline of Stanford CS336 Assignment 1:

- ``tokenizer/``  byte-level BPE: training, encoding, token files
- ``model/``      the Transformer LM, its layers and variants
- ``training/``   loss, AdamW, schedules, data loading, checkpoints, the loop
- ``generation``  sampling with a KV cache
- ``evaluation``  validation loss, bits per byte, generation metrics
- ``experiments/`` sweeps, plots, reports
- ``compat/``     the course's adapter functions
- ``cli``         the ``cs336`` command
"""

__version__ = "0.1.0"
