"""Compiling the model: the compile twins equal the eager modules, and every variant traces without graph breaks.

A graph break (TorchDynamo giving up on a piece of Python and running it eagerly)
splits the compiled program and costs fusion. For every model variant -- one per
registry entry of every axis, plus weight tying and dropout -- these tests trace

- the forward pass and the loss (``torch._dynamo.explain``: zero breaks),
- a KV-cache decoding step, after an eager prefill (zero breaks),
- forward, loss and backward through AOTAutograd with a backend that counts the
  graphs it is handed: exactly one forward and one backward graph,

after :func:`~cs336_basics.model.compiled.prepare_for_compile`. The cheap
``eager``/``aot_eager`` backends stand in for Inductor (the tracing is the same);
one small test runs Inductor itself.
"""

from __future__ import annotations

import dataclasses
import functools

import pytest
import torch
from torch._dynamo.backends.debugging import aot_eager, boxed_nop

from cs336_basics.config.variants import REGISTRIES
from cs336_basics.model import ModelConfig, TransformerLM, preset
from cs336_basics.model.attention import CopyingReferenceAttention, ReferenceAttention
from cs336_basics.model.compiled import COMPILE_TWINS, compile_model, prepare_for_compile
from cs336_basics.model.ffn import DenseMoEFFN, MoEFFN
from cs336_basics.model.positions import PairRotaryEmbedding, RotaryEmbedding
from cs336_basics.training.loss import cross_entropy

pytestmark = pytest.mark.usefixtures("one_torch_thread", "fresh_dynamo")

TINY = dict(vocab_size=64, context_length=16, d_model=32, num_layers=2, num_heads=4, num_experts=4, moe_top_k=2)
BASE = preset("llama", **TINY)


def _variants() -> dict[str, ModelConfig]:
    """The llama base, then each name of each registry axis changed alone, weight tying, and GPT-2 with dropout."""
    out = {"llama": BASE}
    for registry in REGISTRIES:
        for name in registry.names:
            if getattr(BASE, registry.axis) != name:
                out[f"{registry.axis}={name}"] = BASE.with_changes(**{registry.axis: name})
    out["tied"] = BASE.with_changes(tie_embeddings=True)
    out["gpt2-dropout"] = preset("gpt2", **TINY, attn_pdrop=0.1, residual_pdrop=0.1)
    return out


VARIANTS = _variants()


