"""No hand-typed measurement in README.md or docs/*.md: a figure there cites a committed record, or it goes.

A *figure* is a number with a unit of time (s, ms, µs, min, hours), of size (KB, MB, GiB, bytes, ...),
of speed (tok/s, tokens/s, it/s, anything per second), or a speed ratio (``1.5x``, ``2x faster``,
``15% slower``). Outside the blocks that ``python -m benchmarks render`` generates from the records
(between ``<!-- bench:NAME:start -->`` and ``<!-- bench:NAME:end -->``), fenced code included, a
figure passes only when

- its paragraph cites a committed record, ``benchmarks/results/AREA.jsonl`` or
  ``docs/questions/records/NAME.jsonl``, and the cited file exists. A table, list or code block
  takes the citations of the paragraph that introduces it (the one before it, images skipped);
- or it matches an entry of ``ALLOWED``: definitions and settings, not measurements.

Paragraphs, not lines, are the unit, so rewrapping a paragraph changes nothing. Nothing here runs
or measures anything: it reads the committed text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

_NUMBER = r"(?<![\w.])(?<!UTF-)\d[\d,]*(?:\.\d+)?(?:\s?[-–]\s?\d[\d,]*(?:\.\d+)?)?"
_UNIT = (r"(?:[µu]s|ns|ms|s|secs?|seconds?|mins?|minutes?|h|hrs?|hours?"  # time
         r"|[kKMGT]i?B|bytes"  # size
         r"|[A-Za-z]*/s|s/step)(?![\w/])")  # speed: tok/s, tokens/s, it/s, GB/s, /s; seconds per step
_SPEED_WORD = (r"(?:faster|slower|quicker|cheaper|speed-?up|slow-?down|the (?:speed|throughput|time)"
               r"|less time|more time|fewer (?:steps|tokens)|more (?:steps|tokens))")
FIGURE = re.compile(
    _NUMBER + r"[kKMG]?(?:\s|-)?" + _UNIT  # 0.3 s, 2,235 s, a 9-minute budget, 11.5k tok/s, 0.5-2 GB/s
    + r"|(?<![\w.])\d+\.\d+\s?[x×](?!\w)"  # 1.5x, 1.09×: a measured ratio
    + r"|(?<![\w.])\d+\s?[x×]\s" + _SPEED_WORD  # 2x faster
    + r"|(?:speed-?up|slow-?down)s?\s(?:of\s)?(?:about\s|~)?\d+(?:\.\d+)?\s?[x×](?!\w)"  # a speed-up of 3x
    + r"|(?<![\w.])\d+(?:\.\d+)?\s?%\s" + _SPEED_WORD  # 15% faster, 10 % fewer steps
    + r"|(?<![\w.])\d+(?:\.\d+)?\s?%\sof\s(?:a|the|each)\s(?:step|run)\b"  # 6% of the run
)

# Where a cited file lives: the path as written in the docs, relative to the repository.
CITATION = re.compile(r"(?:benchmarks/results/|questions/records/)[\w.-]+\.jsonl")

# Figures that are definitions or settings, not measurements. Each entry: a pattern that covers the
# figure and the words that make it a definition, and why. Matched on a paragraph with its lines
# joined by single spaces.
ALLOWED: list[tuple[str, str]] = [
    (r"\d+[- ]minute\**(?: time| training)? budget",
     "a time budget is a setting (`cs336 quickstart --minutes`, default 9; `train.max_minutes`)"),
    (r"(?:first|the|a) 2 Mi?B\b",
     "the data of the examples, by definition: the bundled sample is the first 2 MiB of the "
     "TinyStories train split (cs336_basics/sample), the questions.md sweeps train on the first 2 MB"),
    (r"\b20 MiB (?:TinyStories )?prefix",
     "what `cs336 quickstart` downloads: QUICKSTART_TRAIN_BYTES in cs336_basics/quickstart.py"),
    (r"first 4 MiB|up to 64 MiB|64 KiB blocks|at most 1 MiB|between 1 and 32 MiB|first 8 bytes",
     "sizes the tokenizer code uses as parameters (encoding sniff window, source hash, holdout cap, "
     "chunk bounds, hash-slot key), stated where the docs describe that code"),
    (r"\d+ MiB of new words must fit in \d+ MiB|\d+ MiB file without a single newline in \d+ MiB",
     "limits, not measurements: the address-space caps tests/tokenizer/test_tokenizer_stream.py sets (RLIMIT_AS) "
     "and the input sizes it streams under them"),
]
_ALLOWED = [re.compile(pattern) for pattern, _ in ALLOWED]


@dataclass(frozen=True)
class Finding:
    line: int
    figure: str
    why: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.figure!r} ({self.why})"


@dataclass
class _Block:
    first_line: int
    lines: list[str]
    kind: str  # "prose", "heading", "image", "table", "list", "code"


_GENERATED = re.compile(r"<!-- bench:([\w-]+):start -->.*?<!-- bench:\1:end -->", re.S)


def _without_generated_blocks(text: str) -> str:
    """The text with every generated block blanked out (line numbers kept)."""
    return _GENERATED.sub(lambda m: "\n" * m.group(0).count("\n"), text)


def _kind(lines: list[str]) -> str:
    first = lines[0].lstrip()
    if first.startswith("```"):
        return "code"
    if first.startswith("#"):
        return "heading"
    if all(line.lstrip().startswith("![") for line in lines):
        return "image"
    if all(line.lstrip().startswith("|") for line in lines):
        return "table"
    if re.match(r"(?:[-*+]|\d+\.)\s", first):
        return "list"
    return "prose"


def _blocks(text: str) -> list[_Block]:
    """Paragraphs separated by blank lines; a fenced code block is one block, blank lines and all."""
    blocks: list[_Block] = []
    current: list[str] = []
    start = 0
    in_fence = False

    def close():
        nonlocal current
        if current:
            blocks.append(_Block(start, current, _kind(current)))
        current = []

    for number, line in enumerate(text.splitlines(), 1):
        fence = line.lstrip().startswith("```")
        if in_fence:
            current.append(line)
            if fence:
                in_fence = False
                close()
            continue
        if fence:
            close()
            start, current, in_fence = number, [line], True
            continue
        if not line.strip():
            close()
            continue
        if not current:
            start = number
        current.append(line)
    close()
    return blocks


def _joined(block: _Block) -> tuple[str, list[int]]:
    """The block's lines stripped and joined by single spaces, and the offset where each line starts."""
    text, offsets = "", []
    for line in block.lines:
        offsets.append(len(text))
        text += line.strip() + " "
    return text, offsets


