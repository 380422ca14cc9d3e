"""The quickstart as a user runs it: wall time against its budget, and the quality it reaches.

Runs ``cs336 quickstart --data TINYSTORIES_TRAIN_HEAD --valid TINYSTORIES_VALID_HEAD
--out TMP`` (the default 9-minute budget) ``--repeats`` times as a whole command and
records, per run, the wall minutes, the validation bits per byte over the whole
validation file and the improvement over the unigram baseline in nats per token,
parsed from the command's own summary lines. The run sizes itself to the machine
(it measures a step first), so a loaded machine trains fewer steps and reaches a
worse loss: read the record's load average with it. Full runs only (one run takes
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
from benchmarks.corpora import TINYSTORIES_TRAIN, TINYSTORIES_VALID
from benchmarks.harness import REPO, Contender, Timing, compare, group, run_subprocess, script_main, shared_data

SIZES = {"quick": dict(minutes=9, repeats=1), "full": dict(minutes=9, repeats=1)}


def measure(settings: dict, data_dir) -> dict:
    train, valid = shared_data(TINYSTORIES_TRAIN, data_dir), shared_data(TINYSTORIES_VALID, data_dir)
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    outputs: list[str] = []
    metrics: dict[str, list[float]] = {"minutes": [], "bits per byte": [], "nats below unigram": []}
    with tempfile.TemporaryDirectory() as tmp:
        def run_once():
            out = Path(tmp) / f"qs{len(outputs)}"
            wall, _, stdout, cpu, stderr = run_subprocess(
                [sys.executable, "-m", "cs336_basics.cli", "quickstart", "--data", str(train), "--valid", str(valid),
                 "--out", str(out), "--minutes", str(settings["minutes"])], env)
            outputs.append(stderr + stdout)
            metrics["minutes"].append(wall / 60)
            metrics["bits per byte"].append(float(re.search(r"validation:.*?([\d.]+) bits/byte", stdout).group(1)))
            metrics["nats below unigram"].append(float(re.search(r"improvement:\s+([\d.]+) nats", stdout).group(1)))
            return Timing(wall, cpu)

        results = compare([Contender("cs336 quickstart", run_once)], repeats=settings["repeats"])
    plan = re.search(r"([\d.]+) s/step measured -> (\d+) steps", outputs[-1])
    train_s = re.search(r"time \(s\):.*?train ([\d.]+)", outputs[-1])
    facts = {"last run: step cost measured before training, s": float(plan.group(1)) if plan else "not printed",
             "last run: steps planned": int(plan.group(2)) if plan else "not printed",
             "last run: training seconds": float(train_s.group(1)) if train_s else "not printed"}
    return {"groups": [group("run", f"`cs336 quickstart` on {train.name}, validated on {valid.name}, "
                             f"{settings['minutes']}-minute budget", results, metrics=metrics,
                             size=f"{settings['minutes']}-minute budget", facts=facts)],
            "notes": ["One run per repetition of the whole command; the step count is fitted to the machine's speed "
                      "at the start of each run."]}


if __name__ == "__main__":
    script_main(__doc__.splitlines()[0], SIZES, measure)