@pytest.fixture
def fresh_dynamo():
    """Every test traces its own models: start from empty caches so no guard or limit carries over."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _prepared(cfg: ModelConfig) -> TransformerLM:
    return prepare_for_compile(TransformerLM(cfg, seed=0))


def _batch(cfg: ModelConfig, B: int = 2, T: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, cfg.vocab_size, (B, T + 1), generator=gen)
    return ids[:, :-1], ids[:, 1:]


def _loss(model: TransformerLM, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """What a training step differentiates: the LM loss plus the MoE balance loss (zero for dense models)."""
    return cross_entropy(model(x), y) + model.aux_loss


def _breaks(explained) -> str:
    return "\n".join(f"{r.reason} at {r.user_stack[-1] if r.user_stack else '?'}" for r in explained.break_reasons)


def _has_dropout(cfg: ModelConfig) -> bool:
    return cfg.attn_pdrop > 0 or cfg.residual_pdrop > 0


def test_variants_cover_every_registry_name():
    for registry in REGISTRIES:
        assert {getattr(cfg, registry.axis) for cfg in VARIANTS.values()} == set(registry.names)


# ----------------------------------------------------------------------------- the twins equal the eager modules


def _rope_cases(dtype):
    """Inputs as attention hands them over: strided q/k views of a fused (B, T, 3, H, D) projection, an odd
    storage offset, per-row positions (B, 1, T) and shared ones (T,), some large."""
    torch.manual_seed(0)
    qkv = torch.randn(2, 6, 3, 2, 8, dtype=dtype, requires_grad=True)
    wide = torch.randn(2, 6, 9, dtype=dtype, requires_grad=True)
    positions = torch.tensor([[3, 4, 5, 6, 7, 8], [0, 1, 2, 3, 4, 5000]]).unsqueeze(1)
    return [(qkv[:, :, 1].transpose(1, 2), positions), (wide[..., 1:].unsqueeze(1), positions),
            (qkv[:, :, 0].transpose(1, 2), torch.arange(6) * 997)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_pair_rope_rotates_bit_identically_to_the_complex_multiply(dtype):
    """Given the same cos and sin, the pair form does the complex multiply's products and sums, rounded the
    same way (and in float32 for bf16): torch.equal, forward and backward. This holds where PyTorch runs the
    complex multiply in its vectorized loop, i.e. for operands of one shape, contiguous; where it broadcasts,
    its scalar loop was compiled with a fused multiply-add (one rounding fewer), see the next test."""
    complex_rope, pair_rope = RotaryEmbedding(8, theta=100.0), PairRotaryEmbedding(8, theta=100.0)
    for x, pos in _rope_cases(dtype):
        x = x.detach().contiguous().requires_grad_()
        g = torch.randn_like(x)
        rotation = complex_rope.rotation(pos).expand(*x.shape[:-1], 4).contiguous()  # e^{i angle} (..., T, d/2)
        expected = complex_rope.rotate(x, rotation)
        actual = pair_rope.rotate(x, (rotation.real, rotation.imag))
        assert actual.dtype == dtype and actual.shape == x.shape
        assert torch.equal(actual, expected)
        assert torch.equal(torch.autograd.grad(actual, x, g)[0], torch.autograd.grad(expected, x, g)[0])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_pair_rope_module_equals_the_complex_one_up_to_one_ulp_of_cos_and_sin(dtype):
    """End to end the modules differ in two roundings, nothing else. (1) Where cos and sin come from:
    torch.polar (the complex form's e^{i angle}) and torch.cos/torch.sin are separate implementations, each
    within an ulp, and disagree by one ulp (at most 2^-24 for |value| <= 1) on a few percent of angles.
    (2) Attention's layouts broadcast the rotation, and PyTorch's broadcasting complex multiply fuses one
    product into the subtraction (an FMA) where the pair form rounds it. A pair thus moves by at most
    (|x_2i| + |x_2i+1|) 2^-24 from (1) plus a few float32 roundings (2^-24 relative each) of products and
    sums no larger than |x_2i| + |x_2i+1|: bounded by (|x_2i| + |x_2i+1|) 2^-21. bf16 results may then
    round to the neighbouring bf16 value (2^-7 relative)."""
    complex_rope, pair_rope = RotaryEmbedding(8, theta=100.0), PairRotaryEmbedding(8, theta=100.0)
    for x, pos in _rope_cases(dtype):
        rotation = complex_rope.rotation(pos)
        cos, sin = pair_rope.rotation(pos)
        assert (rotation.real - cos).abs().max() <= 2**-24 and (rotation.imag - sin).abs().max() <= 2**-24
        g = torch.randn_like(x)
        expected, actual = complex_rope(x, pos), pair_rope(x, pos)
        pairs = [(actual, expected, x),
                 (torch.autograd.grad(actual, x, g)[0], torch.autograd.grad(expected, x, g)[0], g)]
        for got, want, source in pairs:
            magnitude = source.float().unflatten(-1, (4, 2)).abs().sum(-1, keepdim=True)  # (..., T, d/2, 1)
            bound = (magnitude * 2**-21).expand(*magnitude.shape[:-1], 2).flatten(-2)  # (..., T, d)
            if dtype == torch.bfloat16:
                bound = bound + want.float().abs() * 2**-7
            assert ((got.float() - want.float()).abs() <= bound).all()
            assert (got != want).float().mean() < 0.25  # most values are bit-identical


def test_dense_moe_computes_the_routed_mixture():
    """Every expert on every token with zero gates off the route = gathering only the routed tokens."""
    torch.manual_seed(0)
    routed = MoEFFN(16, 32, num_experts=4, top_k=2)
    dense = MoEFFN(16, 32, num_experts=4, top_k=2)
    dense.load_state_dict(routed.state_dict())
    dense.__class__ = DenseMoEFFN
    x = torch.randn(3, 5, 16, requires_grad=True)
    out_routed, out_dense = routed(x), dense(x)
    torch.testing.assert_close(out_dense, out_routed, rtol=1e-6, atol=1e-6)
    assert torch.equal(dense.aux_loss, routed.aux_loss)
    g = torch.randn_like(out_routed)
    grads_routed = torch.autograd.grad((out_routed * g).sum() + routed.aux_loss, [x, *routed.parameters()])
    grads_dense = torch.autograd.grad((out_dense * g).sum() + dense.aux_loss, [x, *dense.parameters()])
    for a, b in zip(grads_dense, grads_routed):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_copying_reference_attention_equals_the_in_place_one_bit_for_bit():
    """The same softmax arithmetic and closed-form backward, on a copy of the scores instead of in place."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 8, requires_grad=True) for _ in range(3))
    mask = torch.rand(2, 1, 5, 5) > 0.3
    mask[..., 0] = True  # every query sees a key
    for m, causal in ((None, True), (mask, False)):
        g = torch.randn(2, 3, 5, 8)
        outs = [kernel(q, k, v, m, causal) for kernel in (ReferenceAttention(), CopyingReferenceAttention())]
        assert torch.equal(outs[0], outs[1])
        grads = [torch.autograd.grad(out, (q, k, v), g) for out in outs]
        assert all(torch.equal(a, b) for a, b in zip(*grads))


def test_twins_are_stateless_subclasses():
    for eager, twin in COMPILE_TWINS.items():
        assert issubclass(twin, eager) and twin is not eager
        assert "__init__" not in vars(twin), f"{twin.__name__} must add no state, so re-classing is enough"


@pytest.mark.parametrize("name", ["llama", "ffn=moe"])
def test_prepare_for_compile_swaps_in_place_keeping_weights_sharing_and_values(name):
    cfg = VARIANTS[name]
    model = TransformerLM(cfg, seed=0).eval()
    x, _ = _batch(cfg)
    before_state = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        before = model(x)
    assert prepare_for_compile(model) is model
    assert prepare_for_compile(model) is model  # preparing twice changes nothing more
    rotaries = {id(layer.attn.rotary) for layer in model.layers}
    assert len(rotaries) == 1 and type(model.layers[0].attn.rotary) is PairRotaryEmbedding
    assert all(type(m) not in COMPILE_TWINS for m in model.modules())
    state = model.state_dict()
    assert list(state) == list(before_state)
    assert all(torch.equal(state[k], before_state[k]) for k in state)
    fresh = TransformerLM(cfg, seed=1)
    fresh.load_state_dict(state)  # checkpoints load into either form
    with torch.no_grad():
        after = model(x)
    # RoPE's cos and sin may differ by an ulp (see above); the dense mixture sums in another order
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-6)


