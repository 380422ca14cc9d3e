"""Every model the trainer builds leaves for transformers: same logits and same greedy tokens after export.

One case per registry name of every variant axis (the names are read from the registries, so a new
variant is tested without touching this file), tied and untied embeddings, and the quickstart's
configuration by name. Each case trains a tiny model for two optimizer steps (so no weight is at its
symmetric init), exports it with its tokenizer, loads it with ``AutoModelForCausalLM`` (with
``trust_remote_code`` only where the export ships our own class), and compares float32 logits and
32 greedy tokens from ``model.generate`` against our model and our generation code.
"""

from __future__ import annotations

import json

import pytest
import torch
import transformers

from cs336_basics.config import ModelConfig, dump_config, load_config, to_dict
from cs336_basics.config.variants import ATTENTION, REGISTRIES
from cs336_basics.export import export_hf
from cs336_basics.generation import SamplingParams, generate
from cs336_basics.interop.hf_classes import REMOTE_CLASS, choose_class
from cs336_basics.model.transformer import TransformerLM
from cs336_basics.runs.checkpoint import save_checkpoint
from cs336_basics.tokenizer.tokenizer import Tokenizer
from tests.conftest import run_cli
from tests.interop.test_export import _tiny_tokenizer_dir

TINY = dict(vocab_size=261, context_length=64, d_model=32, num_layers=2, num_heads=4, rope_theta=1000.0,
            norm_eps=1e-6, num_experts=4)
PROMPT = "the other there"
NEW_TOKENS = 32
GREEDY = SamplingParams(max_new_tokens=NEW_TOKENS, temperature=0.0, stop_at_eos=False)
"""Our side of the comparison with Hugging Face's greedy decoding of exactly NEW_TOKENS tokens."""
pytestmark = pytest.mark.usefixtures("one_torch_thread")

NATIVE = {  # the built-in class each of these must become; every other case becomes ours
    "handout": "LlamaForCausalLM",
    "tie_embeddings=True": "LlamaForCausalLM",
    "qk_norm=rmsnorm": "Qwen3ForCausalLM",
    "ffn=gelu": "ArceeForCausalLM",
    "ffn=silu": "ArceeForCausalLM",
    "ffn=relu2": "ArceeForCausalLM",
    "quickstart": "ApertusForCausalLM",
    "init=zero_out": "LlamaForCausalLM",
    "ffn=moe": "MixtralForCausalLM",
    "moe with qk_norm=rmsnorm": "Qwen3MoeForCausalLM",
}


def _config(changes: dict) -> ModelConfig:
    if changes.get("quickstart"):
        return load_config("quickstart").model.with_changes(vocab_size=TINY["vocab_size"])
    return ModelConfig(**{**TINY, **changes})


def _cases() -> list[tuple[str, dict, bool]]:
    """(id, model changes, ship our class even where a built-in one matches).

    Every case that becomes a built-in class runs a second time as our class, so ours is tested on every
    name too; the attention kernel is a choice of our class only (a built-in class has its own kernels).
    """
    default = ModelConfig(**TINY)
    cases = [("handout", {}, False), ("tie_embeddings=True", {"tie_embeddings": True}, False)]
    for registry in REGISTRIES:
        for name in registry.names:
            if name != getattr(default, registry.axis) or registry is ATTENTION:
                cases.append((f"{registry.axis}={name}", {registry.axis: name}, registry is ATTENTION))
    cases += [("moe with qk_norm=rmsnorm", {"ffn": "moe", "qk_norm": "rmsnorm"}, False),
              ("quickstart", {"quickstart": True}, False)]
    ours = [(f"{case} as ours", changes, True) for case, changes, remote in cases
            if not remote and choose_class(_config(changes)).native is not None]
    return cases + ours


CASES = _cases()


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    return _tiny_tokenizer_dir(tmp_path_factory.mktemp("tok") / "tok")