def _citations(block: _Block | None) -> list[str]:
    return CITATION.findall(" ".join(block.lines)) if block is not None else []


def _cited_file(citation: str, repo: Path) -> Path:
    if citation.startswith("questions/records/"):
        return repo / "docs" / citation
    return repo / citation


def unbacked_figures(text: str, repo: Path = REPO) -> list[Finding]:
    """Every figure in a markdown text that neither a cited record nor an ``ALLOWED`` entry backs."""
    findings: list[Finding] = []
    introducer: _Block | None = None  # the last paragraph of prose since the last heading
    for block in _blocks(_without_generated_blocks(text)):
        if block.kind == "heading":
            introducer = None
        joined, offsets = _joined(block)
        citations = _citations(block)
        if block.kind in ("table", "list", "code"):
            citations += _citations(introducer)
        existing = [c for c in citations if _cited_file(c, repo).is_file()]
        allowed = [m.span() for pattern in _ALLOWED for m in pattern.finditer(joined)]
        for match in FIGURE.finditer(joined):
            if any(a <= match.start() and match.end() <= b for a, b in allowed):
                continue
            if existing:
                continue
            line = block.first_line + max(i for i, o in enumerate(offsets) if o <= match.start())
            why = f"cites {', '.join(citations)}, which does not exist" if citations else "no record cited"
            findings.append(Finding(line, match.group(0), why))
        if block.kind == "prose":
            introducer = block
    return findings


# A file whose figure another change removes: strict, so the test fails once the figure is gone
# and the entry must go too.
PENDING: dict[str, str] = {}
"""Documents known to fail the check, with the reason (a strict xfail, so a fixed one must leave the list)."""


