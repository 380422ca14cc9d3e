"""No command deletes or replaces what it did not create: every output is checked before any work.

The first tests replay the two observed losses (export --force into the current directory and into
another run; tokenizer train into the data directory). The property test then points the output of
every command that writes at the current directory, at a directory holding its own input, at a
non-empty foreign directory and at another run, with and without --force, and compares the hash of
every file in the tree before and after.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cs336_basics.cli import main
from cs336_basics.config import dump_config
from cs336_basics.fileio import replace_dir_atomically
from cs336_basics.tokenizer.tokenizer_dir import FILES
from tests.faults.cli_checks import cli, one_line_error, tree_hashes
from tests.training_fixtures import make_byte_dataset, tiny_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TRAIN = ["--batch-size", "4", "--total-steps", "2", "--set", "model.context_length=32", "--set", "model.d_model=32",
         "--set", "model.num_layers=1", "--set", "model.num_heads=4", "--set", "model.d_ff=64",
         "--set", "train.device=cpu", "--set", "train.samples=false", "--set", "train.eval_tokens=256",
         "--set", "train.eval_interval=2", "--set", "train.checkpoint_interval=2", "--set", "logging.quiet=true"]


def _kept(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """The files of ``before`` that are gone or changed in ``after``."""
    return [name for name, digest in before.items() if after.get(name) != digest]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """data/ (byte tokenizer, texts, token files), runs/x and runs/other (trained 2 steps), foreign/ (someone
    else's folder that looks like a Hugging Face model), mirror/tinystories (published file names), cfg/base.toml."""
    root = tmp_path_factory.mktemp("outputs")
    data = make_byte_dataset(root / "data", train_chars=20_000, valid_chars=4_000)
    assert main(["train", "--dataset", str(data), "--runs-dir", str(root / "runs"), "--run-name", "x", *TRAIN]) == 0
    shutil.copytree(root / "runs" / "x", root / "runs" / "other")
    shutil.copytree(root / "runs" / "x", root / "runs" / "tinystories")  # a run where a download would land
    foreign = root / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("my notes\n")
    (foreign / "config.json").write_text('{"model_type": "llama"}\n')
    (foreign / "model.safetensors").write_bytes(b"downloaded weights")
    (foreign / "x.npy").write_bytes(b"\x93NUMPY my own array")
    (foreign / "notes.json").write_text('{"mine": true}\n')
    (foreign / "train.txt").write_text((data / "train.txt").read_text())
    (foreign / "valid.txt").write_text((data / "valid.txt").read_text())
    (foreign / "tokenizer").mkdir()
    (foreign / "tokenizer" / "notes.txt").write_text("not a tokenizer\n")
    src = root / "mirror" / "tinystories"  # a local copy of the published files, for --from-dir
    src.mkdir(parents=True)
    for split in ("train", "valid"):
        (src / f"TinyStoriesV2-GPT4-{split}.txt").write_text((data / f"{split}.txt").read_text())
    (root / "cfg").mkdir()
    dump_config(tiny_config(data, root / "sweep-runs", "train.total_steps=2"), root / "cfg" / "base.toml")
    return root


# ----------------------------------------------------------------------------- the observed losses


def test_export_force_into_the_current_directory_or_another_run_deletes_nothing(world, capsys, monkeypatch):
    before = tree_hashes(world)
    monkeypatch.chdir(world / "data")
    code, err = cli(capsys, "export", "--checkpoint", world / "runs" / "x", "--out", ".", "--force")
    assert code == 2 and "--out . is the current directory" in one_line_error(err)
    code, err = cli(capsys, "export", "--checkpoint", world / "runs" / "x", "--out", world / "runs" / "other",
                     "--force")
    assert code == 2
    message = one_line_error(err)
    assert "non-empty directory that cs336 export did not write (it holds checkpoints)" in message
    assert "runs/other" in message
    assert tree_hashes(world) == before


def test_tokenizer_train_into_the_data_directory_is_refused(world, capsys):
    before = tree_hashes(world)
    code, err = cli(capsys, "tokenizer", "train", "--input", world / "data" / "train.txt", "--vocab-size", "300",
                     "--out", world / "data")
    assert code == 2
    assert f"holds {world / 'data' / 'train.txt'}, an input of this command" in one_line_error(err)
    assert tree_hashes(world) == before


def test_export_force_replaces_its_own_output_and_keeps_anything_else(world, tmp_path, capsys):
    out = tmp_path / "hf"
    args = ["export", "--checkpoint", world / "runs" / "x", "--format", "safetensors", "--out", out]
    assert cli(capsys, *args)[0] == 0
    code, err = cli(capsys, *args)
    assert code == 2 and "holds a previous export folder; add --force" in one_line_error(err)
    (out / "mine.txt").write_text("keep me")
    before = tree_hashes(tmp_path)
    code, err = cli(capsys, *args, "--force")
    assert code == 2 and "holds mine.txt, which cs336 export did not write" in one_line_error(err)
    assert tree_hashes(tmp_path) == before
    (out / "mine.txt").unlink()
    assert cli(capsys, *args, "--force")[0] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"]  # nothing left beside it
    assert {"model.safetensors", "config.toml"} <= {p.name for p in out.iterdir()}


def test_tokenizer_train_force_replaces_only_a_tokenizer_directory(world, tmp_path, capsys):
    out = tmp_path / "tok"
    args = ["tokenizer", "train", "--input", world / "data" / "train.txt", "--vocab-size", "260", "--out", out,
            "--workers", "1"]
    assert cli(capsys, *args)[0] == 0
    first = tree_hashes(out)
    code, err = cli(capsys, *args)
    assert code == 2 and "holds a previous tokenizer directory; add --force" in one_line_error(err)
    assert tree_hashes(out) == first
    assert cli(capsys, *args, "--force")[0] == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)


