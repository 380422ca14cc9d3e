"""The quickstart as a user runs it: wall time against its budget, and the quality it reaches.

Runs ``cs336 quickstart --data sample --out TMP`` (the TinyStories sample bundled
with the package: the first 2 MiB of the train split and the first 1,000 validation
stories, byte-identical to ``tinystories_train_head.txt`` and
``tinystories_valid_head1k.txt`` of the shared data; the default 9-minute budget)
and the same command with the handout recipe (with the command's dropout rule: ``--set``
overrides for AdamW, cosine, SwiGLU, handout init and untied embeddings; the command adds
dropout itself when the run repeats its data, as ``cs336 quickstart --set`` would run it),
once per seed of ``--seeds`` each (``--seed``), the two alternating, as whole commands, and
records, per run, the wall minutes, the training tokens per second, the bits per byte on the test half of the validation
stories (the held-out half that nothing is chosen on), on the development half beside it,
and the improvement over the unigram baseline on the test half in nats per token, parsed
from the command's own summary lines. The run sizes itself to the machine
(it measures a step first), so a loaded machine trains fewer steps and reaches a
worse loss: read the record's load average with it. The last run's whole output (stderr
and stdout in the order written, the output directory shown as ``qs``) is kept in the
record; the README's transcript is rendered from it. Full runs only (one run takes
the whole budget); there is no quick form.

    python benchmarks/bench_quickstart.py
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):  # run as a file: benchmarks/standalone.py puts the repository on sys.path
    import standalone  # noqa: F401
from benchmarks.harness import REPO, Contender, Timing, compare, group, run_subprocess
from benchmarks.script import script_main

SIZES = {"quick": dict(minutes=9, seeds="0"), "full": dict(minutes=9, seeds="0,1,2")}
"""``seeds``: the ``--seed`` of each run, comma-separated; every contender runs once per seed."""

HANDOUT = ["optimizer.name=adamw", "optimizer.schedule=cosine", "optimizer.lr_min=3e-4", "model.qk_norm=none",
           "model.init=handout", "model.ffn=swiglu", "model.tie_embeddings=false"]
"""Overrides that turn the quickstart's recipe back into the handout's (AdamW, cosine to a tenth of the peak,
SwiGLU, handout init, untied embeddings). Dropout is left to the command's own rule, which applies to any recipe
that repeats its data, so the comparison is between recipes, not between regularised and unregularised runs."""

HANDOUT_NAME = "handout recipe"
"""The handout recipe with the command's dropout rule."""

CONTENDERS = {"cs336 quickstart": [], HANDOUT_NAME: HANDOUT}
"""Contender -> its ``--set`` overrides; the first is the command as a user runs it (its metrics carry no prefix)."""


def _found(pattern: str, text: str, kind=float):
    match = re.search(pattern, text)
    return kind(match.group(1)) if match else "not printed"


def _curve(metrics_file: Path) -> str:
    """The run's periodic evaluations as ``wall-clock bits/byte`` pairs (the 32k-token subset the trainer logs)."""
    events = [json.loads(line) for line in metrics_file.read_text().splitlines() if line.strip()]
    points = [e for e in events if e.get("event") == "eval" and "val_bpb" in e]
    return ", ".join(f"{e['wallclock'] / 60:.1f} min {e['val_bpb']:.3f}" for e in points)


SUMMARY_LINES = {"test bits per byte": r"^test:.*?([\d.]+) bits/byte",
                 "development bits per byte": r"^development:.*?([\d.]+) bits/byte",
                 "test nats below unigram": r"^improvement:\s+(-?[\d.]+) nats"}
"""Metric -> the pattern of the command's summary line that holds it."""


def summary_metrics(stdout: str) -> dict[str, float]:
    """The figures of one quickstart's summary lines (a line the command did not print is an error)."""
    found = {}
    for metric, pattern in SUMMARY_LINES.items():
        match = re.search(pattern, stdout, re.MULTILINE)
        if match is None:
            raise RuntimeError(f"the quickstart printed no {metric!r} line; its output ends:\n{stdout[-2000:]}")
        found[metric] = float(match.group(1))
    return found


