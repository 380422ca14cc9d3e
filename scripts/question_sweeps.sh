#!/usr/bin/env bash
# Reruns the sweeps of docs/questions.md sections 1 to 7 and refreshes what the page shows from them:
# each sweep's results.jsonl becomes docs/questions/records/NAME.jsonl (the tables are rendered from those
# by `python -m benchmarks render`), and the plots in docs/questions/ are redrawn from the run directories.
#
#   scripts/question_sweeps.sh WORK_DIR [TRAIN_TXT VALID_TXT]
#
# WORK_DIR must not exist yet (the data and the sweeps go there; nothing outside it and docs/questions/ is
# written). TRAIN_TXT / VALID_TXT default to the shared TinyStories heads (the first 2 MB of the train split,
# the first 1,000 validation stories). Each run trains on one core (OMP_NUM_THREADS=1); two sweeps run at a
# time, so wall-clock plots show the order of things on a shared machine, not speeds.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="${1:?usage: scripts/question_sweeps.sh WORK_DIR [TRAIN_TXT VALID_TXT]}"
train_txt="$(realpath "${2:-$repo/../shared/data/tinystories/tinystories_train_head.txt}")"
valid_txt="$(realpath "${3:-$repo/../shared/data/tinystories/tinystories_valid_head1k.txt}")"
[[ -e "$work" ]] && { echo "question_sweeps: $work exists; give a new directory" >&2; exit 2; }
mkdir -p "$work/data/tinystories_small"
work="$(realpath "$work")"
cd "$work"
mkdir -p plots
export OMP_NUM_THREADS=1

cp "$train_txt" data/tinystories_small/train.txt
cp "$valid_txt" data/tinystories_small/valid.txt
cs336 prepare --data data/tinystories_small --vocab-size 1024
# section 5's small training set: the first 80 stories of the training text
python - <<'PY'
from pathlib import Path
text = Path("data/tinystories_small/train.txt").read_text(encoding="utf-8")
Path("small.txt").write_text("<|endoftext|>".join(text.split("<|endoftext|>")[:80]), encoding="utf-8")
PY
cs336 tokenize --tokenizer data/tinystories_small/tokenizer --input small.txt \
    --out data/tinystories_small/train_small.npy

sweeps=(ffn_width ffn position norm moe dropout lr batch_size parallel)
run_sweep() { cs336 sweep --sweep-file "$repo/configs/experiments/$1_cpu.toml" --out sweeps --no-report > "$1.log" 2>&1; }
for ((i = 0; i < ${#sweeps[@]}; i += 2)); do
    run_sweep "${sweeps[i]}" &
    [[ -n "${sweeps[i + 1]:-}" ]] && run_sweep "${sweeps[i + 1]}" &
    wait
done

records="$repo/docs/questions/records"
for name in "${sweeps[@]}"; do
    cp "sweeps/${name}_cpu/results.jsonl" "$records/${name}_cpu.jsonl"
done
plot() {  # the .png goes to docs/questions/; the .svg and the plotted data's .json stay in WORK_DIR/plots
    local out="$1" sweep="$2"; shift 2
    cs336 plot "sweeps/$sweep" --out "plots/${out%.png}" "$@" > /dev/null
    cp "plots/$out" "$repo/docs/questions/$out"
}
plot ffn_width_steps.png ffn_width_cpu --x steps
plot ffn_steps.png ffn_cpu --x steps
plot position_steps.png position_cpu --x steps
plot norm_steps.png norm_cpu --x steps
plot norm_grad_norm.png norm_cpu --metric grad_norm --x steps --log-y
plot moe_steps.png moe_cpu --x steps
plot dropout_val.png dropout_cpu --x steps
plot dropout_train.png dropout_cpu --metric loss --x steps
plot lr_train_loss.png lr_cpu --metric loss --x steps
plot batch_tokens.png batch_size_cpu --x tokens
plot parallel_steps.png parallel_cpu --x steps
plot parallel_wallclock.png parallel_cpu --x wallclock
echo "records in $records; plots in $repo/docs/questions; now run: python -m benchmarks render"