def test_a_safetensors_file_is_replaced_only_when_export_wrote_it(world, tmp_path, capsys):
    out = tmp_path / "model.safetensors"
    args = ["export", "--checkpoint", world / "runs" / "x", "--format", "safetensors", "--out", out]
    assert cli(capsys, *args)[0] == 0
    code, err = cli(capsys, *args)
    assert code == 2 and "holds a previous output of cs336 export; add --force" in one_line_error(err)
    assert cli(capsys, *args, "--force")[0] == 0
    theirs = tmp_path / "theirs.safetensors"
    shutil.copyfile(world / "runs" / "x" / "model.safetensors", theirs)  # the trainer's, not export's
    code, err = cli(capsys, *args[:-1], theirs, "--force")
    assert code == 2 and "exists and was not written by cs336 export" in one_line_error(err)
    assert theirs.read_bytes() == (world / "runs" / "x" / "model.safetensors").read_bytes()


def test_download_keeps_a_same_named_file_it_did_not_record(world, tmp_path, capsys):
    folder = tmp_path / "tinystories"
    folder.mkdir()
    mine = folder / "TinyStoriesV2-GPT4-train.txt"
    mine.write_text("my own edited copy<|endoftext|>\n")
    code, err = cli(capsys, "download", "tinystories", "--dest", tmp_path, "--from-dir",
                     world / "mirror" / "tinystories", "--split", "train", "--force")
    assert code == 2 and "does not record it, so cs336 download did not write it" in one_line_error(err)
    assert mine.read_text() == "my own edited copy<|endoftext|>\n"
    assert sorted(p.name for p in folder.iterdir()) == [mine.name]


def test_the_directory_write_refuses_a_folder_with_files_it_did_not_write(tmp_path):
    from cs336_basics.errors import UserError

    out = tmp_path / "out"
    out.mkdir()
    (out / "a.txt").write_text("old")
    (out / "theirs.txt").write_text("keep")
    with pytest.raises(UserError, match="holds theirs.txt"):
        replace_dir_atomically(out, lambda tmp: (tmp / "a.txt").write_text("new"), {"a.txt"})
    assert (out / "a.txt").read_text() == "old" and (out / "theirs.txt").read_text() == "keep"
    (out / "theirs.txt").unlink()
    replace_dir_atomically(out, lambda tmp: (tmp / "a.txt").write_text("new"), {"a.txt"})
    assert (out / "a.txt").read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_eval_json_to_a_directory_is_refused_before_evaluating(world, capsys, monkeypatch):
    import cs336_basics.evaluation.checkpoint_eval as checkpoint_eval

    def never(*args, **kwargs):
        raise AssertionError("the evaluation ran before the output was checked")

    monkeypatch.setattr(checkpoint_eval, "evaluate_checkpoint", never)
    code, err = cli(capsys, "eval", "--checkpoint", world / "runs" / "x", "--json", world / "foreign")
    assert code == 2 and f"--json {world / 'foreign'} is a directory" in one_line_error(err)


