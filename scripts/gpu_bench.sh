#!/usr/bin/env bash
# The rare-topics accuracy runs (cross-fitting, decision rules, longer inputs) on a lent GPU machine, in one
# command within a time budget. Several trainings share the card (one small MiniLM run leaves most of it idle).
#
#   BUDGET=500 bash scripts/gpu_bench.sh          # from the repository root
#   PLAN=best (issue 26's goal: configs/reuters-best.yaml end to end, as shipped and with the CPU default's
#   choices: whole articles in chunks, C 100, log-odds blend, rare topics oversampled; the first to run when a
#   GPU is lent), PLAN=2 (round 2), PLAN=native (model.head transformers vs mean
#   pooling, and the exports' parity), PLAN=long (model.long_text: truncate 256/512, head_tail 256/512, chunks
#   128/256 with max / mean-prob pooling)
#
# What it needs, because that machine has no network and takes at most 64 MiB (prepare with
# `bash scripts/gpu_prepare.sh` here, then carry the folder .gpu):
#   .gpu/whl/*.whl            python packages the machine lacks (datasets, dill, multiprocess)
#   .gpu/encoder/             the bundled encoder with its weights in fp16 (model16.safetensors; made fp32 again
#                             there: mean-pooled embeddings of the two agree to cosine 1.0000)
#   .gpu/{train,test}.jsonl.gz  Reuters-21578 ApteMod-90 as `mlcls data reuters` writes it
# Every configuration runs 3 seeds through scripts/reuters_accuracy.py (train, then `mlcls eval` on test with
# its scores saved). What comes back in $OUT: docs/benchmarks.md with the tables, and per configuration a
# tarball of the runs' small files (metrics, logs, rules, tuning and test scores; no weights), so that rules
# and fusion can be studied offline on the CPU (scripts/bench_fusion.py, scripts/bench_lexical_c.py).
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 OMP_NUM_THREADS=1
PYTHON=${PYTHON:-python3}
OUT=${OUT:-gpu-out}
RUNS=${RUNS:-/tmp/mlcls-gpu-runs}
BUDGET=${BUDGET:-500}
mkdir -p "$OUT" "$RUNS" data/reuters
START=$(date +%s)

# from .gpu/whl only, the wheels this Python takes (multiprocess has one per Python version)
[ -n "${SKIP_WHEELS:-}" ] || "$PYTHON" -m pip install -q --no-index --find-links .gpu/whl --no-deps --no-compile \
  --no-cache-dir --target /tmp/site datasets dill multiprocess
export PYTHONPATH=/tmp/site:$PWD
gunzip -c .gpu/train.jsonl.gz > data/reuters/train.jsonl
gunzip -c .gpu/test.jsonl.gz > data/reuters/test.jsonl
ENCODER=/tmp/encoder
"$PYTHON" - "$ENCODER" <<'EOF'
import shutil, sys
from pathlib import Path
from safetensors.torch import load_file, save_file
src, dst = Path(".gpu/encoder"), Path(sys.argv[1])
shutil.copytree(src, dst, dirs_exist_ok=True, ignore=shutil.ignore_patterns("model16.safetensors"))
weights = load_file(str(src / "model16.safetensors"))
save_file({k: v.float() if v.is_floating_point() else v for k, v in weights.items()}, str(dst / "model.safetensors"),
          metadata={"format": "pt"})
EOF
"$PYTHON" -c 'import torch, transformers; gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"; \
print(f"GPU {gpu}, torch {torch.__version__}, transformers {transformers.__version__}")'

# One configuration, 3 seeds side by side: accuracy PREFIX key=value ... (on $CONFIG)
CONFIG=configs/reuters.yaml
accuracy() {
  local prefix=$1
  shift
  local sets=()
  for pair in "$@"; do sets+=(--set "$pair"); done
  "$PYTHON" scripts/reuters_accuracy.py --config "$CONFIG" --seeds 1 2 3 --parallel 3 --prefix "$prefix" \
    --data data/reuters \
    --runs "$RUNS" --save-scores --set "model.encoder=$ENCODER" --set "train.cache_dir=/tmp/cache-$prefix" \
    "${sets[@]}" > "$RUNS/$prefix.log" 2>&1
  echo "== $prefix: rc $? after $(( $(date +%s) - START )) s"
}
RULE=(threshold.rule=hybrid threshold.min_labels=1)
CV=(train.folds=5 train.epochs=3 train.select_metric=macro_f1)
if [ "${PLAN:-1}" = best ]; then  # issue 26: the shipped GPU config end to end, as it is and with what raised the
  # CPU default's held-out validation F1 on all 3 of its seeds (docs/benchmarks.md, issue 26's sections): whole
  # articles in chunks (128-token windows, at most 4, max of logits), the TF-IDF model at C 100 blended by
  # log-odds, rare topics' articles oversampled at 0.5%. Which one configs/reuters-best.yaml becomes is chosen by
  # the runs' out-of-fold F1 (metrics.json), never by test
  CONFIG=configs/reuters-best.yaml
  accuracy gpu-best &
  accuracy gpu-best-chunks model.long_text=chunks model.max_chunks=4 model.lexical_c=100 model.lexical_blend=logit \
    train.repeat_threshold=0.005 &
