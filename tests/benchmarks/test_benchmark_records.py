"""The benchmark figures in README.md and BENCHMARKS.md come from the committed records, and only from them.

Nothing here measures anything or reads ../shared: it renders the committed
``benchmarks/results/*.jsonl`` records and compares the text. Figures typed into README.md
and docs/ outside the generated blocks are checked by tests/test_docs_figures.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from benchmarks import AREAS, render
from benchmarks.claims import CLAIMS, Claim
from benchmarks.harness import paired_ratios, verdict

REPO = Path(__file__).resolve().parents[2]
NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:e-?\d+)?")
# what a speed or throughput figure looks like in prose
FIGURE = re.compile(r"\b\d+(?:\.\d+)?(?:\s*[-–]\s*\d+(?:\.\d+)?)?x\b|\d[\d,.]*\s*(?:tok/s|tokens/s|MB/s|GB/s|s/step)\b")


def _blocks(text: str) -> dict[str, str]:
    return dict(re.findall(r"<!-- bench:([\w-]+):start -->(.*?)<!-- bench:\1:end -->", text, flags=re.S))


def _outside_blocks_and_code(text: str) -> str:
    text = re.sub(r"<!-- bench:([\w-]+):start -->.*?<!-- bench:\1:end -->", "", text, flags=re.S)
    return re.sub(r"```.*?```", "", text, flags=re.S)


def test_rendering_the_committed_records_reproduces_the_committed_text():
    for path, expected in render.rendered().items():
        actual = path.read_text(encoding="utf-8")
        assert actual == expected, f"{path.name} differs from its records: run `python -m benchmarks render`"


def test_every_number_in_the_generated_blocks_comes_from_rendering_the_records():
    generated = render.blocks()
    for name, block_names in render.BLOCKS.items():
        committed = _blocks((REPO / name).read_text(encoding="utf-8"))
        for block in block_names:
            assert NUMBER.findall(committed[block]) == NUMBER.findall(generated[block]), f"{name}: block {block}"


@pytest.mark.parametrize("name", ["README.md", "BENCHMARKS.md"])
def test_no_benchmark_figure_outside_the_generated_blocks(name):
    prose = _outside_blocks_and_code((REPO / name).read_text(encoding="utf-8"))
    assert FIGURE.findall(prose) == [], f"{name}: speed figures typed outside the generated blocks"


def test_records_say_what_where_when_and_keep_every_repetition():
    records = render.load_records()
    assert records, "no benchmark records committed"
    for area, recs in records.items():
        assert area in AREAS
        for rec in recs:
            assert rec["kind"] in ("quick", "full") and rec["area"] == area
            assert re.fullmatch(r"[0-9a-f]{40}", rec["commit"]) and isinstance(rec["dirty"], bool)
            machine = rec["machine"]
            assert machine["cpu"] and machine["cores"] and machine["torch"]
            assert len(machine["load_before"]) == 3 and len(machine["load_after"]) == 3
            assert rec["command"].startswith("python -m benchmarks run")
            for grp in rec["groups"]:
                runs = {len(s["wall_s"]) for s in grp["contenders"].values()}
                assert len(runs) == 1, f"{area}/{grp['id']}: contenders must have paired repetitions"
                if rec["kind"] == "quick":
                    assert runs.pop() >= 3, f"{area}/{grp['id']}: a quick record needs >= 3 repetitions"


def test_claims_name_known_areas():
    assert {c.area for c in CLAIMS} <= set(AREAS)
    assert all(c.measure in ("speed", "memory", "metric", "metric ratio") for c in CLAIMS)
    assert all(c.anchor for c in CLAIMS if c.measure != "metric")


def test_met_only_when_the_whole_range_clears_the_target():
    assert verdict(1.01, 1.2, 1.0) == "met"
    assert verdict(0.95, 1.2, 1.0) == "within noise"
    assert verdict(0.8, 0.99, 1.0) == "not met"
    assert verdict(1.1, 1.4, 1.5, better="lower") == "met"
    assert verdict(1.4, 1.6, 1.5, better="lower") == "within noise"
    assert verdict(1.6, 1.7, 1.5, better="lower") == "not met"
    assert paired_ratios([2.0, 4.0], [1.0, 1.0]) == [2.0, 4.0]


def test_a_metric_ratio_is_met_only_when_every_run_of_ours_beats_every_run_of_the_anchor():
    claim = Claim("quickstart", "run", "bits per byte, ours / handout", "bits per byte", "handout: bits per byte",
                  measure="metric ratio", target=1.0, better="lower")

    def record(ours, handout):
        metrics = {"bits per byte": ours, "handout: bits per byte": handout}
        grp = {"id": "run", "size": "", "contenders": {}, "metrics": metrics, "facts": {}}
        return {"settings": {}, "groups": [grp]}

    def judged(ours, handout):
        rec = record(ours, handout)
        return render.status(claim, rec, render.evaluate(claim, rec)["values"])

    assert judged([1.10, 1.12, 1.13], [1.14, 1.20, 1.30]) == "met"
    assert judged([1.10, 1.12, 1.15], [1.14, 1.20, 1.30]) == "within noise"  # one seed of ours above the anchor's best
    assert judged([1.13, 1.10, 1.12], [1.14, 1.11, 1.30]) == "within noise"  # below in every pair, ranges overlap
    assert judged([1.31, 1.35, 1.40], [1.14, 1.20, 1.30]) == "not met"
    row = render.evaluate(claim, record([1.1, 1.2, 1.3], [1.4, 1.5]))
    assert row["runs"] == "3×2" and sorted(row["values"]) == sorted(o / a for o in (1.1, 1.2, 1.3) for a in (1.4, 1.5))
    assert row["ours"] == "1.20 [1.10, 1.30]" and row["anchor"] == "1.45 [1.40, 1.50]"
    assert render.evaluate(claim, record([1.1], [])) is None


def test_the_readme_transcript_is_the_latest_recorded_quickstart_output(tmp_path):
    output = "\n".join(["prepared qs/data"] + [f"step {i}/10 | train 3.0" for i in range(1, 11)]
                       + ["validation:        3.1 nats/token, 1.2 bits/byte"])
    old = {"area": "quickstart", "date": "2026-01-01T00:00:00Z", "commit": "a" * 40,
           "machine": {"cpu": "CPU", "cores": 2, "load_before": [0.5]},
           "transcript": {"command": "cs336 quickstart --data sample --out qs", "output": "old run"}}
    new = dict(old, date="2026-02-01T00:00:00Z", commit="b" * 40,
               transcript={"command": "cs336 quickstart --data sample --out qs", "output": output})
    text = render.quickstart_transcript({"quickstart": [old, new, {"area": "quickstart"}]})
    assert "old run" not in text and "bbbbbbbbbb" in text and "$ cs336 quickstart --data sample --out qs" in text
    shown = text.split("```text\n")[1].split("\n```")[0].splitlines()[1:]
    assert shown == ["prepared qs/data", "step 1/10 | train 3.0", "step 2/10 | train 3.0", "step 3/10 | train 3.0",
                     "...", "step 8/10 | train 3.0", "step 9/10 | train 3.0", "step 10/10 | train 3.0",
                     "validation:        3.1 nats/token, 1.2 bits/byte"]
    assert "No recorded quickstart run" in render.quickstart_transcript({"quickstart": [{"area": "quickstart"}]})


def test_records_identify_the_machine_by_its_features_and_a_fingerprint(monkeypatch):
    from benchmarks import harness

    monkeypatch.setattr(harness, "_cpuinfo", lambda: ("AMD EPYC", ["fpu", "avx2", "fma"]))
    avx2 = harness.machine_identity()
    monkeypatch.setattr(harness, "_cpuinfo", lambda: ("AMD EPYC", ["fpu", "avx2", "fma", "avx512f", "avx512_bf16"]))
    bf16 = harness.machine_identity()
    assert avx2["features"] == ["avx2"] and bf16["features"] == ["avx2", "avx512f", "avx512_bf16"]
    assert avx2["fingerprint"] != bf16["fingerprint"]  # one name, two instruction sets: two machines
    assert render.machine_name(avx2) == "AMD EPYC, AVX2"
    assert render.machine_name(bf16) == "AMD EPYC, AVX-512, AVX512-BF16"
    assert render.machine_name({"cpu": "AMD EPYC"}) == "AMD EPYC, features not recorded"


def test_a_record_marks_a_tree_with_uncommitted_or_untracked_files():
    record = {"kind": "full", "date": "2026-12-07T00:00:00Z", "dirty": False, "untracked": True,
              "machine": {"cpu": "Intel Xeon", "features": ["avx2"], "load_before": [1.0], "load_after": [1.0]}}
    assert "†" in render._record_cell(record) and render.tree_mark(record) == " (untracked files)"
    record["untracked"] = False
    assert "†" not in render._record_cell(record) and render.tree_mark(record) == ""


def test_a_start_line_without_a_record_after_it_is_reported(tmp_path):
    import json

    lines = [{"event": "start", "area": "eval", "kind": "full", "date": "d1", "commit": "a" * 40},
             {"area": "eval", "kind": "full", "date": "d1"},  # finished
             {"event": "start", "area": "eval", "kind": "full", "date": "d2", "commit": "b" * 40},  # interrupted
             {"event": "start", "area": "eval", "kind": "quick", "date": "d3", "commit": "c" * 40},
             {"area": "eval", "kind": "quick", "date": "d3"}]
    (tmp_path / "eval.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    assert [u["date"] for u in render.unfinished_starts(tmp_path)["eval"]] == ["d2"]
    assert [r["date"] for r in render.load_records(tmp_path)["eval"]] == ["d1", "d3"]


def test_git_state_ignores_only_the_records_own_files(tmp_path):
    """A run appends its start line to benchmarks/results/ before measuring; that alone must not mark the tree
    dirty, while a change anywhere else must."""
    import subprocess

    from benchmarks.harness import git_state

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)

    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "benchmarks" / "results" / "train.jsonl").write_text("{}\n")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "start")
    assert git_state(tmp_path) | {"commit": None} == {"commit": None, "dirty": False, "untracked": False}
    (tmp_path / "benchmarks" / "results" / "train.jsonl").write_text("{}\n{\"event\": \"start\"}\n")
    (tmp_path / "benchmarks" / "results" / "new.jsonl").write_text("{}\n")
    assert git_state(tmp_path)["dirty"] is False and git_state(tmp_path)["untracked"] is False
    (tmp_path / "code.py").write_text("x = 2\n")
    (tmp_path / "scratch.py").write_text("")
    assert git_state(tmp_path)["dirty"] is True and git_state(tmp_path)["untracked"] is True