def test_training_parts_compile_the_prepared_model():
    from cs336_basics.training.distributed import DistInfo
    from cs336_basics.training.step import TrainingParts

    model = TransformerLM(BASE, seed=0)
    parts = TrainingParts(model=model, optimizer=None, schedule=None, sampler=None, dtype=torch.float32,
                          dtype_choice=None)
    parts.wrap(True, DistInfo(), torch.device("cpu"))  # torch.compile is lazy: nothing is compiled yet
    assert parts.step_model._orig_mod is model
    assert type(model.layers[0].attn.rotary) is PairRotaryEmbedding
    parts.wrap(False, DistInfo(), torch.device("cpu"))
    assert parts.step_model is model


# ----------------------------------------------------------------------------- no graph breaks, every variant


@pytest.mark.parametrize("name", list(VARIANTS))
def test_forward_and_loss_trace_without_graph_breaks(name):
    cfg = VARIANTS[name]
    model = _prepared(cfg).train()
    x, y = _batch(cfg)
    explained = torch._dynamo.explain(lambda x, y: _loss(model, x, y))(x, y)
    assert explained.graph_break_count == 0, _breaks(explained)
    assert explained.graph_count == 1


@pytest.mark.parametrize("name", list(VARIANTS))
def test_kv_cache_decoding_step_traces_without_graph_breaks(name):
    cfg = VARIANTS[name]
    model = _prepared(cfg).eval()
    x, _ = _batch(cfg, T=6)
    with torch.no_grad():
        cache = model.init_cache(2, cfg.context_length)
        model(x, cache=cache)  # prefill, eagerly
        step = x[:, -1:]  # (B, 1)
        explained = torch._dynamo.explain(lambda ids: model(ids, cache=cache))(step)
    assert explained.graph_break_count == 0, _breaks(explained)
    assert len(cache) == 7  # the traced step ran and appended its token