# ----------------------------------------------------------------------------- the whole CLI


def _cases(w: Path) -> list[tuple[str, Path, list, int]]:
    """(name, working directory, arguments, expected exit code) for every command that writes, pointed at the
    current directory, at a directory holding its own input, at a foreign folder and at another run.

    The one output a command may replace is its own: train with train.overwrite=true on another run (see
    :data:`TRAINER_FILES`)."""
    data, x, other, foreign = w / "data", w / "runs" / "x", w / "runs" / "other", w / "foreign"
    tok = ["tokenizer", "train", "--input", data / "train.txt", "--vocab-size", "260", "--workers", "1"]
    tokenize = ["tokenize", "--tokenizer", data / "tokenizer", "--input", data / "valid.txt", "--workers", "1"]
    prepare = ["prepare", "--vocab-size", "260", "--context-length", "32", "--workers", "1"]
    train = ["train", "--dataset", data, *TRAIN]
    export = ["export", "--checkpoint", x]
    evaluate = ["eval", "--checkpoint", x, "--max-tokens", "256"]
    sweep = ["sweep", "--config", w / "cfg" / "base.toml", "--grid", "train.seed=1"]
    quick = ["quickstart", "--data", "sample", "--minutes", "0", "--workers", "1"]
    download = ["download", "tinystories", "--from-dir", w / "mirror" / "tinystories", "--max-bytes", "5000"]
    return [
        ("tokenizer train: cwd", data, [*tok, "--out", "."], 2),
        ("tokenizer train: holds input", w, [*tok, "--out", data], 2),
        ("tokenizer train: foreign", w, [*tok, "--out", foreign], 2),
        ("tokenizer train: another run", w, [*tok, "--out", other], 2),
        ("tokenize: cwd", data, [*tokenize, "--out", "."], 2),
        ("tokenize: holds input", w, [*tokenize, "--out", data], 2),
        ("tokenize: is input", w, [*tokenize, "--out", data / "valid.txt"], 2),
        ("tokenize: foreign", w, [*tokenize, "--out", foreign / "x.npy"], 2),
        ("tokenize: another run", w, [*tokenize, "--out", other], 2),
        ("prepare: cwd (writes beside the texts)", w / "texts", [*prepare, "--data", "."], 0),
        ("prepare: holds input", w, [*prepare, "--data", data, "--tokenizer", data / "tokenizer"], 2),
        ("prepare: foreign", w, [*prepare, "--data", foreign], 2),
        ("prepare: another run", w, [*prepare, "--data", other], 2),
        ("train: cwd", x, [*train, "--runs-dir", "..", "--run-name", "x"], 2),
        ("train: holds input", w, [*train, "--runs-dir", w, "--run-name", "data"], 2),
        ("train: foreign", w, [*train, "--runs-dir", w, "--run-name", "foreign"], 2),
        ("train: another run", w, [*train, "--runs-dir", w / "runs", "--run-name", "other"], 2),
        ("export: cwd", foreign, [*export, "--out", "."], 2),
        ("export: holds input", w, [*export, "--out", x], 2),
        ("export: foreign", w, [*export, "--out", foreign], 2),
        ("export: another run", w, [*export, "--out", other], 2),
        ("eval --json: cwd", foreign, [*evaluate, "--json", "."], 2),
        ("eval --json: is input", w, [*evaluate, "--json", data / "valid.npy", "--data", data / "valid.npy"], 2),
        ("eval --json: foreign", w, [*evaluate, "--json", foreign / "notes.json"], 2),
        ("eval --json: another run", w, [*evaluate, "--json", other / "config.toml"], 2),
        ("report: cwd", x, ["report", x, "--out", "."], 2),
        ("report: is input", w, ["report", x, "--out", x / "metrics.jsonl"], 2),
        ("report: foreign", w, ["report", x, "--out", foreign / "notes.txt"], 2),
        ("report: another run", w, ["report", x, "--out", other / "config.toml"], 2),
        ("plot: cwd", foreign, ["plot", x, "--out", "."], 2),
        ("plot: holds input", w, ["plot", x, "--out", x], 2),
        ("plot: foreign", w, ["plot", x, "--out", foreign / "notes"], 2),
        ("plot: another run", w, ["plot", x, "--out", other], 2),
        ("sweep: cwd", foreign, [*sweep, "--out", "..", "--name", "foreign"], 2),
        ("sweep: holds input", w, [*sweep, "--out", w, "--name", "cfg"], 2),
        ("sweep: foreign", w, [*sweep, "--out", w, "--name", "foreign"], 2),
        ("sweep: another run", w, [*sweep, "--out", w / "runs", "--name", "other"], 2),
        ("quickstart: cwd", foreign, [*quick, "--out", "."], 2),
        ("quickstart: holds input", w, ["quickstart", "--data", data / "train.txt", "--out", data], 2),
        ("quickstart: foreign", w, [*quick, "--out", foreign], 2),
        ("quickstart: another run", w, [*quick, "--out", other], 2),
        ("download: cwd", w / "runs" / "tinystories", [*download, "--dest", ".."], 2),
        ("download: holds input", w, [*download, "--dest", w / "mirror"], 2),
        ("download: foreign", w, [*download, "--dest", foreign.parent / "dl-foreign"], 2),
        ("download: another run", w, [*download, "--dest", w / "runs"], 2),
    ]


