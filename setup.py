"""Build the optional C accelerators.

Every ``cs336_basics/**/*.c`` file becomes an extension module named after its
path (``cs336_basics/tokenizer/_bpe_native.c`` -> ``cs336_basics.tokenizer._bpe_native``).
A failed compile (no compiler, no Python headers) is reported and skipped: each
native module has a pure-Python fallback with identical results, so the
package still installs and works, only slower. ``-fno-math-errno``: no C file reads
``errno`` after a math call, and without it GCC cannot vectorise a loop that calls
``sqrtf`` (the AdamW kernel). ``-fno-trapping-math``: no C file reads the floating-point
exception flags, and without it GCC keeps the branches of a float comparison (the clamps of
the kernels' ``exp``) instead of vectorising them as selects on AVX2 and SSE builds. Neither
flag changes a computed value (no ``-ffast-math``: no reassociation, no contraction).
"""

from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    def run(self):
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - any build failure means "use the fallback"
            print(f"WARNING: C accelerators not built ({exc}); using pure-Python fallbacks")

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001
            if "-fopenmp" in ext.extra_compile_args:  # a compiler without OpenMP: POSIX threads instead
                ext.extra_compile_args.remove("-fopenmp")
                ext.extra_link_args.remove("-fopenmp")
                print(f"WARNING: {ext.name} built without OpenMP ({exc})")
                return self.build_extension(ext)
            print(f"WARNING: could not build {ext.name} ({exc}); using its pure-Python fallback")


OPENMP_MARKERS = ("#pragma omp", "_vector_math.h")
"""A C file that has an OpenMP pragma or includes the kernels' header (which has one) is built with ``-fopenmp``:
its threads are then those of the OpenMP runtime torch loads, not threads of its own competing with them."""


def native_extensions():
    exts = []
    for src in sorted(Path("cs336_basics").rglob("*.c")):
        name = ".".join(src.with_suffix("").parts)
        flags = ["-O3", "-std=c11", "-fno-math-errno", "-fno-trapping-math"]
        text = src.read_text(encoding="utf-8")
        openmp = ["-fopenmp"] if any(marker in text for marker in OPENMP_MARKERS) else []
        exts.append(Extension(name, [str(src)], extra_compile_args=flags + openmp, extra_link_args=openmp))
    return exts


setup(ext_modules=native_extensions(), cmdclass={"build_ext": OptionalBuildExt})
