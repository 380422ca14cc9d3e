"""Text generated from the records: the summary and details in BENCHMARKS.md, the speed figures in README.md,
the tables of docs/questions.md (:mod:`benchmarks.question_tables`).

Each generated block sits between marker comments, ``<!-- bench:NAME:start -->`` and
``<!-- bench:NAME:end -->``; everything outside the markers is hand-written and left
alone. Per area the latest *full* record is used when there is one, else the latest
quick record, and every row says which kind it comes from. Rendering the committed
records must reproduce the committed blocks exactly (tests/benchmarks/test_benchmark_records.py).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from benchmarks import AREAS, question_tables
from benchmarks.claims import CLAIMS, Claim
from benchmarks.harness import REPO, RESULTS, VECTOR_FEATURES, cross_ratios, paired_ratios, rates, spread, verdict

BLOCKS = {"BENCHMARKS.md": ("summary", "details"), "README.md": ("readme-speed", "quickstart-transcript"),
          "docs/questions.md": ("questions-recipe_cpu", "questions-quickstart_9min",
                                *(f"questions-{name}" for name in question_tables.SWEEPS))}


# ----------------------------------------------------------------------------- records


def _lines(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def load_records(results_dir: Path = RESULTS) -> dict[str, list[dict]]:
    """area -> its records, oldest first (the start lines left out)."""
    return {path.stem: [line for line in _lines(path) if line.get("event") != "start"]
            for path in sorted(results_dir.glob("*.jsonl"))}


def unfinished_starts(results_dir: Path = RESULTS) -> dict[str, list[dict]]:
    """area -> the start lines no record follows: runs that were interrupted, failed or discarded (or still run)."""
    out: dict[str, list[dict]] = {}
    for path in sorted(results_dir.glob("*.jsonl")):
        open_start = None
        for line in _lines(path):
            if line.get("event") == "start":
                if open_start is not None:
                    out.setdefault(path.stem, []).append(open_start)
                open_start = line
            else:
                open_start = None
        if open_start is not None:
            out.setdefault(path.stem, []).append(open_start)
    return out


def latest(records: list[dict]) -> dict | None:
    """The latest full record, else the latest quick one."""
    full = [r for r in records if r["kind"] == "full"]
    return (full or records or [None])[-1]


# ----------------------------------------------------------------------------- numbers


def num(x: float) -> str:
    """A measured value with the digits that mean something."""
    if x == 0:
        return "0"
    a = abs(x)
    if a >= 1000:
        return f"{x:,.0f}"
    if a >= 100:
        return f"{x:.0f}"
    if a >= 10:
        return f"{x:.1f}"
    if a >= 1:
        return f"{x:.2f}"
    if a >= 0.01:
        return f"{x:.3f}"
    return f"{x:.1e}"


def med_range(values: list[float], unit: str = "") -> str:
    med, lo, hi = spread(values)
    return f"{num(med)}{unit} [{num(lo)}, {num(hi)}]"


def _target(claim: Claim) -> str:
    if claim.target is None:
        return "-"
    scope = f" at {claim.when[0]}={claim.when[1]}" if claim.when else ""
    return f"{'≥' if claim.better == 'higher' else '≤'} {claim.target:g}{scope}"


def status(claim: Claim, record: dict, values: list[float]) -> str:
    """met / within noise / not met, or why the target does not apply to this record."""
    if claim.when and record["settings"].get(claim.when[0]) != claim.when[1]:
        return f"target not applicable ({claim.when[0]}={record['settings'].get(claim.when[0])})"
    _, low, high = spread(values)
    return verdict(low, high, claim.target, claim.better)


def _cpu_rates(series: dict) -> list[float] | None:
    if "cpu_s" not in series:
        return None
    work = series.get("work") or 1.0
    return [work / t for t in series["cpu_s"]]


def evaluate(claim: Claim, record: dict) -> dict | None:
    """The claim's per-repetition ratios (or metric values) in ``record``; None when the record lacks them."""
    grp = next((g for g in record["groups"] if g["id"] == claim.group), None)
    if grp is None:
        return None
    if claim.measure == "metric":
        values = grp["metrics"].get(claim.ours)
        if not values:
            return None
        return {"values": values, "cpu": None, "ours": "", "anchor": "", "group": grp}
    if claim.measure == "metric ratio":
        ours, anchor = grp["metrics"].get(claim.ours), grp["metrics"].get(claim.anchor)
        if not ours or not anchor:
            return None
        return {"values": cross_ratios(ours, anchor), "cpu": None, "group": grp, "runs": f"{len(ours)}×{len(anchor)}",
                "ours": med_range(ours), "anchor": med_range(anchor)}
    a, b = grp["contenders"].get(claim.ours), grp["contenders"].get(claim.anchor)
    if a is None or b is None:
        return None
    if claim.measure == "memory":
        if "peak_rss_mb" not in a or "peak_rss_mb" not in b:
            return None
        return {"values": paired_ratios(a["peak_rss_mb"], b["peak_rss_mb"]), "cpu": None, "group": grp,
                "ours": med_range(a["peak_rss_mb"], " MB"), "anchor": med_range(b["peak_rss_mb"], " MB")}
    cpu_a, cpu_b = _cpu_rates(a), _cpu_rates(b)
    return {"values": paired_ratios(rates(a), rates(b)), "group": grp,
            "cpu": paired_ratios(cpu_a, cpu_b) if cpu_a and cpu_b else None,
            "ours": med_range(a["wall_s"], " s"), "anchor": med_range(b["wall_s"], " s")}


