#!/usr/bin/env bash
# Run the tokenizer and BPE tests against C extensions built with AddressSanitizer and UBSan.
#
# The tracked files of this checkout (as they are on disk, uncommitted edits included) are
# copied to a temporary directory; every cs336_basics/**/*.c extension is built there with
# -fsanitize=address,undefined (setup.py, the same build as `pip install`), and pytest runs
# with that copy first on PYTHONPATH and libasan preloaded (a Python that is not itself built
# with ASan must load the runtime first). Any out-of-bounds access, use after free or
# undefined behaviour the tests reach stops the run with the sanitizer's report; leak
# detection is off (the interpreter keeps objects alive until exit on purpose).
#
# Left out by default: the tests that cap the address space (RLIMIT_AS): ASan reserves
# terabytes of shadow address space, so they cannot run under it. Slow tests are left out
# too; pass pytest arguments to choose others, e.g.
#
#     scripts/sanitize_native.sh                            # tokenizer + BPE tests, not slow
#     scripts/sanitize_native.sh tests/tokenizer/test_bpe_train.py -m slow
#
# Needs gcc (or CC naming a compiler with the sanitizer runtimes), git and the test extras.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/cs336-sanitize.XXXXXX")
trap 'rm -rf "$work"' EXIT
cc=${CC:-gcc}

echo "copying the tracked files to $work"
git -C "$repo" ls-files -z | tar -C "$repo" --null -T - -cf - | tar -C "$work" -xf -

echo "building the C extensions with -fsanitize=address,undefined"
sanitize="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g"
(cd "$work" && CC="$cc" CFLAGS="$sanitize" LDFLAGS="-fsanitize=address,undefined" \
    python setup.py -q build_ext --inplace)
# setup.py skips an extension that fails to build (the fallback would run instead): refuse that
status=0
while IFS= read -r src; do
    so=$(ls "$work/${src%.c}".*.so 2>/dev/null | head -n 1 || true)
    if [[ -z "$so" ]] || ! grep -qa __asan_init "$so"; then
        echo "error: $src was not built with AddressSanitizer" >&2
        status=1
    fi
done < <(cd "$work" && find cs336_basics -name '*.c' | sort)
[[ $status -eq 0 ]] || exit 2

if [[ $# -eq 0 ]]; then
    set -- tests/tokenizer/test_tokenizer_*.py tests/tokenizer/test_bpe_*.py tests/tokenizer/test_native.py -m "not slow" \
        -k "not address_space and not bounded_while_streaming"
fi

cd "$work"
unset CS336_NO_NATIVE
export LD_PRELOAD="$("$cc" -print-file-name=libasan.so) $("$cc" -print-file-name=libubsan.so)"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:alloc_dealloc_mismatch=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export CS336_REQUIRE_NATIVE=1 PYTHONPATH="$work"
# the sanitized copies must be the ones imported, not an installed build
python - "$work" <<'PY'
import importlib, pathlib, sys
root = pathlib.Path(sys.argv[1]).resolve()
for src in sorted(pathlib.Path("cs336_basics").rglob("*.c")):
    module = importlib.import_module(".".join(src.with_suffix("").parts))
    if not pathlib.Path(module.__file__).resolve().is_relative_to(root):
        sys.exit(f"error: {module.__name__} was imported from {module.__file__}, not from the sanitized build")
PY
echo "running pytest $*"
python -m pytest -q -p no:cacheprovider "$@"