elif [ "${PLAN:-1}" = 1 ]; then  # round 1: rules, losses, cross-fitting against the single model
  (
    accuracy gpu-hybrid "${RULE[@]}"
    accuracy gpu-cb-ntr "${RULE[@]}" loss.name=cb_ntr
    accuracy gpu-db "${RULE[@]}" loss.name=db
  ) &
  accuracy gpu-cv5-bce "${RULE[@]}" "${CV[@]}" &
  accuracy gpu-cv5-focal "${RULE[@]}" "${CV[@]}" loss.name=focal &
  accuracy gpu-focal-len256-e6 "${RULE[@]}" loss.name=focal model.max_length=256 train.epochs=6 \
    train.select_metric=macro_f1 &
elif [ "${PLAN}" = long ]; then  # issue 26: long-text modes on configs/reuters.yaml (one model), 3 seeds each
  accuracy gpu-trunc256 "${RULE[@]}" model.max_length=256 &
  accuracy gpu-trunc512 "${RULE[@]}" model.max_length=512 &
  accuracy gpu-headtail256 "${RULE[@]}" model.max_length=256 model.long_text=head_tail &
  accuracy gpu-headtail512 "${RULE[@]}" model.max_length=512 model.long_text=head_tail &
  accuracy gpu-chunks128-max "${RULE[@]}" model.long_text=chunks model.max_chunks=4 &
  accuracy gpu-chunks128-meanprob "${RULE[@]}" model.long_text=chunks model.max_chunks=4 \
    model.chunk_pooling=mean_prob &
  accuracy gpu-chunks256-max "${RULE[@]}" model.max_length=256 model.long_text=chunks model.max_chunks=4 &
elif [ "${PLAN}" = 2 ]; then  # round 2: cross-fitted bce (round 1's best) with longer inputs, or longer training
  accuracy gpu-cv5-bce-len256 "${RULE[@]}" "${CV[@]}" model.max_length=256 &
  accuracy gpu-cv5-bce-e5 "${RULE[@]}" "${CV[@]}" train.epochs=5 &
else  # native: transformers' own head against mlcls's mean pooling (configs/reuters.yaml, no lexical blend);
  # then both exports of a native run, and the ONNX export of a mean-pooled one, checked against mlcls predict
  accuracy gpu-linear model.lexical=none &
  accuracy gpu-native model.lexical=none model.head=transformers &
fi

# The budget: stop what is still running (Ctrl-C: trainings checkpoint), keep what finished.
while [ -n "$(jobs -r)" ] && [ $(( $(date +%s) - START )) -lt "$BUDGET" ]; do sleep 5; done
if [ -n "$(jobs -r)" ]; then
  echo "== budget reached after $(( $(date +%s) - START )) s: interrupting what still runs"
  pkill -INT -f "mlcls train" ; sleep 20
fi
wait
if [ "${PLAN:-1}" = native ]; then
  for run in gpu-native-seed1:"onnx hf" gpu-linear-seed1:onnx; do
    # shellcheck disable=SC2086
    "$PYTHON" scripts/check_export_parity.py --run "$RUNS/${run%%:*}" --data data/reuters/test.jsonl \
      --formats ${run#*:} --work "/tmp/parity-${run%%:*}" > "$RUNS/parity-${run%%:*}.log" 2>&1
    echo "== parity ${run%%:*}: rc $? after $(( $(date +%s) - START )) s"; tail -4 "$RUNS/parity-${run%%:*}.log"
    cp "$RUNS/parity-${run%%:*}.log" "$OUT/"
  done
fi

cp docs/benchmarks.md "$OUT/benchmarks.md"
for prefix in gpu-best gpu-best-chunks gpu-hybrid gpu-cv5-bce gpu-cv5-focal gpu-focal-len256-e6 gpu-cb-ntr gpu-db gpu-cv5-bce-len256 \
  gpu-cv5-bce-e5 gpu-linear gpu-native gpu-trunc256 gpu-trunc512 gpu-headtail256 gpu-headtail512 gpu-chunks128-max \
  gpu-chunks128-meanprob gpu-chunks256-max; do
  files=$(cd "$RUNS" && ls -d "$prefix"-seed* "$prefix".log 2>/dev/null; ls "$prefix"-seed*.eval.json \
    "$prefix"-seed*.test-scores.npz 2>/dev/null)
  [ -n "$files" ] || continue
  # shellcheck disable=SC2086
  tar czf "$OUT/$prefix.tgz" -C "$RUNS" --exclude='*.safetensors' --exclude='checkpoint*' --exclude=encoder \
    --exclude='*.txt' --exclude=tokenizer.json --exclude='folds/*/tuning_scores.npz' $files
done
ls -la "$OUT"
echo "== done, $(( $(date +%s) - START )) s"