def short_cpu(name: str) -> str:
    """``Intel(R) Xeon(R) Processor`` -> ``Intel Xeon``: enough to tell the machines of two records apart."""
    for noise in ("(R)", "(TM)", "(tm)", " Processor", " CPU"):
        name = name.replace(noise, "")
    return " ".join(name.split()) or "unknown CPU"


def machine_name(machine: dict) -> str:
    """``AMD EPYC, AVX2`` / ``AMD EPYC, AVX-512, AVX512-BF16``: the CPU with the vector features that set its speed
    (records from before features were stored say "features not recorded")."""
    if "features" not in machine:
        return f"{short_cpu(machine['cpu'])}, features not recorded"
    labels = [VECTOR_FEATURES[f] for f in machine["features"] if f in VECTOR_FEATURES]
    if "AVX-512" in labels and "AVX2" in labels:
        labels.remove("AVX2")
    return ", ".join([short_cpu(machine["cpu"]), *labels] if labels else [short_cpu(machine["cpu"]), "no vector features"])


def tree_mark(record: dict) -> str:
    """A mark for a record measured on a tree that differs from its commit."""
    marks = (["uncommitted changes"] if record.get("dirty") else []) + (["untracked files"] if record.get("untracked") else [])
    return f" ({' and '.join(marks)})" if marks else ""


def _record_cell(record: dict) -> str:
    m = record["machine"]
    dirty = " †" if record.get("dirty") or record.get("untracked") else ""
    return (f"{record['kind']}, {record['date'][:10]}, {machine_name(m)}{dirty}, "
            f"load {m['load_before'][0]:g}→{m['load_after'][0]:g}")


# ----------------------------------------------------------------------------- the generated blocks


def summary(latest_by_area: dict[str, dict | None]) -> str:
    lines = ["| comparison | size | ours: median [min, max] | anchor: median [min, max] | ratio (wall): median "
             "[min, max] | ratio (CPU time) | runs | target | status | record |",
             "|---|---|---|---|---|---|---:|---|---|---|"]
    for area in AREAS:
        record = latest_by_area.get(area)
        claims = [c for c in CLAIMS if c.area == area]
        if record is None:
            if claims:
                lines.append(f"| {area}: no record yet (`python -m benchmarks run --only {area}`) "
                             "| | | | | | | | | |")
            continue
        for claim in claims:
            row = evaluate(claim, record)
            if row is None:
                lines.append(f"| {claim.label} | | not in this record | | | | | {_target(claim)} | not measured "
                             f"| {_record_cell(record)} |")
                continue
            cpu = med_range(row["cpu"]) if row["cpu"] else "-"
            runs = row.get("runs", len(row["values"]))
            lines.append(f"| {claim.label} | {row['group'].get('size', '')} | {row['ours']} | {row['anchor']} | "
                         f"**{med_range(row['values'])}** | {cpu} | {runs} | {_target(claim)} | "
                         f"{status(claim, record, row['values'])} | {_record_cell(record)} |")
    if any(r is not None and (r.get("dirty") or r.get("untracked")) for r in latest_by_area.values()):
        lines += ["", "† measured on a tree that differs from its commit (the area's details say how)."]
    return "\n".join(lines)


