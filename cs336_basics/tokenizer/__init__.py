"""Byte-level BPE: training (``train_bpe``), encoding (``Tokenizer``), file formats and token files."""
