"""The quickstart as a user runs it: wall time against its budget, and the quality it reaches.

Runs ``cs336 quickstart --data sample --out TMP`` (the TinyStories sample bundled
with the package: the first 2 MiB of the train split and the first 1,000 validation
stories, byte-identical to ``tinystories_train_head.txt`` and
``tinystories_valid_head1k.txt`` of the shared data; the default 9-minute budget)
``--repeats`` times as a whole command and records, per run, the wall minutes, the validation bits per byte over the whole
validation file and the improvement over the unigram baseline in nats per token,
parsed from the command's own summary lines. The run sizes itself to the machine
(it measures a step first), so a loaded machine trains fewer steps and reaches a
worse loss: read the record's load average with it. The last run's whole output (stderr
and stdout in the order written, the output directory shown as ``qs``) is kept in the
record; the README's transcript is rendered from it. Full runs only (one run takes
the whole budget); there is no quick form.

    python benchmarks/bench_quickstart.py
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.harness import REPO, Contender, Timing, compare, group, run_subprocess, script_main

SIZES = {"quick": dict(minutes=9, repeats=1), "full": dict(minutes=9, repeats=1)}


def _found(pattern: str, text: str, kind=float):
    match = re.search(pattern, text)
    return kind(match.group(1)) if match else "not printed"


def measure(settings: dict, data_dir) -> dict:
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    outputs: list[str] = []
    metrics: dict[str, list[float]] = {"minutes": [], "bits per byte": [], "nats below unigram": []}
    with tempfile.TemporaryDirectory() as tmp:
        def run_once():
            out = Path(tmp) / f"qs{len(outputs)}"
            wall, _, stdout, cpu, _ = run_subprocess(
                [sys.executable, "-m", "cs336_basics.cli", "quickstart", "--data", "sample", "--out", str(out),
                 "--minutes", str(settings["minutes"])], env, merge_stderr=True)
            outputs.append(stdout.replace(str(out), "qs"))
            metrics["minutes"].append(wall / 60)
            metrics["bits per byte"].append(float(re.search(r"validation:.*?([\d.]+) bits/byte", stdout).group(1)))
            metrics["nats below unigram"].append(float(re.search(r"improvement:\s+([\d.]+) nats", stdout).group(1)))
            return Timing(wall, cpu)

        results = compare([Contender("cs336 quickstart", run_once)], repeats=settings["repeats"])
    last = outputs[-1]
    facts = {"last run: step cost measured before training, s": _found(r"([\d.]+) s/step measured", last),
             "last run: steps first planned": _found(r"about (\d+) steps", last, int),
             "last run: steps trained": _found(r"quickstart: completed at step (\d+)", last, int),
             "last run: training seconds": _found(r"time \(s\):.*?train ([\d.]+)", last)}
    return {"groups": [group("run", "`cs336 quickstart --data sample` (2 MiB of TinyStories train, validated on "
                             f"1,000 held-out stories), {settings['minutes']}-minute budget", results, metrics=metrics,
                             size=f"{settings['minutes']}-minute budget", facts=facts)],
            "transcript": {"command": "cs336 quickstart --data sample --out qs"
                                      + ("" if settings["minutes"] == 9 else f" --minutes {settings['minutes']}"),
                           "output": last},
            "notes": ["One run per repetition of the whole command; the step count is fitted to the machine's speed "
                      "at the start of each run."]}


if __name__ == "__main__":
    script_main(__doc__.splitlines()[0], SIZES, measure)