def readme_speed(latest_by_area: dict[str, dict | None]) -> str:
    lines = []
    for claim in CLAIMS:
        record = latest_by_area.get(claim.area)
        if claim.readme is None or record is None:
            continue
        row = evaluate(claim, record)
        if row is None:
            continue
        med, lo, hi = spread(row["values"])
        target = f"; target {_target(claim)}: **{status(claim, record, row['values'])}**" if claim.target else ""
        lines.append(f"- {claim.readme}: **{num(med)}x** the speed, [{num(lo)}, {num(hi)}] over "
                     f"{len(row['values'])} interleaved runs{target} ({row['group'].get('size', '')}; {record['kind']} "
                     f"record, {record['date'][:10]})")
    if not lines:
        return "No benchmark records yet: run `python -m benchmarks run --quick`."
    return "\n".join(lines)


def groups_markdown(groups: list[dict]) -> str:
    """Every group of a record: all repetitions of every contender, then its metrics and facts."""
    out = []
    for g in groups:
        out += [f"**{g['title']}**", "",
                "| contender | wall s: median [min, max] | rate (median) | CPU s: median [min, max] | peak RSS MB "
                "| runs (wall s) |", "|---|---|---:|---|---:|---|"]
        for name, s in g["contenders"].items():
            rate = f"{num(s['work'] / statistics.median(s['wall_s']))} {s['work_unit']}/s" if s.get("work") else ""
            cpu = med_range(s["cpu_s"]) if "cpu_s" in s else ""
            rss = num(max(s["peak_rss_mb"])) if "peak_rss_mb" in s else ""
            runs = ", ".join(num(t) for t in s["wall_s"])
            out.append(f"| {name} | {med_range(s['wall_s'])} | {rate} | {cpu} | {rss} | {runs} |")
        if g["metrics"]:
            out += ["", "| per-run metric | median [min, max] | runs |", "|---|---|---|"]
            out += [f"| {name} | {med_range(v)} | {', '.join(num(x) for x in v)} |" for name, v in g["metrics"].items()]
        if g["facts"]:
            out += [""] + [f"- {name}: {_fact(value)}" for name, value in g["facts"].items()]
        out.append("")
    return "\n".join(out).rstrip("\n")


def _fact(value) -> str:
    if isinstance(value, float):
        return num(value)
    if isinstance(value, dict):
        return ", ".join(f"{k} {_fact(v)}" for k, v in value.items())
    return str(value)


def area_section(area: str, record: dict, count: int, unfinished: list[dict] | None = None) -> str:
    m = record["machine"]
    commit = record["commit"][:10] + tree_mark(record)
    threads = f" with {m['torch_threads']} thread(s)" if m["torch_threads"] else ""
    head = [f"### {AREAS[area][1]}", "",
            f"Latest {record['kind']} record (of {count}) in `benchmarks/results/{area}.jsonl`: {record['date']}, "
            f"commit {commit}, `{record['command']}`, {num(record['elapsed_s'])} s.",
            f"Machine: {m['cpu']} ({machine_name(m).partition(', ')[2]}), {m['cores']} cores"
            + (f", {m['memory_gib']} GiB, fingerprint {m['fingerprint']}" if "fingerprint" in m else "")
            + f", Python {m['python']}, torch {m['torch']}{threads}, load "
            f"average (1 min) {m['load_before'][0]:g} before and {m['load_after'][0]:g} after.",
            "Settings: " + ", ".join(f"{k} {v!r}" if isinstance(v, str) else f"{k} {v}"
                                     for k, v in record["settings"].items()) + ".", ""]
    if unfinished:
        dates = ", ".join(f"{u['date']} ({u['kind']}, commit {u['commit'][:10]})" for u in unfinished)
        head += [f"Runs that started and left no record (interrupted, failed or discarded): {len(unfinished)}: "
                 f"{dates}.", ""]
    head += [f"- {note}" for note in record["notes"]] + ([""] if record["notes"] else [])
    return "\n".join(head) + "\n" + groups_markdown(record["groups"])