FORCE = {"tokenizer", "tokenize", "prepare", "export", "download"}
"""Commands with a --force option (train's is --set train.overwrite=true)."""
TRAINER_FILES = ("config.toml", "metrics.jsonl", "model.safetensors", "checkpoints/best.pt", "checkpoints/latest.pt",
                 "checkpoints/step_0000002.pt")
"""What a fresh run with train.overwrite=true replaces in another run directory: the trainer's own records."""


def test_no_command_deletes_or_changes_a_file_it_did_not_write(world, capsys, monkeypatch):
    texts = world / "texts"
    texts.mkdir()
    for name in ("train.txt", "valid.txt"):
        shutil.copyfile(world / "data" / name, texts / name)
    (texts / "notes.txt").write_text("mine\n")
    (world / "dl-foreign" / "tinystories").mkdir(parents=True)
    (world / "dl-foreign" / "tinystories" / "notes.txt").write_text("mine\n")
    (world / "runs" / "other" / "notes.txt").write_text("mine\n")
    (world / "runs" / "other" / "checkpoints" / "mine.txt").write_text("mine\n")
    failures = []
    for name, cwd, args, expected in _cases(world):
        command = str(args[0])
        variants = [args]
        if command in FORCE:
            variants.insert(0, [*args, "--force"])  # --force first: without it, a rerun finds its own output
        elif command == "train":
            variants.insert(0, [*args, "--set", "train.overwrite=true"])
        replaceable = {f"runs/other/{f}" for f in TRAINER_FILES} if name == "train: another run" else set()
        for argv in variants:
            before = tree_hashes(world)
            monkeypatch.chdir(cwd)
            code, err = cli(capsys, *argv)
            changed = _kept(before, tree_hashes(world))
            label = f"{name} {'(forced)' if argv is not args else ''}"
            want = expected
            if replaceable and argv is not args:  # its own output, replaced as asked: every other file stays
                changed, want = [c for c in changed if c not in replaceable], 0
            if code != want or "Traceback" in err:
                failures.append(f"{label}: exit {code}, expected {want}: {err.strip()[-300:]}")
            if code == 2 and ("Traceback" in err or "error:" not in err.strip().splitlines()[-1]):
                failures.append(f"{label}: exit 2 without a one-line error: {err.strip()[-300:]}")
            if changed:
                failures.append(f"{label}: changed or deleted {changed[:5]}")
    assert not failures, "\n".join(failures)
