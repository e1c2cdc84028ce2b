#!/usr/bin/env bash
# The GPU check, as one short script (about 10 minutes on one H200, at most 12): the gpu-marked
# tests, the paper's Fig. 2 at widths 16..4096 (5 seeds: about 2 s per run, launch-bound), then
# the validation table at GPU widths. Uses the machine's own Python (torch >= 2.4, transformers,
# timm, matplotlib, networkx, pytest); nothing is installed. Results go to $OUT (default out/gpu);
# record them in docs/validation.md.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu}
mkdir -p "$OUT"
export PYTHONPATH=$PWD
python -c "import torch, sys; print(sys.version.split()[0], torch.__version__, torch.cuda.get_device_name(0))" | tee "$OUT/device.txt"
python -c "import tabulate, tqdm, networkx" 2>/dev/null || echo "missing: pip install tabulate tqdm networkx" | tee -a "$OUT/device.txt"
timeout 300 python -m pytest -o addopts="" -m gpu -k "not fig2" -q -p no:cacheprovider --durations=20 2>&1 | tee "$OUT/pytest-gpu.txt"
# the paper's Fig. 2 over its own widths, 16..4096 (CPU runs stop at 1024; issue 4's open slope)
timeout 240 python -m experiments fig2 --device cuda --widths 16 32 64 128 256 512 1024 2048 4096 \
    --seeds 5 --out "$OUT/paper" 2>&1 | tail -30 | tee "$OUT/fig2.txt"
timeout 180 python scripts/validation_report.py --device cuda --scale gpu --optimizers adam \
    --out "$OUT/validation" 2>&1 | tee "$OUT/validation.txt"