def _trained(cfg: ModelConfig) -> TransformerLM:
    """A tiny model after two AdamW steps on random tokens (zero-initialised projections are not zero any more)."""
    model = TransformerLM(cfg, seed=0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(1)
    for _ in range(2):
        ids = torch.randint(0, cfg.vocab_size, (4, 33), generator=gen)
        logits = model(ids[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def _load(folder, expected: str):
    remote = expected == REMOTE_CLASS
    model = transformers.AutoModelForCausalLM.from_pretrained(str(folder), trust_remote_code=remote,
                                                              dtype=torch.float32)
    return model.eval()


@pytest.mark.parametrize("case,changes,remote", CASES, ids=[c[0] for c in CASES])
def test_export_computes_our_logits_and_greedy_tokens(tmp_path, tokenizer_dir, case, changes, remote):
    cfg = _config(changes)
    model = _trained(cfg)
    expected = REMOTE_CLASS if remote else NATIVE.get(case, REMOTE_CLASS)
    assert choose_class(cfg, remote_code=remote).architecture == expected
    folder = export_hf(model, tmp_path / "hf", tokenizer_dir=tokenizer_dir, remote_code=remote)
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == [expected]
    assert ("auto_map" in config) == (folder / "modeling_cs336.py").is_file() == (expected == REMOTE_CLASS)
    hf = _load(folder, expected)
    assert type(hf).__name__ == expected

    ids = torch.randint(0, cfg.vocab_size, (2, 48), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        difference = (model(ids) - hf(ids).logits).abs().max().item()
    assert difference < 1e-4

    ours = Tokenizer.from_dir(tokenizer_dir)
    # transformers reads config.json to load a tokenizer too, so our class's folder asks for trust there as well
    theirs = transformers.AutoTokenizer.from_pretrained(str(folder), trust_remote_code=expected == REMOTE_CLASS)
    prompt = theirs(PROMPT, return_tensors="pt")
    assert prompt.input_ids[0].tolist() == ours.encode(PROMPT)
    our_tokens = generate(model, ours, PROMPT, GREEDY)[0].token_ids
    their_tokens = hf.generate(**prompt, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False)
    assert their_tokens[0, prompt.input_ids.shape[1]:].tolist() == our_tokens


def test_every_axis_name_has_a_case():
    """Each registry name is in some case's model (the default names in the handout case)."""
    covered = {(axis, getattr(_config(changes), axis)) for _, changes, _ in CASES for axis in
               (r.axis for r in REGISTRIES)}
    assert covered == {(r.axis, name) for r in REGISTRIES for name in r.names}
    assert {_config(changes).tie_embeddings for _, changes, _ in CASES} == {False, True}


def test_our_class_reads_a_left_padded_batch_as_its_rows(tmp_path, tokenizer_dir):
    """Positions follow the attention mask: a left-padded row gives the logits and greedy tokens it gives alone."""
    cfg = ModelConfig(**{**TINY, "position": "learned", "norm": "layernorm"})
    model = _trained(cfg)
    folder = export_hf(model, tmp_path / "hf", tokenizer_dir=tokenizer_dir)
    hf = _load(folder, REMOTE_CLASS)
    gen = torch.Generator().manual_seed(3)
    short, long = torch.randint(0, 260, (1, 5), generator=gen), torch.randint(0, 260, (1, 9), generator=gen)
    batch = torch.cat([torch.cat([torch.zeros(1, 4, dtype=torch.long), short], 1), long])  # (2, 9)
    mask = torch.ones_like(batch)
    mask[0, :4] = 0
    with torch.no_grad():
        padded = hf(batch, attention_mask=mask).logits
        alone = hf(short).logits
    torch.testing.assert_close(padded[0, 4:], alone[0], atol=1e-5, rtol=1e-5)

    prompts = ["the", "the other there"]
    tok = transformers.AutoTokenizer.from_pretrained(str(folder), trust_remote_code=True, padding_side="left")
    inputs = tok(prompts, return_tensors="pt", padding=True)
    out = hf.generate(**inputs, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False)
    ours = generate(model, Tokenizer.from_dir(tokenizer_dir), prompts, GREEDY)
    assert out[:, inputs.input_ids.shape[1]:].tolist() == [r.token_ids for r in ours]


def test_exported_tokenizer_pads_with_end_of_text(tmp_path, tokenizer_dir):
    folder = export_hf(TransformerLM(ModelConfig(**TINY), seed=0), tmp_path / "hf", tokenizer_dir=tokenizer_dir)
    tok = transformers.AutoTokenizer.from_pretrained(str(folder))
    eos = Tokenizer.from_dir(tokenizer_dir).encode("<|endoftext|>")
    assert [tok.pad_token_id] == [tok.eos_token_id] == eos
    batch = tok(["the", "the other"], padding=True)
    assert batch.input_ids[0][-1] == eos[0] and batch.attention_mask[0][-1] == 0


def test_cs336_export_of_a_quickstart_run(tmp_path, tokenizer_dir):
    """The issue's command: ``cs336 export`` on a run trained with the quickstart config says what it wrote, and
    transformers loads it without remote code and computes the run's logits."""
    run = tmp_path / "runs" / "quickstart"
    (run / "checkpoints").mkdir(parents=True)
    config = load_config("quickstart", [f"model.vocab_size={TINY['vocab_size']}"])
    config.data.tokenizer_dir = str(tokenizer_dir)
    dump_config(config, run / "config.toml")
    model = _trained(config.model)
    save_checkpoint(model, None, 2, run / "checkpoints" / "best.pt", config=to_dict(config))
    proc = run_cli("export", "--checkpoint", str(run), "--out", str(tmp_path / "hf"))
    assert proc.returncode == 0, proc.stderr
    assert "exporting as ApertusForCausalLM: a built-in class that computes exactly this model" in proc.stderr
    hf = _load(tmp_path / "hf", "ApertusForCausalLM")
    ids = torch.randint(0, TINY["vocab_size"], (2, 40), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert (model(ids) - hf(ids).logits).abs().max().item() < 1e-4
