"""Inference: a finished run directory -> scores -> decisions -> predictions.

rundir.py    the run directory's layout, created atomically, found again (runs/latest)
loading.py   a run loaded for scoring (`load_run`), optional int8
scoring.py   batched, length-sorted scoring (training's validation, `eval` and `predict` share it)
decision.py  decision rules: scores -> label sets (tuned cut-offs, top-k, at least one label)
predict.py   `mlcls predict`: streaming JSONL / CSV output, resumable
"""