def training_rate(stdout: str) -> float:
    """Training tokens per second of one quickstart: the tokens of its ``completed at step N (T tokens)`` line over
    the ``train`` seconds of its ``time (s):`` line (the training phase, its evaluations included)."""
    tokens = re.search(r"quickstart: completed at step \d+ \(([\d,]+) tokens\)", stdout)
    seconds = re.search(r"^time \(s\):.*?train ([\d.]+)", stdout, re.MULTILINE)
    if tokens is None or seconds is None:
        raise RuntimeError(f"the quickstart printed no token count or training time; its output ends:\n{stdout[-2000:]}")
    return int(tokens.group(1).replace(",", "")) / float(seconds.group(1))


def parse_seeds(text: str) -> list[int]:
    seeds = [int(part) for part in str(text).split(",") if part.strip()]
    if not seeds:
        raise SystemExit("bench_quickstart: --seeds needs at least one seed, e.g. --seeds 0,1,2")
    return seeds


def measure(settings: dict, data_dir) -> dict:
    seeds = parse_seeds(settings["seeds"])
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    outputs: dict[str, list[str]] = {name: [] for name in CONTENDERS}
    curves: dict[str, str] = {}
    metrics: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        def runner(name: str, overrides: list[str]):
            prefix = "" if not overrides else f"{name}: "

            def run_once():
                seed = seeds[len(outputs[name])]
                out = Path(tmp) / f"qs-seed{seed}-{'ours' if not overrides else 'handout'}"
                sets = [arg for o in overrides for arg in ("--set", o)]
                wall, _, stdout, cpu, _ = run_subprocess(
                    [sys.executable, "-m", "cs336_basics.cli", "quickstart", "--data", "sample", "--out", str(out),
                     "--minutes", str(settings["minutes"]), "--seed", str(seed), *sets], env, merge_stderr=True)
                outputs[name].append(stdout.replace(str(out), "qs"))
                found = {"minutes": wall / 60, **summary_metrics(stdout),
                         "training tokens per second": training_rate(stdout)}
                for key, value in found.items():
                    metrics.setdefault(prefix + key, []).append(value)
                curves[name] = _curve(out / "runs" / "quickstart" / "metrics.jsonl")
                return Timing(wall, cpu)
            return run_once

        results = compare([Contender(name, runner(name, o)) for name, o in CONTENDERS.items()],
                          repeats=len(seeds))
    last = outputs["cs336 quickstart"][-1]
    facts = {"last run: step cost measured before training, s": _found(r"([\d.]+) s/step measured", last),
             "last run: steps first planned": _found(r"about (\d+) steps", last, int),
             "last run: steps trained": _found(r"quickstart: completed at step (\d+)", last, int),
             "last run: training seconds": _found(r"time \(s\):.*?train ([\d.]+)", last),
             f"{HANDOUT_NAME}, last run: steps trained": _found(r"quickstart: completed at step (\d+)",
                                                               outputs[HANDOUT_NAME][-1], int)}
    for name, curve in curves.items():
        facts[f"{name}, last run: development-half bits/byte (the evaluations' leading subset) at each "
              "evaluation"] = curve
    return {"groups": [group("run", "`cs336 quickstart --data sample` (2 MiB of TinyStories train; scored on the "
                             "test half of 1,000 validation stories, the development half beside it), "
                             f"{settings['minutes']}-minute budget, seeds {', '.join(map(str, seeds))}, against the "
                             "same command with the handout recipe (with the command's dropout rule: `--set "
                             + " --set ".join(HANDOUT) + "`)", results,
                             metrics=metrics, size=f"{settings['minutes']}-minute budget", facts=facts)],
            "transcript": {"command": "cs336 quickstart --data sample --out qs"
                                      + ("" if settings["minutes"] == 9 else f" --minutes {settings['minutes']}"),
                           "output": last},
            "notes": ["One run of each whole command per seed, the two recipes alternating; the step count is "
                      "fitted to the machine's speed at the start of each run.",
                      "Test bits per byte: the final evaluation on the held-out half of the validation stories "
                      "(nothing was chosen on it); development bits per byte: the leading half, the one the "
                      "evaluations during training see; both parsed from the command's summary.",
                      "Both recipes run with the command's automatic dropout rule."]}


if __name__ == "__main__":
    script_main(__doc__.splitlines()[0], SIZES, measure)