def details(records: dict[str, list[dict]], latest_by_area: dict[str, dict | None],
            unfinished: dict[str, list[dict]] | None = None) -> str:
    sections = [area_section(area, latest_by_area[area], len(records[area]), (unfinished or {}).get(area))
                for area in AREAS if latest_by_area.get(area) is not None]
    return "\n\n".join(sections) if sections else "No benchmark records yet."


def elide_progress(output: str, keep: int = 3) -> str:
    """The output with the training lines (``step N/M ...``) cut to the first and last ``keep``, "..." between."""
    lines = output.rstrip("\n").splitlines()
    steps = [i for i, line in enumerate(lines) if line.startswith("step ")]
    if len(steps) <= 2 * keep:
        return "\n".join(lines)
    cut = set(steps[keep:-keep])
    out = []
    for i, line in enumerate(lines):
        if i not in cut:
            out.append(line)
        elif i == steps[keep]:
            out.append("...")
    return "\n".join(out)


def quickstart_transcript(records: dict[str, list[dict]]) -> str:
    """The README's quickstart transcript: the output of the latest recorded full quickstart run."""
    with_output = [r for r in records.get("quickstart", []) if r.get("transcript")]
    if not with_output:
        return "No recorded quickstart run yet: run `python -m benchmarks run --only quickstart`."
    record = with_output[-1]
    m = record["machine"]
    head = (f"Recorded by `python -m benchmarks run --only quickstart` on {record['date'][:10]} (commit "
            f"{record['commit'][:10]}; {m['cpu']}, {m['cores']} cores, load average {m['load_before'][0]:g} before the "
            "run); the training lines in the middle are cut.")
    return "\n".join([head, "", "```text", f"$ {record['transcript']['command']}",
                      elide_progress(record["transcript"]["output"]), "```"])


# ----------------------------------------------------------------------------- files


def replace_block(text: str, name: str, body: str) -> str:
    start, end = f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"
    if start not in text or end not in text:
        raise ValueError(f"markers {start} ... {end} not found")
    i, j = text.index(start) + len(start), text.index(end)
    return text[:i] + "\n" + body.rstrip("\n") + "\n" + text[j:]


def blocks(results_dir: Path = RESULTS) -> dict[str, str]:
    records = load_records(results_dir)
    chosen = {area: latest(records.get(area, [])) for area in AREAS}
    return {"summary": summary(chosen), "details": details(records, chosen, unfinished_starts(results_dir)), "readme-speed": readme_speed(chosen),
            "quickstart-transcript": quickstart_transcript(records), **question_tables.blocks()}


def rendered(repo: Path = REPO, results_dir: Path = RESULTS) -> dict[Path, str]:
    """The new text of every file with generated blocks (nothing written)."""
    generated = blocks(results_dir)
    out = {}
    for name, block_names in BLOCKS.items():
        text = (repo / name).read_text(encoding="utf-8")
        for block in block_names:
            text = replace_block(text, block, generated[block])
        out[repo / name] = text
    return out


def write(repo: Path = REPO, results_dir: Path = RESULTS) -> list[Path]:
    """Regenerate the blocks in place; return the files that changed."""
    changed = []
    for path, text in rendered(repo, results_dir).items():
        if path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            changed.append(path)
    return changed
