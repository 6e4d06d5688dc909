"""Inference: a finished run directory -> scores -> decisions -> predictions.

rundir.py    the run directory's layout, created atomically, found again (runs/latest)
validation.py  validate_run: every file a run needs, whole and consistent, before anything loads
loading.py   a run loaded for scoring (`load_run`), optional int8
onnx_run.py  an ONNX export scored with ONNX Runtime
scoring.py   batched, length-sorted scoring (training's validation, `eval` and `predict` share it)
decision.py  decision rules: scores -> label sets (tuned cut-offs, top-k, at least one label)
predict.py   `mlcls predict`: streaming JSONL / CSV output, resumable
export.py    `mlcls export`: one ONNX graph (optional int8), or a transformers folder (native head)
model_card.py  README.md of a run or an export (a Hugging Face model card)
"""
