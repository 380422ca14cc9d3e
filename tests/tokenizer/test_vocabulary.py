"""The vocabulary checks (cs336_basics.tokenizer.vocabulary) and the places that call them.

Each fact about a vocabulary is checked by one function; the messages name both sides and the fix.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cs336_basics.errors import UserError
from cs336_basics.evaluation.token_file_loss import evaluate_loss
from cs336_basics.generation.autoregressive import check_tokenizer_fits
from cs336_basics.model import ModelConfig, TransformerLM
from cs336_basics.tokenizer.vocabulary import check_ids_in_vocabulary, check_vocab_agreement, check_vocab_size_trainable


def test_a_trainable_vocabulary_holds_the_bytes_and_the_special_tokens():
    check_vocab_size_trainable(257, ["<|endoftext|>"])
    check_vocab_size_trainable(256, [])
    with pytest.raises(UserError) as err:
        check_vocab_size_trainable(256, ["<|endoftext|>"])
    message = str(err.value)
    assert "smaller than 256 bytes + 1 special tokens" in message and "at least 257" in message
    assert "--vocab-size 257" in message


def test_a_model_must_have_a_row_for_every_id_of_its_tokenizer():
    check_vocab_agreement(300, 257, model="model.vocab_size", tokenizer="the tokenizer", fix="fix")  # more rows: fine
    with pytest.raises(UserError, match="model.vocab_size is 257 but the tokenizer has 300 tokens; fix it"):
        check_vocab_agreement(257, 300, model="model.vocab_size", tokenizer="the tokenizer", fix="fix it")
    with pytest.raises(UserError, match="is 300 but .* has 257 tokens"):
        check_vocab_agreement(300, 257, model="model.vocab_size", tokenizer="the tokenizer", fix="fix", exact=True)
    check_vocab_agreement(257, 257, model="model.vocab_size", tokenizer="the tokenizer", fix="fix", exact=True)


def test_ids_must_lie_in_the_vocabulary():
    check_ids_in_vocabulary(None, 10, where="x", fix="fix")
    check_ids_in_vocabulary((0, 9), 10, where="x", fix="fix")
    with pytest.raises(UserError, match=r"f.npy contains token id 10, outside the vocabulary in use \(10 ids, 0..9\)"):
        check_ids_in_vocabulary((0, 10), 10, where="f.npy", fix="fix")
    with pytest.raises(UserError, match="negative token id -1"):
        check_ids_in_vocabulary((-1, 3), 10, where="f.npy", fix="fix")


def _model(vocab: int) -> TransformerLM:
    return TransformerLM(ModelConfig(vocab_size=vocab, context_length=8, d_model=16, num_layers=1, num_heads=2))


class _Tokenizer:
    def __init__(self, vocab_size: int) -> None:
        self.vocab_size = vocab_size


def test_generation_refuses_a_tokenizer_larger_than_the_model():
    check_tokenizer_fits(_model(64), _Tokenizer(60))
    with pytest.raises(UserError, match="the model's vocabulary size is 64 but the tokenizer has 70 tokens"):
        check_tokenizer_fits(_model(64), _Tokenizer(70))


def test_evaluation_refuses_ids_outside_the_model():
    model = _model(16).eval()
    with torch.no_grad(), pytest.raises(UserError, match="contains token id 20, outside the model's vocabulary"):
        evaluate_loss(model, np.array([1, 2, 20, 3], dtype=np.uint16), 8, 2, show_progress=False)