def _documents() -> list:
    paths = [REPO / "README.md"] + sorted((REPO / "docs").glob("*.md"))
    return [pytest.param(path, id=path.relative_to(REPO).as_posix(),
                         marks=[pytest.mark.xfail(strict=True, reason=PENDING[name])] if name in PENDING else [])
            for path in paths for name in [path.relative_to(REPO).as_posix()]]


@pytest.mark.parametrize("path", _documents())
def test_every_figure_in_the_docs_cites_a_record_or_is_a_definition(path):
    findings = unbacked_figures(path.read_text(encoding="utf-8"))
    assert not findings, (f"{path.relative_to(REPO)}: figures that no record backs (cite the record in the "
                          "paragraph, render them from records, or drop them):\n  "
                          + "\n  ".join(map(str, findings)))


def test_a_hand_typed_timing_is_reported_and_a_generated_one_is_not():
    text = ("# Speed\n\n"
            "The encoder runs in 3.2 s on this file.\n\n"
            "<!-- bench:speed:start -->\n| encode | 3.2 s | 1.2M tok/s |\n<!-- bench:speed:end -->\n")
    findings = unbacked_figures(text)
    assert [(f.line, f.figure) for f in findings] == [(3, "3.2 s")]


@pytest.mark.parametrize("figure", ["runs in 3.2 s", "took 250 ms", "about 2 hours", "a 9-minute run",
                                    "needs 120 MB of memory", "a 1.5 GiB file", "11.5k tok/s",
                                    "900 tokens/s", "3 it/s", "1.5x", "2x faster", "1.09×",
                                    "a speed-up of 3x", "15% faster", "10 % fewer steps", "0.04-0.08 s"])
def test_each_kind_of_figure_is_reported(figure):
    found = [f.figure for f in unbacked_figures(f"It {figure} here.\n")]
    assert len(found) == 1 and found[0] in figure


@pytest.mark.parametrize("text", ["a 4x wider FFN", "UTF-8 bytes", "d_model 512, 4 layers", "327.68M tokens",
                                  "8/3x gated", "vocabulary 2,048", "the 1/4x bottleneck", "5% of the documents"])
def test_definitions_and_counts_are_not_figures(text):
    assert unbacked_figures(text + "\n") == []


def test_a_cited_record_backs_its_paragraph_and_the_table_it_introduces(tmp_path):
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "benchmarks" / "results" / "encode.jsonl").write_text("{}\n")
    text = ("## Encoding\n\n"
            "From [the record](../benchmarks/results/encode.jsonl): 3.2 s per file.\n\n"
            "| file | time |\n|---|---|\n| a | 3.2 s |\n\n"
            "A later paragraph, 4.1 s, is not covered.\n\n"
            "## Next\n\n| file | time |\n|---|---|\n| b | 5.0 s |\n")
    assert [(f.line, f.figure) for f in unbacked_figures(text, tmp_path)] == [(9, "4.1 s"), (15, "5.0 s")]


def test_a_citation_of_a_record_that_does_not_exist_backs_nothing(tmp_path):
    findings = unbacked_figures("Measured: 3.2 s (benchmarks/results/nowhere.jsonl).\n", tmp_path)
    assert [f.figure for f in findings] == ["3.2 s"] and "does not exist" in findings[0].why
    # a test is not a record: it checks a behaviour, not the figure beside it
    assert [f.figure for f in unbacked_figures("Importing torch takes ~2 s (tests/test_architecture.py).\n")] == ["2 s"]


def test_a_figure_in_a_code_block_is_reported_and_rewrapping_does_not_hide_one():
    text = "```bash\ncs336 train --config x   # about 1 hour on 2 cores\n```\n\nThis takes\n0.3\ns.\n"
    assert [(f.line, f.figure) for f in unbacked_figures(text)] == [(2, "1 hour"), (6, "0.3 s")]


def test_allowed_definitions_pass_and_every_entry_says_why():
    assert unbacked_figures("A 20-minute budget instead of the default 9-minute time budget.\n") == []
    assert unbacked_figures("The sample is the first 2 MiB of the\ntrain split.\n") == []
    assert unbacked_figures("The sample trains in 2 MiB of memory.\n") != []
    assert all(len(why) > 30 for _, why in ALLOWED) and len(ALLOWED) <= 6
