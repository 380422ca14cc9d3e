"""generate(): KV cache == full recomputation, batched == one-by-one, stops, seeds, streaming, Sampler.

The oracle is :func:`reference_greedy`, the most direct decoding loop there is:
run the whole (truncated) sequence through the model for every new token.
"""

from __future__ import annotations

import pytest
import torch

from cs336_basics.errors import UserError
from cs336_basics.generation import DEFAULT_PROMPTS, Sampler, SamplingParams, generate, results_to_markdown
from cs336_basics.model import ModelConfig, TransformerLM
from tests.generation.test_generation_streaming import ByteTokenizer

POSITIONS = ["learned", "sinusoidal", "rope", "none"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models run fastest single-threaded


def tiny_model(position: str = "rope", context_length: int = 64, num_layers: int = 2, vocab_size: int = 260,
               seed: int = 0, **kwargs) -> TransformerLM:
    cfg = ModelConfig(vocab_size=vocab_size, context_length=context_length, d_model=32, num_layers=num_layers,
                      num_heads=2, position=position, **kwargs)
    return TransformerLM(cfg, seed=seed).eval()


@torch.no_grad()
def reference_greedy(model, tokenizer, prompt: str, steps: int, penalty: float = 1.0) -> tuple[list[int], torch.Tensor]:
    """Greedy decoding by full recomputation over the last context_length tokens (the oracle)."""
    context = model.config.context_length
    ids = tokenizer.encode(prompt)[-context:] or [tokenizer.eos_id]
    out, all_logits = [], []
    for _ in range(steps):
        logits = model(torch.tensor([ids[-context:]]))[0, -1].double()
        all_logits.append(logits.float())
        logits[tokenizer.vocab_size:] = float("-inf")
        for i in set(ids):
            logits[i] = logits[i] / penalty if logits[i] > 0 else logits[i] * penalty
        nxt = int(logits.argmax())
        ids.append(nxt)
        out.append(nxt)
    return out, torch.stack(all_logits)


@torch.no_grad()
def reference_sliding_greedy(model, tokenizer, prompt: str, steps: int) -> tuple[list[int], torch.Tensor]:
    """Greedy decoding with sliding-window attention, recomputed over the whole sequence at every step.

    What a sliding KV cache computes: in every layer, the token at position ``i`` attends to positions
    ``i - context_length + 1 .. i``, and positions keep counting past ``context_length`` (RoPE / NoPE).
    The model's own layers are run on the full sequence with that banded mask; no cache is involved.
    """
    context = model.config.context_length
    ids = tokenizer.encode(prompt)[-context:]
    out, all_logits = [], []
    for _ in range(steps):
        positions = torch.arange(len(ids))
        query, key = positions[:, None], positions[None, :]
        band = (key <= query) & (key > query - context)  # (T, T), True = may attend
        x = model.position_embeddings(model.token_embeddings(torch.tensor([ids])), positions)
        for layer in model.layers:
            x = layer(x, positions, band, None)
        logits = model.lm_head(model.ln_final(x))[0, -1]
        all_logits.append(logits.float())
        nxt = int(logits[:tokenizer.vocab_size].argmax())
        ids.append(nxt)
        out.append(nxt)
    return out, torch.stack(all_logits)


def greedy(model, tokenizer, prompts, steps, repetition_penalty: float = 1.0, **kwargs):
    sampling = SamplingParams(max_new_tokens=steps, temperature=0.0, stop_at_eos=False,
                              repetition_penalty=repetition_penalty)
    return generate(model, tokenizer, prompts, sampling, return_logits=True, **kwargs)


# ----------------------------------------------------------------------------- cache equivalence


def check_cached_equals_uncached(position: str, steps: int) -> None:
    model = tiny_model(position, context_length=steps + 32)
    tok = ByteTokenizer()
    cached, = greedy(model, tok, "Once upon a time", steps)
    uncached, = greedy(model, tok, "Once upon a time", steps, use_cache=False)
    expected, expected_logits = reference_greedy(model, tok, "Once upon a time", steps)
    assert len(cached.token_ids) == steps
    assert cached.token_ids == uncached.token_ids == expected
    torch.testing.assert_close(cached.logits, uncached.logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(cached.logits, expected_logits, atol=1e-5, rtol=0)


@pytest.mark.parametrize("position", POSITIONS)
def test_cached_equals_uncached(position):
    check_cached_equals_uncached(position, 48)


@pytest.mark.slow
@pytest.mark.parametrize("position", POSITIONS)
def test_cached_equals_uncached_for_256_tokens(position):
    check_cached_equals_uncached(position, 256)


@pytest.mark.parametrize("position,num_layers,atol", [
    ("learned", 2, 1e-5), ("sinusoidal", 2, 1e-5),  # re-encoding the window is exactly recomputation
    # With one layer the cached keys depend only on their tokens (and, for RoPE, on relative
    # offsets), so sliding the cache must give what re-encoding the window gives.
    ("rope", 1, 1e-4), ("none", 1, 1e-4),
])
def test_past_the_context_equals_recomputation(position, num_layers, atol):
    model = tiny_model(position, context_length=24, num_layers=num_layers)
    tok = ByteTokenizer()
    cached, = greedy(model, tok, "a prompt", 40)
    expected, expected_logits = reference_greedy(model, tok, "a prompt", 40)
    assert cached.token_ids == expected
    torch.testing.assert_close(cached.logits, expected_logits, atol=atol, rtol=0)


@pytest.mark.parametrize("position", ["rope", "none"])
def test_sliding_window_keeps_generating_past_the_context(position):
    """Two layers, 4 prompt tokens, 40 new ones with a context of 16: 28 tokens come after the context filled."""
    model = tiny_model(position, context_length=16)
    tok = ByteTokenizer()
    cached, = greedy(model, tok, "abcd", 40)
    sliding, sliding_logits = reference_sliding_greedy(model, tok, "abcd", 40)
    assert cached.token_ids == sliding  # every token, not only those generated while everything fits
    torch.testing.assert_close(cached.logits, sliding_logits, atol=1e-4, rtol=0)
    # Without a cache every step runs the model on the last context_length tokens: the window reference.
    uncached, = greedy(model, tok, "abcd", 40, use_cache=False)
    window, window_logits = reference_greedy(model, tok, "abcd", 40)
    assert uncached.token_ids == window
    torch.testing.assert_close(uncached.logits, window_logits, atol=1e-5, rtol=0)
    # The two references agree while everything fits and differ once the window slides (a second
    # layer's cached keys still carry what their tokens saw), so each comparison above is sharp.
    fits = 16 - 4 + 1
    torch.testing.assert_close(sliding_logits[:fits], window_logits[:fits], atol=1e-5, rtol=0)
    assert (sliding_logits[fits:] - window_logits[fits:]).abs().max() > 1e-3


# ----------------------------------------------------------------------------- batches


@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("use_cache", [True, False])
def test_batched_equals_one_by_one(position, use_cache):
    model = tiny_model(position, context_length=24)
    tok = ByteTokenizer()
    prompts = ["x", "Once upon a time there", "", "a" * 40]  # "" starts at eos; 40 > context
    batched = greedy(model, tok, prompts, 30, use_cache=use_cache)
    for prompt, result in zip(prompts, batched):
        alone, = greedy(model, tok, prompt, 30, use_cache=use_cache)
        assert result.token_ids == alone.token_ids, prompt
        torch.testing.assert_close(result.logits, alone.logits, atol=1e-5, rtol=0)


def test_repetition_penalty_matches_reference():
    model = tiny_model("rope", context_length=64)
    tok = ByteTokenizer()
    result, = greedy(model, tok, "hello hello", 40, repetition_penalty=1.7)
    expected, _ = reference_greedy(model, tok, "hello hello", 40, penalty=1.7)
    assert result.token_ids == expected
    plain, = greedy(model, tok, "hello hello", 40)
    assert plain.token_ids != expected  # the penalty changed something


# ----------------------------------------------------------------------------- sampling options


def test_seed_reproducibility():
    model = tiny_model()
    tok = ByteTokenizer()
    sampling = SamplingParams(max_new_tokens=40, temperature=1.0, top_k=50, top_p=0.95, stop_at_eos=False)
    a = generate(model, tok, ["Once", "Twice"], sampling, seed=3)
    b = generate(model, tok, ["Once", "Twice"], sampling, seed=3)
    c = generate(model, tok, ["Once", "Twice"], sampling, seed=4)
    assert [r.token_ids for r in a] == [r.token_ids for r in b]
    assert [r.token_ids for r in a] != [r.token_ids for r in c]


def test_padded_vocab_rows_are_never_sampled():
    model = tiny_model(vocab_size=320)  # 63 rows beyond the tokenizer's 257 ids
    with torch.no_grad():
        model.lm_head.weight[257:] *= 50  # make the untrained rows very attractive
    tok = ByteTokenizer()
    results = generate(model, tok, ["a", "b", "c", "d"],
                       SamplingParams(max_new_tokens=100, temperature=2.0, stop_at_eos=False), seed=0)
    assert max(max(r.token_ids) for r in results) < 257
    greedy_result, = generate(model, tok, "a", SamplingParams(max_new_tokens=20, temperature=0.0, stop_at_eos=False))
    assert max(greedy_result.token_ids) < 257


def test_tokenizer_larger_than_model_is_a_user_error():
    with pytest.raises(UserError, match="tokenizer"):
        generate(tiny_model(vocab_size=200), ByteTokenizer(), "a", SamplingParams(max_new_tokens=2))


def test_empty_prompt_starts_from_eos_and_long_prompt_is_truncated():
    model = tiny_model(context_length=16)
    tok = ByteTokenizer()
    empty, long = generate(model, tok, ["", "z" * 30 + "0123456789"], SamplingParams(max_new_tokens=3), seed=0)
    assert empty.prompt_ids == [256]
    assert long.prompt_ids == list(("z" * 6 + "0123456789").encode())


def test_model_mode_is_restored():
    model = tiny_model()
    model.train()
    generate(model, ByteTokenizer(), "a", SamplingParams(max_new_tokens=3), seed=0)
    assert model.training
    model.eval()
    generate(model, ByteTokenizer(), "a", SamplingParams(max_new_tokens=3), seed=0)
    assert not model.training


def test_zero_new_tokens_and_no_prompts():
    model = tiny_model()
    result, = generate(model, ByteTokenizer(), "a", SamplingParams(max_new_tokens=0))
    assert result.token_ids == [] and result.text == "" and result.stopped_by == "length"
    assert generate(model, ByteTokenizer(), [], SamplingParams(max_new_tokens=5)) == []


# ----------------------------------------------------------------------------- stops and streaming


def test_stops_at_eos():
    model = tiny_model()
    tok = ByteTokenizer()
    free, = greedy(model, tok, "Once", 30)
    target = free.token_ids[5]  # declare the sixth generated id the end-of-text id
    first = free.token_ids.index(target)
    tok_with_eos = ByteTokenizer(eos_id=target)
    stopped, = generate(model, tok_with_eos, "Once", SamplingParams(max_new_tokens=30, temperature=0.0))
    assert stopped.stopped_by == "eos"
    assert stopped.token_ids == free.token_ids[:first]


@pytest.mark.parametrize("start, replacement", [(10, True), (11, False)])
def test_stops_at_stop_string(start, replacement):
    """A stop string is matched in the decoded text, U+FFFD (bytes that are not UTF-8) included."""
    model = tiny_model()
    tok = ByteTokenizer()
    free, = greedy(model, tok, "Once", 40)
    text = free.text
    stop = text[start:start + 3]
    assert len(stop) == 3 and ("\ufffd" in stop) == replacement
    pieces: list[str] = []
    sampling = SamplingParams(max_new_tokens=40, temperature=0.0, stop=[stop], stop_at_eos=False)
    cut, = generate(model, tok, "Once", sampling, on_token=lambda row, piece: pieces.append(piece))
    assert cut.stopped_by == "stop"
    assert cut.text == text[: text.index(stop)]
    assert "".join(pieces) == cut.text
    assert len(cut.token_ids) < 40


def test_streamed_pieces_equal_final_text_for_every_row():
    model = tiny_model()
    tok = ByteTokenizer()
    pieces: dict[int, list[str]] = {0: [], 1: []}
    sampling = SamplingParams(max_new_tokens=50, temperature=1.0, stop_at_eos=False)
    results = generate(model, tok, ["héllo", "世界"], sampling, seed=1,
                       on_token=lambda row, piece: pieces[row].append(piece))
    for row, result in enumerate(results):
        assert "".join(pieces[row]) == result.text == tok.decode(result.token_ids)


# ----------------------------------------------------------------------------- Sampler


def test_sampler_is_reproducible_and_restores_mode():
    model = tiny_model()
    model.train()
    sampler = Sampler(model, ByteTokenizer(), max_new_tokens=20, temperature=0.8, top_p=0.9)
    first = sampler.sample(seed=5)
    again = sampler.sample(seed=5)
    assert model.training
    assert [r.prompt for r in first] == DEFAULT_PROMPTS
    assert [r.token_ids for r in first] == [r.token_ids for r in again]
    text = results_to_markdown(first, title="step 100")
    assert text.startswith("# step 100")
    assert all(r.prompt in text for r in first)


def test_sampler_rejects_bad_options_early():
    with pytest.raises(UserError):
        Sampler(tiny_model(), ByteTokenizer(), temperature=-1)
    with pytest.raises(TypeError):
        Sampler(tiny_model(), ByteTokenizer(), no_such_option=1)
    with pytest.raises(TypeError):
        Sampler(tiny_model(), ByteTokenizer(), seed=1)  # the seed is sample()'s


def test_sampler_keeps_one_sampling_params_and_the_other_options_apart():
    model, tok = tiny_model(), ByteTokenizer()
    sampler = Sampler(model, tok, "a", SamplingParams(top_k=5, max_new_tokens=8), temperature=0.0, use_cache=False)
    assert sampler.sampling == SamplingParams(temperature=0.0, top_k=5, max_new_tokens=8)
    assert sampler.options == {"use_cache": False}
    shorter, = sampler.sample(max_new_tokens=3, stop_at_eos=False)
    longer, = sampler.sample(stop_at_eos=False)
    assert sampler.sampling.max_new_tokens == 8  # overrides do not stick
    assert shorter.token_ids == longer.token_ids[:3] and len(longer.token_ids) == 8
    alone, = generate(model, tok, "a", SamplingParams(temperature=0.0, max_new_tokens=8, stop_at_eos=False),
                      use_cache=False)
    assert alone.token_ids == longer.token_ids


# ----------------------------------------------------------------------------- real tokenizer, scripted model


class ScriptedLM(torch.nn.Module):
    """Follows the model contract but ignores its input: at generation step k it puts all mass on ``script[k]``.

    The step is read from the per-row positions the decoders pass, so cached and uncached decoding agree.
    """

    def __init__(self, script: list[int], prompt_len: int, vocab_size: int) -> None:
        super().__init__()
        self.config = ModelConfig(vocab_size=vocab_size, context_length=1024, d_model=8, num_layers=1, num_heads=1,
                                  position="none")
        self.script, self.prompt_len = script, prompt_len
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # so generate() can find the device

    def init_cache(self, batch_size, max_len=None, device=None, dtype=None):
        return None  # nothing to remember: the positions say which step it is

    def forward(self, token_ids, cache=None, positions=None, attention_mask=None):
        B, T = token_ids.shape
        last = positions[:, -1] if positions is not None else torch.full((B,), T - 1)
        step = (last - self.prompt_len + 1).clamp(0, len(self.script) - 1)
        logits = torch.full((B, T, self.config.vocab_size), -10.0)
        logits[torch.arange(B), -1, torch.tensor(self.script)[step]] = 10.0
        return logits


@pytest.mark.parametrize("use_cache", [True, False])
def test_streaming_never_splits_characters_with_gpt2_tokenizer(gpt2_dir, use_cache):
    from cs336_basics.tokenizer import Tokenizer

    tok = Tokenizer.from_files(gpt2_dir / "vocab.json", gpt2_dir / "merges.txt", ["<|endoftext|>"])
    text = " Un café, s'il vous plaît 🎉🦀 — 世界は広い!"
    ids = tok.encode(text)
    assert any("\ufffd" in tok.decode([i]) for i in ids)  # some character really is split across ids
    prompt = "Hello"
    model = ScriptedLM(ids + [tok.eos_id], len(tok.encode(prompt)), tok.vocab_size)
    pieces: list[str] = []
    result, = generate(model, tok, prompt, SamplingParams(max_new_tokens=100, temperature=0.0), use_cache=use_cache,
                       on_token=lambda row, piece: pieces.append(piece))
    assert result.stopped_by == "eos"
    assert result.token_ids == ids
    assert result.text == text == "".join(pieces)
    assert all("\ufffd" not in piece for piece in pieces)
