#!/usr/bin/env bash
# The GPU check, as one short script (about 10 minutes on one H200): the gpu-marked tests, then the
# validation table at GPU widths. Uses the machine's own Python (torch >= 2.4, transformers, timm,
# matplotlib, networkx, pytest); nothing is installed. Results go to $OUT (default out/gpu);
# record them in docs/validation.md.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu}
mkdir -p "$OUT"
export PYTHONPATH=$PWD
python -c "import torch, sys; print(sys.version.split()[0], torch.__version__, torch.cuda.get_device_name(0))" | tee "$OUT/device.txt"
python -c "import tabulate, tqdm, networkx" 2>/dev/null || echo "missing: pip install tabulate tqdm networkx" | tee -a "$OUT/device.txt"
timeout 360 python -m pytest -m gpu -q -p no:cacheprovider --durations=20 2>&1 | tee "$OUT/pytest-gpu.txt"
timeout 240 python scripts/validation_report.py --device cuda --scale gpu --optimizers adam \
    --out "$OUT/validation" 2>&1 | tee "$OUT/validation.txt"