@pytest.mark.parametrize("name", ["llama", "position=learned"])
def test_left_padded_decoding_step_traces_without_graph_breaks(name):
    """The batched sampler's step: per-row positions and a key mask over the cached slots."""
    cfg = VARIANTS[name]
    model = _prepared(cfg).eval()
    x, _ = _batch(cfg, T=6)
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[0, :2] = False  # row 0 is left-padded by two slots
    positions = (mask.long().cumsum(-1) - 1).clamp_min(0)  # (B, T)
    with torch.no_grad():
        cache = model.init_cache(2, cfg.context_length)
        model(x, cache=cache, positions=positions, attention_mask=mask)
        full_mask = torch.cat([mask, torch.ones(2, 1, dtype=torch.bool)], dim=1)  # (B, 7)
        explained = torch._dynamo.explain(
            lambda ids, pos: model(ids, cache=cache, positions=pos, attention_mask=full_mask)
        )(x[:, -1:], positions[:, -1:] + 1)
    assert explained.graph_break_count == 0, _breaks(explained)


def _counting_backend(counts: dict[str, int]):
    """The ``aot_eager`` backend (AOTAutograd, graphs run as traced), counting the forward and backward graphs."""

    def counted(kind):
        def compile_graph(gm, example_inputs):
            counts[kind] += 1
            return boxed_nop(gm, example_inputs)
        return compile_graph

    return functools.partial(aot_eager, fw_compiler=counted("forward"), bw_compiler=counted("backward"))


@pytest.mark.slow
@pytest.mark.parametrize("name", list(VARIANTS))
def test_training_step_is_one_forward_and_one_backward_graph(name):
    """Forward, loss and backward of a prepared model: one graph each way, and the eager loss and gradients."""
    cfg = VARIANTS[name]
    model = _prepared(cfg).train()
    x, y = _batch(cfg)
    counts = {"forward": 0, "backward": 0}
    step = torch.compile(lambda x, y: _loss(model, x, y), backend=_counting_backend(counts))
    loss = step(x, y)
    loss.backward()
    assert counts == {"forward": 1, "backward": 1}
    assert all(p.grad is not None for p in model.parameters())
    if _has_dropout(cfg):
        return  # the compiled and eager steps draw different masks
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    eager = _loss(model, x, y)
    eager.backward()
    torch.testing.assert_close(loss, eager, rtol=1e-6, atol=1e-6)
    for compiled_grad, p in zip(grads, model.parameters()):
        torch.testing.assert_close(compiled_grad, p.grad, rtol=1e-4, atol=1e-6)


# ----------------------------------------------------------------------------- compiled values equal eager ones


@pytest.mark.parametrize("name", ["llama", "ffn=moe"])
def test_compiled_forward_and_decoding_match_eager(name):
    cfg = VARIANTS[name]
    eager = TransformerLM(cfg, seed=0).eval()
    compiled = compile_model(TransformerLM(cfg, seed=0).eval(), backend="aot_eager")
    x, _ = _batch(cfg, T=6)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), eager(x), rtol=1e-5, atol=1e-5)
        caches = [m.init_cache(2, cfg.context_length) for m in (eager, compiled)]
        for model, cache in zip((eager, compiled), caches):
            model(x[:, :5], cache=cache)
        torch.testing.assert_close(compiled(x[:, 5:], cache=caches[1]), eager(x[:, 5:], cache=caches[0]),
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_inductor_training_step_matches_eager():
    """TorchInductor itself on the default (RoPE, SwiGLU) variant: loss and gradients as in eager mode."""
    cfg = dataclasses.replace(BASE, num_layers=1)
    eager = TransformerLM(cfg, seed=0)
    model = TransformerLM(cfg, seed=0)
    compiled = compile_model(model)
    x, y = _batch(cfg)
    loss = cross_entropy(compiled(x), y)
    loss.backward()
    expected = cross_entropy(eager(x), y)
    expected.backward()
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-5)
    for p, q in zip(model.parameters(), eager.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5)
