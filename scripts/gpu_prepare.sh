#!/usr/bin/env bash
# Make .gpu/, what scripts/gpu_bench.sh needs on a lent GPU machine, which has no network and takes at most
# 64 MiB of files per call. Run it here (the package index and the Reuters data at hand), from the repository
# root, then carry the folder on the device call (`carry: [".gpu"]`; .gitignore keeps it out of git):
#
#   mlcls data reuters --source ../shared/data/reuters21578 --out data/reuters   # once
#   bash scripts/gpu_prepare.sh
#
# .gpu/whl/               the wheels that machine lacks (datasets, dill, multiprocess), for Python 3.10-3.13:
#                         gpu_bench.sh installs the ones its Python takes, from these files only
# .gpu/encoder/           the bundled encoder, its weights in fp16 (model16.safetensors, 45 MB instead of 90;
#                         gpu_bench.sh makes them fp32 again: mean-pooled embeddings agree to cosine 1.0000)
# .gpu/{train,test}.jsonl.gz  Reuters-21578 ApteMod-90 as `mlcls data reuters` writes it
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
for split in train test; do
  [ -f "data/reuters/$split.jsonl" ] || { echo "data/reuters/$split.jsonl is missing: run mlcls data reuters first" >&2; exit 1; }
done
rm -rf .gpu.tmp && mkdir -p .gpu.tmp/whl
for version in 3.10 3.11 3.12 3.13; do
  "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version "$version" -d .gpu.tmp/whl \
    datasets dill multiprocess
done
gzip -9 -c data/reuters/train.jsonl > .gpu.tmp/train.jsonl.gz
gzip -9 -c data/reuters/test.jsonl > .gpu.tmp/test.jsonl.gz
"$PYTHON" - .gpu.tmp/encoder <<'PY'
import shutil, sys
from pathlib import Path
from safetensors.torch import load_file, save_file
from mlcls.model.classifier import resolve_encoder
src, dst = Path(resolve_encoder("sentence-transformers/all-MiniLM-L6-v2")), Path(sys.argv[1])
shutil.copytree(src, dst, ignore=shutil.ignore_patterns("model.safetensors", "README.md", ".gitattributes"))
weights = load_file(str(src / "model.safetensors"))
save_file({k: v.half() if v.is_floating_point() else v for k, v in weights.items()}, str(dst / "model16.safetensors"),
          metadata={"format": "pt"})
PY
rm -rf .gpu && mv .gpu.tmp .gpu
du -sh .gpu
size=$(du -sm .gpu | cut -f1)
[ "$size" -lt 60 ] || { echo ".gpu is $size MiB: over what one device call carries with the repository" >&2; exit 1; }
