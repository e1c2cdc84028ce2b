#!/usr/bin/env bash
# The GPU check as one script: its jobs run side by side (one H200, 16 cores), each under its own
# timeout, so the whole run ends within about 7 minutes and one slow job costs only its own figures.
#   suite       the fast test suite on the machine's own torch and Python (the CPU suite, other versions)
#   gpu-tests   the gpu-marked tests (CUDA, large widths)
#   moe-*       validate on Hugging Face's Qwen3-MoE and Mixtral at GPU widths (docs/coverage.md)
#   oob         the one-line call vs plain Adam at width 1024, and the default form's lr sweep (docs/training.md)
#   fig2        the paper's Fig. 2 at its own widths, 16..4096 (docs/measurements.md)
# Uses the machine's own Python (torch >= 2.4, transformers, timm, matplotlib, networkx, pytest,
# pytest-xdist); nothing is installed. Every log and result is archived in $OUT/gpu.tgz (the device
# tool brings back at most 8 files) and the summary printed at the end is $OUT/summary.txt;
# status.txt in the archive says each job's exit code and seconds.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu}
LOG=$(mktemp -d)/gpu
PY=${PYTHON:-python3}
LIMIT=${LIMIT:-400}
mkdir -p "$LOG"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 MPLBACKEND=Agg
$PY -c "import torch, sys, transformers; print(sys.version.split()[0], torch.__version__, transformers.__version__, torch.cuda.get_device_name(0))" | tee "$LOG/device.txt"

job() {  # job NAME COMMAND...: run in the background, log to NAME.txt, record exit code and seconds
    local name=$1; shift
    ( start=$(date +%s); timeout "$LIMIT" "$@" > "$LOG/$name.txt" 2>&1; rc=$?
      echo "$name rc=$rc $(( $(date +%s) - start )) s" >> "$LOG/status.txt" ) &
}
validate() {  # validate NAME MODEL OPTIMIZER WIDTHS... [-- EXTRA...]
    local name=$1 model=$2 opt=$3; shift 3
    job "$name" $PY -m sptrace validate "$model" --optimizer "$opt" --device cuda --baselines sp \
        --out "$LOG/$name" --widths "$@"
}

job suite $PY -m pytest -q -p no:cacheprovider -o addopts="" -m "not slow and not gpu" -n 6 --dist worksteal
job gpu-tests $PY -m pytest -q -p no:cacheprovider -o addopts="" -m gpu -k "not fig2" -n 2 --durations=15
validate moe-qwen3-released-sgd hf:qwen3_moe sgd 256 512 1024 2048 4096 --seeds 8 --option norm_topk_prob=true
validate moe-qwen3-sgd hf:qwen3_moe sgd 256 512 1024 2048 --seeds 8
validate moe-qwen3-adam hf:qwen3_moe adam 256 512 1024 2048
validate moe-mixtral-sgd hf:mixtral sgd 256 512 1024 2048 --seeds 8
validate moe-mixtral-adam hf:mixtral adam 256 512 1024 2048
job oob-mlp $PY -m experiments oob --device cuda --models mlp --parts compare --width 1024 --seeds 24 --out "$LOG/oob-mlp"
job oob-gpt $PY -m experiments oob --device cuda --models gpt --parts compare --width 1024 --seeds 16 --out "$LOG/oob-gpt"
job oob-sweep $PY -m experiments oob --device cuda --parts sweep --sweep-widths 64 128 256 512 1024 --out "$LOG/oob-sweep"
job fig2 $PY -m experiments fig2 --device cuda --widths 16 32 64 128 256 512 1024 2048 4096 --seeds 5 \
    --out "$LOG/paper"
wait

tar czf "$OUT/gpu.tgz" -C "$(dirname "$LOG")" gpu
{ cat "$LOG/status.txt"
  tail -n 3 "$LOG/suite.txt" "$LOG/gpu-tests.txt"
  grep -H -E "^  (sptrace|sp) " "$LOG"/moe-*.txt | cut -c1-300
  grep -h -E "^\| (mlp|gpt) " "$LOG"/oob-*.txt
  tail -n 12 "$LOG/fig2.txt"; } | tee "$OUT/summary.txt"
