"""`cs336 doctor`: which engine runs here: versions, torch build, devices, CPU features, C extensions.

Exit code 0 when everything the toolkit can accelerate is accelerated, 1 when a C
extension is missing (so scripts and CI can check it), with the reason and the fix.
"""

from __future__ import annotations

import argparse
import sys


def register(subparsers, parents) -> None:
    parser = subparsers.add_parser(
        "doctor", parents=parents, help="show versions, devices, CPU features and whether the C code is built",
        description="Print the package and Python versions, torch's version and build (CPU/CUDA), the devices "
                    "torch sees, the CPU's vector features that matter here (AVX2, AVX-512, AVX512-BF16, AMX), "
                    "the thread count, and whether each C extension is built and loaded. Exit code 1 when a C "
                    "extension is missing.")
    parser.set_defaults(func=run)


def report_lines() -> tuple[list[tuple[str, str]], bool]:
    """(label, value) rows, and whether every C extension loaded."""
    from cs336_basics import __file__ as package_file
    from cs336_basics import __version__
    from cs336_basics.runtime.devices import RELEVANT_CPU_FEATURES, cpu_info, torch_summary
    from cs336_basics.runtime import native

    cpu = cpu_info()
    rows = [("cs336_basics", f"{__version__} ({package_file.rsplit('/', 1)[0]})"),
            ("python", f"{sys.version.split()[0]} ({sys.executable})")]
    rows += [(f"torch {key}", value) for key, value in torch_summary().items()]
    rows.append(("cpu", f"{cpu.model}, {cpu.usable_cores} of {cpu.logical_cores} cores usable"))
    features = [f"{name} {'yes' if cpu.has(name) else 'no'}" for name in RELEVANT_CPU_FEATURES]
    rows.append(("cpu features", ", ".join(features)))
    rows.append(("native bf16", "yes" if cpu.native_bf16 else "no (bf16 arithmetic is emulated on this CPU)"))
    all_loaded = True
    for ext in native.status():
        all_loaded &= ext.loaded
        state = f"loaded ({ext.path})" if ext.loaded else f"MISSING: {ext.reason}"
        rows.append((f"C {ext.name}", f"{state}; used for {ext.purpose}"))
    if native.disabled():
        rows.append(("C extensions", f"disabled by {native.DISABLE_ENV}: the Python paths run"))
    if not all_loaded:
        rows.append(("fix", native.BUILD_HINT))
    return rows, all_loaded


def run(args: argparse.Namespace) -> int:
    rows, all_loaded = report_lines()
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label.ljust(width)}  {value}")
    return 0 if all_loaded else 1
